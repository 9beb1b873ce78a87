"""The training control plane's operations: submit, list, read, cancel, logs.

Each validates, writes desired state in one transaction and returns at once; the task
scheduler (part of the control loop's tick) does the rest. The API, the UI and the CLI
call these, nothing else.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import yaml
from sqlalchemy.orm import Session

from argus.auth.tokens import Principal
from argus.errors import BadRequest, Conflict, Forbidden, NotFound, Unprocessable
from argus.ids import new_task_id, validate_model_id_suffix
from argus.quotas import Quota, can_never_fit
from argus.storage import (
    CHECKPOINT_NAME,
    LOG_NAME,
    PathForbidden,
    PathInvalid,
    data_roots,
    is_within,
    resolve_model_source,
    resolve_within,
    task_dir,
    user_home,
)
from argus.store import tasks as store
from argus.store.db import Database
from argus.store.schema import Task, TaskEvent
from argus.store.states import FINISHED_TASK_STATES, TaskState
from argus.store.users import get_user, quota_of
from argus.text import shown
from argus.training.spec import (
    SFT_DEFAULTS,
    ResolvedTaskSpec,
    TaskLimits,
    default_gpus,
    validate_task_spec,
)
from argus.training.states import TaskTrigger, next_task_state, task_transition
from argus.yamlspec import SpecInvalid, SpecSyntaxError, load_yaml_mapping

MAX_SPEC_BYTES = 32 * 1024  # a spec is a few hundred bytes; an echo of it stays small
MAX_TRAIN_FILE_BYTES = 1024**3
DEFAULT_TAIL_LINES = 200
MAX_TAIL_BYTES = 4 * 1024 * 1024
MAX_LOG_OFFSET = 2**40  # 1 TiB: past any log a task writes, inside every file system's range
EVENTS_PAGE = 50
MODEL_ID_MAX = 64

COMMANDS_NOT_ALLOWED = (
    "running your own code on the cluster (workload: command) needs the admin's permission: "
    "ask them to run `argus admin user update {user} --allow-commands`. workload: sft runs "
    "argus's own fine-tuning and needs none"
)


@dataclass(frozen=True)
class TaskContext:
    db: Database
    storage_root: Path
    limits: TaskLimits
    max_active_per_user: int
    quotas: Quota  # the defaults; the admin may set a user's own


def resolve_task_spec(ctx: TaskContext, user_id: str, text: str) -> ResolvedTaskSpec:
    """YAML text -> the resolved spec argus stores; raises the API's errors."""
    try:
        spec = validate_task_spec(load_yaml_mapping(text), ctx.limits)
    except SpecSyntaxError as e:
        raise BadRequest(str(e)) from None
    except SpecInvalid as e:
        raise Unprocessable(
            str(e), details=[{"field": f.field, "message": f.message} for f in e.errors]
        ) from None
    resolved = spec.model_dump()
    if spec.gpus_per_node is None:
        resolved["gpus_per_node"] = default_gpus(ctx.limits.engine)
    field = "model_source"
    try:
        if spec.workload == "sft":
            assert spec.model_source is not None and spec.train_file is not None
            resolved["model_source"] = str(
                resolve_model_source(spec.model_source, ctx.storage_root, user_id)
            )
            field = "train_file"
            resolved["train_file"] = str(
                resolve_train_file(ctx.storage_root, user_id, spec.train_file)
            )
            for key, default in SFT_DEFAULTS.items():
                if resolved[key] is None:
                    resolved[key] = default
        elif spec.working_dir is not None:
            field = "working_dir"
            wd = resolve_within(
                spec.working_dir,
                ctx.storage_root,
                user_id,
                (user_home(ctx.storage_root, user_id),),
                field,
            )
            if not wd.is_dir():
                raise PathInvalid(f"{shown(spec.working_dir)} is not a folder")
            resolved["working_dir"] = str(wd)
    except PathForbidden as e:
        raise Forbidden.of_field(field, str(e)) from None
    except PathInvalid as e:
        raise Unprocessable.of_field(field, str(e)) from None
    return ResolvedTaskSpec.model_validate(resolved)


def resolve_train_file(storage_root: Path, user_id: str, raw: str) -> Path:
    """A JSONL file inside the shared datasets or the user's home; PathInvalid/Forbidden."""
    path = resolve_within(
        raw, storage_root, user_id, data_roots(storage_root, user_id), "train_file"
    )
    try:
        if not path.exists():
            raise PathInvalid(f"{shown(raw)} does not exist")
        if not path.is_file():
            raise PathInvalid(f"{shown(raw)} is not a file; give a JSONL file of chats")
        size = path.stat().st_size
    except OSError as e:
        raise PathInvalid(f"{shown(raw)} cannot be read: {e.__class__.__name__}") from None
    if size == 0:
        raise PathInvalid(f"{shown(raw)} is empty")
    if size > MAX_TRAIN_FILE_BYTES:
        raise PathInvalid(f"{shown(raw)} is larger than 1 GiB")
    return path


