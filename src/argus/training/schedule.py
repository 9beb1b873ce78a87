"""The task scheduler's decision, as a pure function.

`schedule(tasks, jobs, free, quotas)` looks at the active tasks (oldest first), what
Ray's job API reports, the resources left per node once the models have had their
share, and each owner's GPU quota and use, and returns what to do: jobs to submit, jobs
to stop, state changes to record. No Ray, no database, no clock.

Serving and training draw on one count: `free` is Ray's available resources less
what applied models are about to take, and `claims()` tells the serving plan what
submitted tasks are about to take, so neither hands the other's GPUs out twice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from argus.cluster.job_client import JobInfo, JobStatus
from argus.cluster.placement import Free, fits
from argus.quotas import Quota, Usage, task_refusal
from argus.store.states import TaskState
from argus.text import summarize_error
from argus.training.states import TaskTrigger


@dataclass(frozen=True)
class TaskRecord:
    """A stored task as the scheduler sees it."""

    task_id: str
    user_id: str
    state: TaskState
    ray_job_id: str
    demand: dict[str, float]  # what the task's driver holds on its node
    gpus: int = 0  # what its owner's quota counts while it runs
    cancel_requested: bool = False
    last_event: str | None = None  # not repeated while the task keeps waiting
    problem: str | None = None  # why a queued task must fail instead of starting


@dataclass(frozen=True)
class Owner:
    """A task owner's quota (None: the admin, unlimited) and what they hold now."""

    quota: Quota | None
    usage: Usage


@dataclass(frozen=True)
class TaskChange:
    task_id: str
    trigger: TaskTrigger
    error_summary: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskPlan:
    changes: tuple[TaskChange, ...]
    submit: tuple[str, ...]  # task ids whose Ray job to submit now (then SUBMITTED)
    stop: tuple[str, ...]  # Ray job ids to stop


def claims(
    tasks: Sequence[TaskRecord], jobs: Mapping[str, JobInfo] | None
) -> list[dict[str, float]]:
    """Resources submitted tasks will take that Ray may still show as free.

    A job's driver holds its resources once it runs; until then (PENDING, or not
    listed yet) its demand is counted here.
    """
    out = []
    for t in tasks:
        if t.state is TaskState.SUBMITTED:
            job = jobs.get(t.ray_job_id) if jobs is not None else None
            if job is None or job.status is JobStatus.PENDING:
                out.append(t.demand)
    return out


def schedule(
    tasks: Sequence[TaskRecord],
    jobs: Mapping[str, JobInfo] | None,
    free: Free,
    owners: Mapping[str, Owner] | None = None,
) -> TaskPlan:
    """`jobs` None: Ray's job API did not answer; then nothing is submitted or concluded.

    `owners` gives each task owner's quota and use; a task that would pass its owner's
    GPU quota waits (PENDING_QUOTA, once) as one that does not fit waits for room.
    """
    changes: list[TaskChange] = []
    submit: list[str] = []
    stop: list[str] = []
    blocked_users: set[str] = set()  # first in, first out per user
    if jobs is None:
        return TaskPlan((), (), ())
    used = {user: owner.usage.task_gpus for user, owner in (owners or {}).items()}
    for t in tasks:
        job = jobs.get(t.ray_job_id)
        if t.state is TaskState.QUEUED:
            if job is not None:
                # Submitted by an argus that stopped before recording it: adopt the job.
                changes.append(
                    TaskChange(t.task_id, TaskTrigger.SUBMITTED, payload={"adopted": True})
                )
                continue
            if t.problem is not None:
                changes.append(TaskChange(t.task_id, TaskTrigger.FAILED, error_summary=t.problem))
                continue
            if t.user_id in blocked_users:
                continue
            owner = (owners or {}).get(t.user_id)
            refusal = _over_quota(t, owner, used)
            if refusal is not None:
                blocked_users.add(t.user_id)
                if t.last_event != TaskTrigger.PENDING_QUOTA.value:
                    changes.append(
                        TaskChange(
                            t.task_id, TaskTrigger.PENDING_QUOTA, payload={"reason": refusal}
                        )
                    )
                continue
            if fits(t.demand, 1, free):
                submit.append(t.task_id)
                used[t.user_id] = used.get(t.user_id, 0) + t.gpus
                continue
            blocked_users.add(t.user_id)
            if t.last_event != TaskTrigger.PENDING_RESOURCES.value:
                changes.append(
                    TaskChange(
                        t.task_id,
                        TaskTrigger.PENDING_RESOURCES,
                        payload={
                            "needs": t.demand,
                            "free": {n: dict(r) for n, r in free.items()},
                        },
                    )
                )
            continue
        # SUBMITTED or RUNNING: follow the Ray job.
        if job is None:
            changes.append(
                TaskChange(
                    t.task_id,
                    TaskTrigger.FAILED,
                    error_summary=(
                        f"its Ray job {t.ray_job_id} is gone: the Ray cluster restarted or "
                        "the job was deleted outside argus"
                    ),
                )
            )
            continue
        if t.cancel_requested and not job.status.is_terminal:
            stop.append(t.ray_job_id)
        changes.extend(_follow(t, job))
    return TaskPlan(tuple(changes), tuple(submit), tuple(stop))


def _over_quota(t: TaskRecord, owner: Owner | None, used: dict[str, int]) -> str | None:
    if owner is None or owner.quota is None:
        return None
    usage = Usage(owner.usage.models, owner.usage.model_gpus, used.get(t.user_id, 0))
    return task_refusal(t.user_id, owner.quota, usage, t.gpus)


def _follow(t: TaskRecord, job: JobInfo) -> list[TaskChange]:
    status = job.status
    if status is JobStatus.RUNNING and t.state is TaskState.SUBMITTED:
        return [TaskChange(t.task_id, TaskTrigger.STARTED)]
    if status is JobStatus.SUCCEEDED:
        return [TaskChange(t.task_id, TaskTrigger.SUCCEEDED, payload={"exit_code": job.exit_code})]
    if status is JobStatus.STOPPED:
        if t.cancel_requested:
            return [TaskChange(t.task_id, TaskTrigger.CANCELED)]
        return [
            TaskChange(
                t.task_id,
                TaskTrigger.FAILED,
                error_summary="its Ray job was stopped outside argus",
            )
        ]
    if status is JobStatus.FAILED:
        if t.cancel_requested:
            return [TaskChange(t.task_id, TaskTrigger.CANCELED, payload={"ray": "FAILED"})]
        return [
            TaskChange(
                t.task_id,
                TaskTrigger.FAILED,
                error_summary=failure_summary(job),
                payload={"exit_code": job.exit_code},
            )
        ]
    return []


def failure_summary(job: JobInfo) -> str:
    """A readable reason from Ray's message (which often ends with the driver's logs)."""
    message = job.message or ""
    code = f"exit code {job.exit_code}" if job.exit_code is not None else ""
    _, sep, logs = message.partition("last available logs")
    if sep:
        # The launcher's own lines ("[argus ...] task starting ...") are not the reason.
        body = logs.partition(":")[2] or logs
        own = "\n".join(ln for ln in body.splitlines() if not ln.startswith("[argus "))
        reason = summarize_error(own) if own.strip() else "it printed nothing"
        return f"the task failed ({code or 'see its logs'}): {reason}"
    if message:
        return summarize_error(message)
    return f"the task failed ({code or 'no message from Ray'}); see its logs"
