"""The task scheduler: the part of each control-loop tick that runs training tasks.

`observe()` reads the active tasks and asks Ray's job API for their jobs; the loop
passes `claims()` of that view to the serving plan, then `step()` with the resources
the models left, so models and tasks draw on one count (design D5). `step()` submits
the tasks that fit (and their owner's quota), stops the ones being cancelled, and
records every state change with its event in one transaction. A task's paths are
checked against the jail again when it is submitted, and a `command` task only runs
while its owner still may run commands.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy.orm import Session

from argus.cluster.job_client import JobClient, JobInfo
from argus.cluster.placement import Free
from argus.quotas import Quota
from argus.storage import (
    PathForbidden,
    PathInvalid,
    ensure_home,
    recheck_model_source,
    resolve_within,
    task_dir,
    user_home,
)
from argus.store import tasks as store
from argus.store.db import Database
from argus.store.schema import Task
from argus.store.states import TaskState
from argus.store.users import get_user, quota_of, usage_of
from argus.training.control import COMMANDS_NOT_ALLOWED, resolve_train_file
from argus.training.schedule import (
    Owner,
    TaskChange,
    TaskPlan,
    TaskRecord,
    claims,
    schedule,
)
from argus.training.spec import ResolvedTaskSpec
from argus.training.states import InvalidTaskTransition, TaskTrigger, task_transition
from argus.training.submission import LaunchSettings, build_submission, task_demand
from argus.yamlspec import SpecInvalid

log = logging.getLogger(__name__)

JOB_PREFIX = "argus-"
# A submission that keeps failing for this many ticks fails its task (with Ray's reason).
MAX_SUBMIT_ATTEMPTS = 3


@dataclass(frozen=True)
class TaskView:
    tasks: tuple[TaskRecord, ...]
    jobs: dict[str, JobInfo] | None  # None: Ray's job API did not answer
    error: str | None = None
    owners: dict[str, Owner] = field(default_factory=dict)

    def claims(self) -> list[dict[str, float]]:
        return claims(self.tasks, self.jobs)


@dataclass
class TaskScheduler:
    db: Database
    client: JobClient
    launch: LaunchSettings
    clock: Callable[[], datetime]
    quotas: Quota  # the defaults; the admin may set a user's own
    last_jobs: dict[str, JobInfo] = field(default_factory=dict)
    last_error: str | None = None
    errors: int = 0
    _submit_failures: dict[str, int] = field(default_factory=dict)

    def observe(self) -> TaskView:
        records, owners = self._load()
        if not records:
            return TaskView((), {})  # nothing to follow: no call to Ray
        try:
            jobs = self.client.jobs(JOB_PREFIX)
        except Exception as e:  # the dashboard restarts with the head; serving goes on
            self.errors += 1
            self.last_error = f"Ray's job API did not answer: {type(e).__name__}: {e}"
            log.warning("%s", self.last_error)
            return TaskView(tuple(records), None, self.last_error)
        self.last_jobs = jobs
        self.last_error = None
        return TaskView(tuple(records), jobs, owners=owners)

    def step(self, view: TaskView, free: Free) -> TaskPlan:
        decided = schedule(view.tasks, view.jobs, free, view.owners)
        changes = list(decided.changes)
        for job_id in decided.stop:
            self._stop_quietly(job_id)  # a failed stop is tried again next tick
        by_id = {t.task_id: t for t in view.tasks}
        for task_id in decided.submit:
            changes.extend(self._submit(by_id[task_id]))
        if changes:
            self._record(view.tasks, changes)
        return decided

    def _submit(self, t: TaskRecord) -> list[TaskChange]:
        with self.db.read() as s:
            task = store.get_task(s, t.task_id)
            if task is None or task.state != TaskState.QUEUED.value:
                return []
            user_id = task.user_id
            try:
                spec = ResolvedTaskSpec.from_stored(task.resolved_spec)
                self._recheck_paths(spec, user_id)
            except (SpecInvalid, PathForbidden, PathInvalid) as e:
                return [TaskChange(t.task_id, TaskTrigger.FAILED, error_summary=str(e)[:1000])]
        folder = task_dir(self.launch.storage_root, user_id, t.task_id)
        submission = build_submission(t.task_id, user_id, t.ray_job_id, spec, self.launch)
        try:
            ensure_home(self.launch.storage_root, user_id)
            folder.mkdir(parents=True, exist_ok=True)
            self.client.submit(submission)
        except Exception as e:
            failures = self._submit_failures.get(t.task_id, 0) + 1
            self._submit_failures[t.task_id] = failures
            reason = f"{type(e).__name__}: {e}"
            log.warning("submitting task %s failed (%d): %s", t.task_id, failures, reason)
            if failures < MAX_SUBMIT_ATTEMPTS:
                return []
            return [
                TaskChange(
                    t.task_id,
                    TaskTrigger.FAILED,
                    error_summary=f"Ray refused the job: {reason}"[:1000],
                )
            ]
        self._submit_failures.pop(t.task_id, None)
        return [
            TaskChange(
                t.task_id,
                TaskTrigger.SUBMITTED,
                payload={"ray_job_id": t.ray_job_id, "resources": t.demand},
            )
        ]

    def _recheck_paths(self, spec: ResolvedTaskSpec, user_id: str) -> None:
        """The folders a task was accepted with are still inside its owner's roots."""
        root = self.launch.storage_root
        if spec.model_source is not None:
            recheck_model_source(spec.model_source, root, user_id)
        if spec.train_file is not None:
            resolve_train_file(root, user_id, spec.train_file)
        if spec.working_dir is not None:
            home = (user_home(root, user_id),)
            if resolve_within(spec.working_dir, root, user_id, home, "working_dir") != Path(
                spec.working_dir
            ):
                raise PathForbidden("working_dir now resolves elsewhere; submit the task again")

    def _load(self) -> tuple[list[TaskRecord], dict[str, Owner]]:
        with self.db.read() as s:
            tasks = store.list_active_tasks(s)
            last = store.last_event_types(s, [t.task_id for t in tasks])
            records = [self._record_of(s, t, last.get(t.task_id)) for t in tasks]
            queued_owners = {t.user_id for t in tasks if t.state == TaskState.QUEUED.value}
            owners = {user: self._owner(s, user) for user in sorted(queued_owners)}
        return records, owners

    def _record_of(self, s: Session, t: Task, last_event: str | None) -> TaskRecord:
        problem = None
        demand: dict[str, float] = {}
        gpus = 0
        try:
            spec = ResolvedTaskSpec.from_stored(t.resolved_spec)
            demand, gpus = task_demand(spec, self.launch), spec.gpus
            if spec.workload == "command" and t.state == TaskState.QUEUED.value:
                owner = get_user(s, t.user_id)
                if owner is None or not (owner.is_admin or owner.allow_commands):
                    problem = COMMANDS_NOT_ALLOWED.format(user=t.user_id)
        except SpecInvalid as e:
            problem = f"its stored spec breaks a rule ({e}); submit the task again"
        return TaskRecord(
            task_id=t.task_id,
            user_id=t.user_id,
            state=TaskState(t.state),
            ray_job_id=t.ray_job_id,
            demand=demand,
            gpus=gpus,
            cancel_requested=t.cancel_requested_at is not None,
            last_event=last_event,
            problem=problem,
        )

    def _owner(self, s: Session, user_id: str) -> Owner:
        user = get_user(s, user_id)
        quota = None if user is None or user.is_admin else quota_of(user, self.quotas)
        return Owner(quota, usage_of(s, user_id))

    def _record(self, before: tuple[TaskRecord, ...], changes: list[TaskChange]) -> None:
        seen = {t.task_id: t for t in before}
        now = self.clock()
        with self.db.write() as s:
            for change in changes:
                task = store.get_task(s, change.task_id)
                if task is None:
                    continue
                if task.state != seen[change.task_id].state.value:
                    # The owner cancelled it meanwhile (a QUEUED task is cancelled at
                    # once); a job submitted for it in this tick is stopped.
                    if change.trigger is TaskTrigger.SUBMITTED:
                        self._stop_quietly(task.ray_job_id)
                    continue
                try:
                    task_transition(
                        s,
                        task,
                        change.trigger,
                        now,
                        error_summary=change.error_summary,
                        payload=change.payload,
                    )
                except InvalidTaskTransition as e:  # a plan bug must not stop the loop
                    log.error("skipped %s for task %s: %s", change.trigger, task.task_id, e)

    def _stop_quietly(self, job_id: str) -> None:
        try:
            self.client.stop(job_id)
        except Exception as e:
            log.warning("stopping Ray job %s failed: %s", job_id, e)