def submit_task(ctx: TaskContext, caller: Principal, text: str, now: datetime) -> Task:
    spec = resolve_task_spec(ctx, caller.user_id, text)
    with ctx.db.write() as s:
        user = get_user(s, caller.user_id)
        if user is None:
            raise NotFound(f"no user {caller.user_id!r}")
        if spec.workload == "command" and not (caller.is_admin or user.allow_commands):
            raise Forbidden(COMMANDS_NOT_ALLOWED.format(user=caller.user_id))
        if not caller.is_admin:
            quota = quota_of(user, ctx.quotas)
            if can_never_fit(quota, spec.gpus):
                raise Conflict(
                    f"{caller.user_id} may hold at most {quota.max_gpus} GPUs; this task asks "
                    f"{spec.gpus}, so it could never start"
                )
        active = store.count_active_tasks(s, caller.user_id)
        if active >= ctx.max_active_per_user:
            raise Conflict(
                f"you have {active} tasks queued or running, the most this cluster allows; "
                "wait for one to finish or cancel one"
            )
        return store.insert_task(
            s,
            task_id=new_task_id(),
            user_id=caller.user_id,
            name=spec.name,
            workload=spec.workload,
            spec_yaml=text,
            resolved_spec=spec.stored(),
            gpus=spec.gpus,
            state=next_task_state(None, TaskTrigger.CREATED),
            event_type=TaskTrigger.CREATED.value,
            now=now,
        )


def get_owned(ctx: TaskContext, caller: Principal, task_id: str) -> Task:
    with ctx.db.read() as s:
        task = store.get_task(s, task_id, None if caller.is_admin else caller.user_id)
    if task is None:
        raise NotFound(f"no task with id {shown(task_id)}; list yours with GET /api/v2/tasks")
    return task


def list_tasks(
    ctx: TaskContext,
    caller: Principal,
    *,
    states: list[TaskState] | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Task], int]:
    """A page of the caller's tasks (everyone's for the admin), newest first."""
    with ctx.db.read() as s:
        return store.list_tasks(
            s,
            user_id=None if caller.is_admin else caller.user_id,
            states=states,
            limit=limit,
            offset=offset,
        )


def events(
    ctx: TaskContext,
    caller: Principal,
    task_id: str,
    limit: int = EVENTS_PAGE,
    before: int | None = None,
) -> tuple[Task, list[TaskEvent], int]:
    """The task, a page of its events (newest first, older than `before`), and their total."""
    task = get_owned(ctx, caller, task_id)
    with ctx.db.read() as s:
        page, total = store.list_task_events(s, task.task_id, limit, before)
    return task, page, total


def is_finished(ctx: TaskContext, task_id: str) -> bool:
    with ctx.db.read() as s:
        task = store.get_task(s, task_id)
        return task is None or TaskState(task.state).is_finished


def cancel(ctx: TaskContext, caller: Principal, task_id: str, now: datetime) -> Task:
    """QUEUED: CANCELED at once. SUBMITTED or RUNNING: the scheduler stops its Ray job."""
    owned = get_owned(ctx, caller, task_id)
    with ctx.db.write() as s:
        task = store.get_task(s, owned.task_id)
        assert task is not None  # tasks are never removed
        state = TaskState(task.state)
        if state in FINISHED_TASK_STATES:
            raise Conflict(
                f"task {task.task_id} is already {state.value}; there is nothing to cancel"
            )
        request_cancel(s, task, caller.user_id, now)
        return task


def request_cancel(s: Session, task: Task, by: str, now: datetime) -> None:
    """Cancel a task that has not finished, in the caller's transaction."""
    if task.state == TaskState.QUEUED.value:
        task_transition(s, task, TaskTrigger.CANCELED, now, payload={"by": by})
    elif task.cancel_requested_at is None:
        task_transition(s, task, TaskTrigger.CANCEL_REQUESTED, now, payload={"by": by})


def task_spec_yaml(task: Task) -> str:
    return yaml.safe_dump(task.resolved_spec, sort_keys=False)


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
    """At most `limit` bytes of the log from `offset` (nothing past its end)."""
    if path is None or not 0 <= offset <= MAX_LOG_OFFSET:
        return b""
    fd = open_log(path)
    if fd is None:
        return b""
    with os.fdopen(fd, "rb") as f:
        try:
            f.seek(offset)
            return f.read(limit)
        except (OSError, ValueError, OverflowError):
            return b""


def checkpoint_ready(ctx: TaskContext, task: Task) -> bool:
    """The task left a servable folder at `$HOME/tasks/<id>/checkpoint`."""
    folder = task_dir(ctx.storage_root, task.user_id, task.task_id) / CHECKPOINT_NAME
    return (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))


def servable_checkpoint(ctx: TaskContext, caller: Principal, task_id: str) -> Task:
    """The caller's own task whose checkpoint can be served.

    NotFound for a task that is not the caller's (the admin included: the checkpoint lies
    in its owner's home, which only the owner's specs may name); Conflict without one.
    """
    task = get_owned(ctx, caller, task_id)
    if task.user_id != caller.user_id:
        raise NotFound(f"no task with id {shown(task_id)} of yours")
    if task.state != TaskState.SUCCEEDED.value or not checkpoint_ready(ctx, task):
        raise Conflict(
            f"task {task.name} ({task.task_id}) is {task.state} and has no checkpoint at "
            f"$HOME/tasks/{task.task_id}/{CHECKPOINT_NAME} (a folder with config.json and "
            "*.safetensors)"
        )
    return task


def checkpoint_model_id(task_name: str, task_id: str) -> str:
    """The task's name and a piece of its id: two tasks of one name get two models."""
    tag = task_id.removeprefix("tsk_")[:8]
    return validate_model_id_suffix(f"{task_name[: MODEL_ID_MAX - len(tag) - 1]}-{tag}")
