"""The JobClient protocol: what argus asks of Ray's job submission API, and what it gets back.

Only the task scheduler calls it. The real one is `RayJobClient`; `FakeJobClient`
is the steppable stand-in for tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol


class JobStatus(StrEnum):
    """Ray's JobStatus values."""

    PENDING = "PENDING"  # the driver waits for its resources (or to start)
    RUNNING = "RUNNING"
    STOPPED = "STOPPED"  # stopped through the API
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"

    @property
    def is_terminal(self) -> bool:
        return self in (JobStatus.STOPPED, JobStatus.SUCCEEDED, JobStatus.FAILED)


@dataclass(frozen=True)
class JobSubmission:
    """One Ray job: its fixed id, the command its driver runs, and what the driver holds."""

    job_id: str
    entrypoint: str
    env_vars: dict[str, str]
    num_cpus: float
    num_gpus: float
    resources: dict[str, float] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class JobInfo:
    job_id: str
    status: JobStatus
    message: str = ""
    exit_code: int | None = None
    start_time_ms: int | None = None
    end_time_ms: int | None = None


class JobClient(Protocol):
    def submit(self, job: JobSubmission) -> None:
        """Submit the job; returns once Ray has recorded it (its driver may wait)."""

    def jobs(self, prefix: str) -> dict[str, JobInfo]:
        """Every job whose id starts with `prefix`, by id."""

    def stop(self, job_id: str) -> None:
        """Ask Ray to stop the job (SIGTERM to its driver, then SIGKILL)."""
