"""The training control plane's operations: submit, read, cancel, logs.

Each validates, writes desired state in one transaction and returns at once; the
scheduler (part of the reconciler's tick) does the rest. Routes, the UI and the
CLI call these, nothing else.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from argus.auth.tokens import Principal
from argus.errors import BadRequest, Conflict, Forbidden, NotFound, Unprocessable
from argus.serving.paths import (
    ModelSourceForbidden,
    ModelSourceInvalid,
    is_within,
    resolve_model_source,
    resolve_within,
    user_home,
)
from argus.store import tasks as store
from argus.store.db import Database
from argus.store.schema import Task, TaskEvent
from argus.training.spec import SFT_DEFAULTS, TaskLimits, default_gpus, validate_task_spec
from argus.training.states import FINISHED_STATES, TaskState, TaskTrigger
from argus.training.submission import CHECKPOINT_NAME, LOG_NAME, task_dir
from argus.yamlspec import SpecInvalid, SpecSyntaxError, load_yaml_mapping

MAX_SPEC_BYTES = 64 * 1024
MAX_TRAIN_FILE_BYTES = 1024**3
DEFAULT_TAIL_LINES = 200
MAX_TAIL_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class TaskContext:
    db: Database
    storage_root: Path
    limits: TaskLimits
    max_active_per_user: int


def _field_error(status: type[Forbidden] | type[Unprocessable], field: str, e: Exception) -> Any:
    return status(f"{field}: {e}", details=[{"field": field, "message": str(e)}])


def resolve_task_spec(ctx: TaskContext, user_id: str, text: str) -> dict[str, Any]:
    """YAML text -> the resolved spec argus stores; raises the API's errors."""
    try:
        spec = validate_task_spec(load_yaml_mapping(text), ctx.limits)
    except SpecSyntaxError as e:
        raise BadRequest(str(e)) from None
    except SpecInvalid as e:
        raise Unprocessable(
            str(e), details=[{"field": f.field, "message": f.message} for f in e.errors]
        ) from None
    root = ctx.storage_root
    home = user_home(root, user_id)
    resolved: dict[str, Any] = {
        "name": spec.name,
        "workload": spec.workload,
        "nnodes": spec.nnodes,
        "gpus_per_node": (
            spec.gpus_per_node
            if spec.gpus_per_node is not None
            else default_gpus(ctx.limits.engine)
        ),
        "cpus_per_node": spec.cpus_per_node,
        "env": dict(spec.env),
    }
    try:
        if spec.workload == "sft":
            assert spec.model_source is not None and spec.train_file is not None
            field = "model_source"
            resolved["model_source"] = str(resolve_model_source(spec.model_source, root, user_id))
            field = "train_file"
            train = resolve_within(spec.train_file, root, user_id, (root / "datasets", home), field)
            _check_train_file(train, spec.train_file)
            resolved["train_file"] = str(train)
            for key, default in SFT_DEFAULTS.items():
                value = getattr(spec, key)
                resolved[key] = default if value is None else value
        else:
            field = "working_dir"
            resolved["entrypoint"] = spec.entrypoint
            if spec.working_dir is not None:
                wd = resolve_within(spec.working_dir, root, user_id, (home,), field)
                if not wd.is_dir():
                    raise ModelSourceInvalid(f"{spec.working_dir!r} is not a folder")
                resolved["working_dir"] = str(wd)
    except ModelSourceForbidden as e:
        raise _field_error(Forbidden, field, e) from None
    except ModelSourceInvalid as e:
        raise _field_error(Unprocessable, field, e) from None
    return resolved


def _check_train_file(path: Path, shown_as: str) -> None:
    if not path.exists():
        raise ModelSourceInvalid(f"{shown_as!r} does not exist")
    if not path.is_file():
        raise ModelSourceInvalid(f"{shown_as!r} is not a file; give a JSONL file of chats")
    size = path.stat().st_size
    if size == 0:
        raise ModelSourceInvalid(f"{shown_as!r} is empty")
    if size > MAX_TRAIN_FILE_BYTES:
        raise ModelSourceInvalid(f"{shown_as!r} is larger than 1 GiB")


