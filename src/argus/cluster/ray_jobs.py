"""The real JobClient: Ray's job submission API over HTTP (the dashboard's address).

The dashboard runs code for anyone who reaches it: on a real cluster it listens on
the private network only (docs/deploy.md); the embedded head binds it to loopback.
"""

from __future__ import annotations

import threading
from typing import Any

from argus.cluster.job_client import JobInfo, JobStatus, JobSubmission


class RayJobClient:
    def __init__(self, address: str) -> None:
        self.address = address
        self._client: Any = None
        self._lock = threading.Lock()

    def _jobs_api(self) -> Any:
        # Built on first use: the constructor calls the dashboard, which may start
        # after argus does.
        with self._lock:
            if self._client is None:
                from ray.job_submission import JobSubmissionClient

                self._client = JobSubmissionClient(self.address)
            return self._client

    def submit(self, job: JobSubmission) -> None:
        self._jobs_api().submit_job(
            entrypoint=job.entrypoint,
            submission_id=job.job_id,
            runtime_env={"env_vars": job.env_vars},
            entrypoint_num_cpus=job.num_cpus,
            entrypoint_num_gpus=job.num_gpus,
            entrypoint_resources=job.resources or None,
            metadata=job.metadata,
        )

    def jobs(self, prefix: str) -> dict[str, JobInfo]:
        found = {}
        for details in self._jobs_api().list_jobs():
            job_id = details.submission_id
            if not job_id or not job_id.startswith(prefix):
                continue
            found[job_id] = JobInfo(
                job_id=job_id,
                status=JobStatus(str(getattr(details.status, "value", details.status))),
                message=details.message or "",
                exit_code=details.driver_exit_code,
                start_time_ms=details.start_time,
                end_time_ms=details.end_time,
            )
        return found

    def stop(self, job_id: str) -> None:
        self._jobs_api().stop_job(job_id)
