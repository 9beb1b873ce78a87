"""The TaskSpec: a training task as a user writes it, parsed and checked field by field.

The same rules as serving specs (strict YAML, unknown fields refused by name,
whole numbers that are whole numbers), plus the rules of each workload: `sft`
(argus's fine-tuning) needs a model and a training file; `command` runs the
user's own entrypoint in a folder of their home.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from argus.config import EngineMode
from argus.yamlspec import FieldError, SpecInvalid, pydantic_errors

TASK_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]{0,63}$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
# Set by argus for every task; a spec may not override them.
RESERVED_ENV_PREFIXES = ("ARGUS_", "RAY_")
RESERVED_ENV = frozenset({"HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HOME", "PYTHONPATH"})
MAX_ENV_VARS = 64
MAX_ENV_VALUE = 4096
MAX_ENTRYPOINT = 8192

SFT_FIELDS = ("model_source", "train_file", "max_steps", "learning_rate", "batch_size")
SFT_FIELDS_ALL = (*SFT_FIELDS, "max_seq_len", "seed")
COMMAND_FIELDS = ("entrypoint", "working_dir")


class TaskSpec(BaseModel):
    """A task as the user wrote it (paths not yet resolved)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(description="A label for the task: letters, digits, '.', '_' or '-'.")
    workload: Literal["sft", "command"] = Field(description="sft (built in) or command.")
    nnodes: int = Field(1, ge=1, le=64, description="Nodes the task runs on (1 for now).")
    gpus_per_node: int | None = Field(
        None, ge=0, le=16, description="GPUs per node; default 1 on a GPU cluster, 0 on CPU."
    )
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
        if not TASK_NAME_RE.match(v):
            raise ValueError(
                f"name {v!r} is not valid: use 1 to 64 characters, a letter or digit first, "
                "then letters, digits, '.', '_' or '-'"
            )
        return v


# Defaults of the sft workload, chosen so the demo trains in about a minute on 2 CPU cores.
SFT_DEFAULTS: dict[str, Any] = {
    "max_steps": 20,
    "learning_rate": 5e-5,
    "batch_size": 4,
    "max_seq_len": 256,
    "seed": 42,
}


@dataclass(frozen=True)
class TaskLimits:
    engine: EngineMode


def _learning_rate_as_float(data: dict[str, Any]) -> dict[str, Any]:
    # YAML reads `learning_rate: 1` as an int; strict mode would refuse it for a float.
    lr = data.get("learning_rate")
    if isinstance(lr, int) and not isinstance(lr, bool):
        return {**data, "learning_rate": float(lr)}
    return data


def validate_task_spec(data: dict[str, Any], limits: TaskLimits) -> TaskSpec:
    """Check every field; SpecInvalid lists each broken rule with its field."""
    try:
        spec = TaskSpec.model_validate(_learning_rate_as_float(data))
    except ValidationError as e:
        raise SpecInvalid(pydantic_errors(e, TaskSpec)) from None
    errors: list[FieldError] = []
    given = {k for k, v in data.items() if v is not None}
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
    if limits.engine is EngineMode.GPU and spec.gpus_per_node == 0:
        errors.append(
            FieldError("gpus_per_node", "must be at least 1 on this GPU cluster (0 is for CPU)")
        )
    errors += _env_errors(spec.env)
    if errors:
        raise SpecInvalid(errors)
    return spec


def _env_errors(env: dict[str, str]) -> list[FieldError]:
    errors = []
    if len(env) > MAX_ENV_VARS:
        errors.append(FieldError("env", f"at most {MAX_ENV_VARS} variables, got {len(env)}"))
    for name, value in env.items():
        where = f"env.{name}"
        if not ENV_NAME_RE.match(name):
            errors.append(
                FieldError(where, "a variable name is letters, digits and '_', not a digit first")
            )
        elif name.startswith(RESERVED_ENV_PREFIXES) or name in RESERVED_ENV:
            errors.append(FieldError(where, "argus sets this variable; choose another name"))
        if len(value) > MAX_ENV_VALUE or "\x00" in value:
            errors.append(FieldError(where, f"at most {MAX_ENV_VALUE} characters, no NUL byte"))
    return errors


def default_gpus(engine: EngineMode) -> int:
    return 1 if engine is EngineMode.GPU else 0
