"""A stored task -> the Ray job that runs it (pure: no Ray, no database).

Every task's driver is `python -m argus.training.launch`, which runs the workload's
command in the task's folder and copies its output to `<task dir>/task.log` on the
shared storage, where the API reads it (the API never asks Ray for logs).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from argus.cluster.job_client import JobSubmission
from argus.cluster.placement import gpu_demand
from argus.storage import CHECKPOINT_NAME, LOG_NAME, offline_hf_env, task_dir
from argus.training.spec import ResolvedTaskSpec


@dataclass(frozen=True)
class LaunchSettings:
    python: str  # the interpreter on the Ray nodes (the same path on every node)
    storage_root: Path
    accelerator_type: str | None
    hf_home: str


def task_demand(spec: ResolvedTaskSpec, launch: LaunchSettings) -> dict[str, float]:
    """What the task's driver holds on its node, in Ray's resource names."""
    demand = {"CPU": float(spec.cpus_per_node)}
    if spec.gpus_per_node:
        # GPUs of the cluster's type: Ray's own accelerator label, as on model replicas.
        demand.update(gpu_demand(spec.gpus_per_node, launch.accelerator_type))
    return demand


def workload_argv(spec: ResolvedTaskSpec, folder: Path, python: str) -> list[str]:
    if spec.workload == "sft":
        return [
            python,
            "-m",
            "argus.training.sft",
            "--model-source",
            str(spec.model_source),
            "--train-file",
            str(spec.train_file),
            "--output-dir",
            str(folder),
            "--max-steps",
            str(spec.max_steps),
            "--learning-rate",
            repr(spec.learning_rate),
            "--batch-size",
            str(spec.batch_size),
            "--max-seq-len",
            str(spec.max_seq_len),
            "--seed",
            str(spec.seed),
        ]
    return ["/bin/sh", "-c", str(spec.entrypoint)]


def build_submission(
    task_id: str, user_id: str, ray_job_id: str, spec: ResolvedTaskSpec, launch: LaunchSettings
) -> JobSubmission:
    folder = task_dir(launch.storage_root, user_id, task_id)
    cwd = spec.working_dir or str(folder)
    argv = [
        launch.python,
        "-m",
        "argus.training.launch",
        "--log",
        str(folder / LOG_NAME),
        "--cwd",
        cwd,
        "--",
        *workload_argv(spec, folder, launch.python),
    ]
    demand = task_demand(spec, launch)
    env = {
        **spec.env,
        **offline_hf_env(launch.hf_home),
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