def submit_task(ctx: TaskContext, caller: Principal, text: str, now: datetime) -> Task:
    resolved = resolve_task_spec(ctx, caller.user_id, text)
    with ctx.db.write() as s:
        active = store.count_active_tasks(s, caller.user_id)
        if active >= ctx.max_active_per_user:
            raise Conflict(
                f"you have {active} tasks queued or running, the most this cluster allows; "
                "wait for one to finish or cancel one"
            )
        return store.create_task(
            s, user_id=caller.user_id, spec_yaml=text, resolved_spec=resolved, now=now
        )


def get_owned(ctx: TaskContext, caller: Principal, task_id: str) -> Task:
    with ctx.db.read() as s:
        task = store.get_task(s, task_id, None if caller.is_admin else caller.user_id)
    if task is None:
        raise NotFound(f"no task with id {task_id!r}; list yours with GET /api/v2/tasks")
    return task


def get_with_events(
    ctx: TaskContext, caller: Principal, task_id: str
) -> tuple[Task, list[TaskEvent]]:
    task = get_owned(ctx, caller, task_id)
    with ctx.db.read() as s:
        events = store.list_task_events(s, task.task_id)
    return task, events


def cancel(ctx: TaskContext, caller: Principal, task_id: str, now: datetime) -> Task:
    """QUEUED: CANCELED at once. SUBMITTED or RUNNING: the scheduler stops its Ray job."""
    owned = get_owned(ctx, caller, task_id)
    with ctx.db.write() as s:
        task = store.get_task(s, owned.task_id)
        assert task is not None  # tasks are never removed
        state = TaskState(task.state)
        if state in FINISHED_STATES:
            raise Conflict(
                f"task {task.task_id} is already {state.value}; there is nothing to cancel"
            )
        if state is TaskState.QUEUED:
            store.set_task_state(s, task, TaskTrigger.CANCELED, now, payload={"by": caller.user_id})
        elif task.cancel_requested_at is None:
            store.set_task_state(
                s, task, TaskTrigger.CANCEL_REQUESTED, now, payload={"by": caller.user_id}
            )
        return task


# -- logs -----------------------------------------------------------------------
def log_path(ctx: TaskContext, task: Task) -> Path | None:
    """The task's log file, if it exists inside its owner's home (no symlink tricks)."""
    path = task_dir(ctx.storage_root, task.user_id, task.task_id) / LOG_NAME
    home = Path(os.path.realpath(user_home(ctx.storage_root, task.user_id)))
    real = Path(os.path.realpath(path))
    if not is_within(real, home) or not real.is_file():
        return None
    return real


def open_log(path: Path) -> int | None:
    try:
        return os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None


def read_tail(path: Path | None, lines: int) -> tuple[bytes, int]:
    """The last `lines` lines of the log (at most 4 MiB of them) and the file's size."""
    if path is None:
        return b"", 0
    fd = open_log(path)
    if fd is None:
        return b"", 0
    with os.fdopen(fd, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        start = max(0, size - MAX_TAIL_BYTES)
        f.seek(start)
        data = f.read(size - start)
    if lines <= 0:
        return b"", size
    parts = data.splitlines(keepends=True)
    if start > 0 and parts:
        parts = parts[1:]  # the first line is cut
    return b"".join(parts[-lines:]), size


def read_from(path: Path | None, offset: int, limit: int = 1024 * 1024) -> bytes:
    if path is None:
        return b""
    fd = open_log(path)
    if fd is None:
        return b""
    with os.fdopen(fd, "rb") as f:
        f.seek(offset)
        return f.read(limit)


def checkpoint_ready(ctx: TaskContext, task: Task) -> bool:
    """The task left a servable folder at `$HOME/tasks/<id>/checkpoint`."""
    folder = task_dir(ctx.storage_root, task.user_id, task.task_id) / CHECKPOINT_NAME
    return (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))
