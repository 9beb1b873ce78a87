"""The task spec: a training task as a user writes it, and the typed resolved spec argus keeps.

The same rules as serving specs (strict YAML, unknown fields refused by name, whole
numbers that are whole numbers), plus the rules of each workload: `sft` (argus's own
fine-tuning code, open to every user) needs a model and a training file and takes its
environment from an allowlist; `command` runs the user's own entrypoint in a folder of
their home, which the admin must allow for that user.

`ResolvedTaskSpec` is what the store keeps (`stored()`) and reads back (`from_stored()`,
which checks every rule again).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from argus.cluster.serve_app import EngineMode
from argus.text import shown
from argus.training import sft
from argus.yamlspec import FieldError, SpecInvalid, field_name, pydantic_errors

TASK_NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9._-]{0,63}")
ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
# Set by argus for every task; a command task's spec may not override them.
RESERVED_ENV_PREFIXES = ("ARGUS_", "RAY_")
RESERVED_ENV = frozenset({"HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HOME", "PYTHONPATH"})
# An sft task runs argus's code only: its environment may tune threads and logging, never
# what is loaded or run (LD_PRELOAD, PATH, PYTHON*, ...).
SFT_ENV_ALLOWED = frozenset(
    {
        "OMP_NUM_THREADS",
        "MKL_NUM_THREADS",
        "TOKENIZERS_PARALLELISM",
        "PYTORCH_CUDA_ALLOC_CONF",
        "CUDA_LAUNCH_BLOCKING",
        "NCCL_DEBUG",
        "TORCH_SHOW_CPP_STACKTRACES",
        "TZ",
        "LANG",
        "LC_ALL",
    }
)
MAX_ENV_VARS = 64
MAX_ENV_VALUE = 4096
MAX_ENTRYPOINT = 8192

SFT_FIELDS = ("model_source", "train_file", "max_steps", "learning_rate", "batch_size")
SFT_FIELDS_ALL = (*SFT_FIELDS, "max_seq_len", "seed")
COMMAND_FIELDS = ("entrypoint", "working_dir")

# The sft workload's own defaults, chosen so the demo trains in about a minute on 2 cores.
SFT_DEFAULTS: dict[str, Any] = {
    "max_steps": sft.DEFAULT_MAX_STEPS,
    "learning_rate": sft.DEFAULT_LEARNING_RATE,
    "batch_size": sft.DEFAULT_BATCH_SIZE,
    "max_seq_len": sft.DEFAULT_MAX_SEQ_LEN,
    "seed": sft.DEFAULT_SEED,
}


class _TaskFields(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)

    name: str = Field(description="A label for the task: letters, digits, '.', '_' or '-'.")
    workload: Literal["sft", "command"] = Field(description="sft (built in) or command.")
    nnodes: int = Field(1, ge=1, le=64, description="Nodes the task runs on (1 for now).")
    cpus_per_node: int = Field(1, ge=1, le=512, description="CPUs the task's driver holds.")
    env: dict[str, str] = Field(default_factory=dict, description="Extra environment.")
    # workload: sft
    model_source: str | None = Field(None, description="Model folder to fine-tune (sft).")
    train_file: str | None = Field(None, description="JSONL chat file (sft).")
    max_steps: int | None = Field(None, ge=1, le=1_000_000, description="Optimizer steps.")
    learning_rate: float | None = Field(None, gt=0, le=1, description="Peak learning rate.")
    batch_size: int | None = Field(None, ge=1, le=1024, description="Examples per step.")
    max_seq_len: int | None = Field(None, ge=16, le=131_072, description="Tokens per example.")
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    # workload: command
    entrypoint: str | None = Field(
        None, max_length=MAX_ENTRYPOINT, description="Shell command to run (command)."
    )
    working_dir: str | None = Field(None, description="Folder under $HOME to run it in.")

    @field_validator("name")
    @classmethod
    def _name_rule(cls, v: str) -> str:
        if not TASK_NAME_RE.fullmatch(v):
            raise ValueError(
                f"name {shown(v)} is not valid: use 1 to 64 characters, a letter or digit "
                "first, then letters, digits, '.', '_' or '-'"
            )
        return v


class TaskSpec(_TaskFields):
    """A task as the user wrote it (paths not yet resolved)."""

    gpus_per_node: int | None = Field(
        None, ge=0, le=16, description="GPUs per node; default 1 on a GPU cluster, 0 on CPU."
    )


class ResolvedTaskSpec(_TaskFields):
    """What argus stores and runs: paths resolved, defaults filled in."""

    gpus_per_node: int = Field(ge=0, le=16)

    @property
    def gpus(self) -> int:
        """GPUs the task holds while it runs (what quotas count)."""
        return self.gpus_per_node * self.nnodes

    def stored(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)

    @classmethod
    def from_stored(cls, data: Any) -> ResolvedTaskSpec:
        """Read back a stored spec, checking every rule again; SpecInvalid if one breaks."""
        if not isinstance(data, dict):
            raise SpecInvalid([FieldError("(top level)", "the stored spec is not a mapping")])
        try:
            spec = cls.model_validate(data)
        except ValidationError as e:
            raise SpecInvalid(pydantic_errors(e, cls)) from None
        errors = _workload_errors(spec, {k for k, v in data.items() if v is not None})
        if errors:
            raise SpecInvalid(errors)
        return spec


@dataclass(frozen=True)
class TaskLimits:
    engine: EngineMode


def _learning_rate_as_float(data: dict[str, Any]) -> dict[str, Any]:
    # YAML reads `learning_rate: 1` as an int; strict mode would refuse it for a float.
    lr = data.get("learning_rate")
    if isinstance(lr, int) and not isinstance(lr, bool) and lr.bit_length() < 1000:
        return {**data, "learning_rate": float(lr)}  # larger: refused below, never overflows
    return data


def validate_task_spec(data: dict[str, Any], limits: TaskLimits) -> TaskSpec:
    """Check every field; SpecInvalid lists each broken rule with its field."""
    try:
        spec = TaskSpec.model_validate(_learning_rate_as_float(data))
    except ValidationError as e:
        raise SpecInvalid(pydantic_errors(e, TaskSpec)) from None
    errors = _workload_errors(spec, {k for k, v in data.items() if v is not None})
    if limits.engine is EngineMode.GPU and spec.gpus_per_node == 0:
        errors.append(
            FieldError("gpus_per_node", "must be at least 1 on this GPU cluster (0 is for CPU)")
        )
    if errors:
        raise SpecInvalid(errors)
    return spec


def _workload_errors(spec: _TaskFields, given: set[str]) -> list[FieldError]:
    errors: list[FieldError] = []
    if spec.workload == "sft":
        errors += [
            FieldError(f, "is required for workload sft")
            for f in ("model_source", "train_file")
            if f not in given
        ]
        errors += [
            FieldError(f, "is for workload command; remove it or set workload: command")
            for f in COMMAND_FIELDS
            if f in given
        ]
    else:
        if not (spec.entrypoint or "").strip():
            errors.append(FieldError("entrypoint", "is required for workload command"))
        errors += [
            FieldError(f, "is for workload sft; remove it or set workload: sft")
            for f in SFT_FIELDS_ALL
            if f in given
        ]
    if spec.nnodes != 1:
        errors.append(
            FieldError(
                "nnodes",
                "only 1 is supported for now: a task runs on one node (with up to "
                "gpus_per_node GPUs there)",
            )
        )
    errors += _env_errors(spec.env, spec.workload)
    return errors


def _env_errors(env: dict[str, str], workload: str) -> list[FieldError]:
    errors = []
    if len(env) > MAX_ENV_VARS:
        errors.append(FieldError("env", f"at most {MAX_ENV_VARS} variables, got {len(env)}"))
    for name, value in list(env.items())[: MAX_ENV_VARS + 1]:
        where = field_name(("env", name))
        if not ENV_NAME_RE.fullmatch(name):
            errors.append(
                FieldError(where, "a variable name is letters, digits and '_', not a digit first")
            )
        elif workload == "sft" and name not in SFT_ENV_ALLOWED:
            errors.append(
                FieldError(
                    where,
                    "an sft task may set only " + ", ".join(sorted(SFT_ENV_ALLOWED)),
                )
            )
        elif name.startswith(RESERVED_ENV_PREFIXES) or name in RESERVED_ENV:
            errors.append(FieldError(where, "argus sets this variable; choose another name"))
        if len(value) > MAX_ENV_VALUE or "\x00" in value:
            errors.append(FieldError(where, f"at most {MAX_ENV_VALUE} characters, no NUL byte"))
    return errors


def default_gpus(engine: EngineMode) -> int:
    return 1 if engine is EngineMode.GPU else 0
