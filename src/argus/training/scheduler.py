"""The task scheduler: the part of each reconciler tick that runs training tasks.

`observe()` reads the active tasks and asks Ray's job API for their jobs; the
reconciler passes `claims()` of that view to the serving plan, then `step()` with
the resources the models left, so models and tasks draw on one count (design D5).
`step()` submits the tasks that fit, stops the ones being cancelled, and records
every state change with its event in one transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from argus.cluster.job_client import JobClient, JobInfo
from argus.store import tasks as store
from argus.store.db import Database
from argus.training.schedule import TaskChange, TaskPlan, TaskRecord, claims, schedule
from argus.training.states import InvalidTaskTransition, TaskState, TaskTrigger
from argus.training.submission import LaunchSettings, build_submission, task_demand, task_dir

log = logging.getLogger(__name__)

JOB_PREFIX = "argus-"
# A submission that keeps failing for this many ticks fails its task (with Ray's reason).
MAX_SUBMIT_ATTEMPTS = 3


@dataclass(frozen=True)
class TaskView:
    tasks: tuple[TaskRecord, ...]
    jobs: dict[str, JobInfo] | None  # None: Ray's job API did not answer
    error: str | None = None

    def claims(self) -> list[dict[str, float]]:
        return claims(self.tasks, self.jobs)


@dataclass
class TaskScheduler:
    db: Database
    client: JobClient
    launch: LaunchSettings
    clock: Callable[[], datetime]
    last_jobs: dict[str, JobInfo] = field(default_factory=dict)
    last_error: str | None = None
    errors: int = 0
    _submit_failures: dict[str, int] = field(default_factory=dict)

    def observe(self) -> TaskView:
        records = self._load()
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
        return TaskView(tuple(records), jobs)

    def step(self, view: TaskView, free: dict[str, dict[str, float]]) -> TaskPlan:
        decided = schedule(view.tasks, view.jobs, free)
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
            user_id, resolved = task.user_id, task.resolved_spec
        folder = task_dir(self.launch.storage_root, user_id, t.task_id)
        submission = build_submission(t.task_id, user_id, t.ray_job_id, resolved, self.launch)
        try:
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

    def _load(self) -> list[TaskRecord]:
        with self.db.read() as s:
            tasks = store.list_active_tasks(s)
            last = store.last_event_types(s, [t.task_id for t in tasks])
            return [
                TaskRecord(
                    task_id=t.task_id,
                    user_id=t.user_id,
                    state=TaskState(t.state),
                    ray_job_id=t.ray_job_id,
                    demand=task_demand(t.resolved_spec, self.launch),
                    cancel_requested=t.cancel_requested_at is not None,
                    pending_reported=last.get(t.task_id) == TaskTrigger.PENDING_RESOURCES.value,
                )
                for t in tasks
            ]

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
                    store.set_task_state(
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

    # -- what the API shows ---------------------------------------------------
    def job_status(self, job_id: str) -> dict[str, object] | None:
        job = self.last_jobs.get(job_id)
        if job is None:
            return None
        return {
            "job_id": job.job_id,
            "status": job.status.value,
            "message": job.message[-2000:],
            "exit_code": job.exit_code,
            "start_time_ms": job.start_time_ms,
            "end_time_ms": job.end_time_ms,
        }
