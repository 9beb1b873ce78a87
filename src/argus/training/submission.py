"""A stored task -> the Ray job that runs it (pure: no Ray, no database).

Every task's driver is `python -m argus.training.launch`, which runs the workload's
command in the task's folder and copies its output to `<task dir>/task.log` on the
shared storage, where the API reads it (the API never asks Ray for logs).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from argus.cluster.job_client import JobSubmission
from argus.serving.paths import user_home
from argus.training.sft import CHECKPOINT_DIRNAME

LOG_NAME = "task.log"
CHECKPOINT_NAME = CHECKPOINT_DIRNAME  # where sft writes it; a command task may write there too


@dataclass(frozen=True)
class LaunchSettings:
    python: str  # the interpreter on the Ray nodes (the same path on every node)
    storage_root: Path
    accelerator_type: str | None
    hf_home: str


def task_dir(storage_root: Path, user_id: str, task_id: str) -> Path:
    return user_home(storage_root, user_id) / "tasks" / task_id


def checkpoint_source(task_id: str) -> str:
    """The checkpoint as a `model_source` its owner can put into a serving spec."""
    return f"$HOME/tasks/{task_id}/{CHECKPOINT_NAME}"


def task_demand(resolved: dict[str, Any], launch: LaunchSettings) -> dict[str, float]:
    """What the task's driver holds on its node, in Ray's resource names."""
    demand = {"CPU": float(resolved["cpus_per_node"])}
    gpus = int(resolved["gpus_per_node"])
    if gpus:
        demand["GPU"] = float(gpus)
        # GPUs of the cluster's type: Ray's own accelerator label, as on model replicas.
        if launch.accelerator_type:
            demand[f"accelerator_type:{launch.accelerator_type}"] = 0.001
    return demand


def workload_argv(resolved: dict[str, Any], folder: Path, python: str) -> list[str]:
    if resolved["workload"] == "sft":
        return [
            python,
            "-m",
            "argus.training.sft",
            "--model-source",
            resolved["model_source"],
            "--train-file",
            resolved["train_file"],
            "--output-dir",
            str(folder),
            "--max-steps",
            str(resolved["max_steps"]),
            "--learning-rate",
            repr(float(resolved["learning_rate"])),
            "--batch-size",
            str(resolved["batch_size"]),
            "--max-seq-len",
            str(resolved["max_seq_len"]),
            "--seed",
            str(resolved["seed"]),
        ]
    return ["/bin/sh", "-c", resolved["entrypoint"]]


def build_submission(
    task_id: str, user_id: str, ray_job_id: str, resolved: dict[str, Any], launch: LaunchSettings
) -> JobSubmission:
    folder = task_dir(launch.storage_root, user_id, task_id)
    cwd = resolved.get("working_dir") or str(folder)
    argv = [
        launch.python,
        "-m",
        "argus.training.launch",
        "--log",
        str(folder / LOG_NAME),
        "--cwd",
        cwd,
        "--",
        *workload_argv(resolved, folder, launch.python),
    ]
    demand = task_demand(resolved, launch)
    env = {
        **resolved.get("env", {}),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HOME": launch.hf_home,
        "PYTHONUNBUFFERED": "1",
        "ARGUS_TASK_ID": task_id,
        "ARGUS_USER_ID": user_id,
        "ARGUS_TASK_DIR": str(folder),
        "ARGUS_CHECKPOINT_DIR": str(folder / CHECKPOINT_NAME),
    }
    return JobSubmission(
        job_id=ray_job_id,
        entrypoint=shlex.join(argv),
        env_vars=env,
        num_cpus=demand["CPU"],
        num_gpus=demand.get("GPU", 0.0),
        resources={k: v for k, v in demand.items() if k not in ("CPU", "GPU")},
        metadata={"argus_task_id": task_id, "argus_user_id": user_id},
    )
