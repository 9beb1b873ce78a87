"""Per-user quotas: what one user may hold at once, and the refusals that name the figures.

Pure: the numbers come in (the user's limits, what they hold, what they ask), a reason
comes out, or None. Models count their replicas x GPUs per replica from the moment they
are accepted (QUEUED) until they are deleted; tasks count their GPUs while their Ray job
exists (SUBMITTED, RUNNING). On the CPU engine a replica counts its gpus_per_replica, as
on a GPU cluster. The admin has no quota.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Quota:
    max_gpus: int
    max_models: int
    max_replicas: int
    # The OpenAI endpoint's rate limits (`argus.cluster.limits`); None: no limit.
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None


@dataclass(frozen=True)
class Usage:
    models: int  # live models that hold or will hold GPUs
    model_gpus: int
    task_gpus: int  # GPUs of the user's tasks whose Ray job exists

    @property
    def gpus(self) -> int:
        return self.model_gpus + self.task_gpus


def model_refusal(
    user_id: str, quota: Quota, usage: Usage, *, new: bool, replicas: int, gpus: int
) -> str | None:
    """Why a model of `replicas` replicas holding `gpus` GPUs may not be accepted, or None.

    `usage` leaves out the model being changed (an update replaces what it held).
    """
    if replicas > quota.max_replicas:
        return (
            f"{user_id} may run at most {quota.max_replicas} replicas of one model; "
            f"this asks {replicas}"
        )
    if new and usage.models + 1 > quota.max_models:
        return (
            f"{user_id} has {usage.models} of {quota.max_models} models; delete one before "
            "adding another"
        )
    if usage.gpus + gpus > quota.max_gpus:
        return (
            f"{user_id} holds {usage.gpus} of {quota.max_gpus} GPUs; this asks {gpus}"
            + _gpu_hint(usage)
        )
    return None


def task_refusal(user_id: str, quota: Quota, usage: Usage, gpus: int) -> str | None:
    """Why a task asking `gpus` GPUs must wait, or None."""
    if gpus and usage.gpus + gpus > quota.max_gpus:
        return (
            f"{user_id} holds {usage.gpus} of {quota.max_gpus} GPUs; this task asks {gpus}"
            + _gpu_hint(usage)
            + "; it starts when enough are free"
        )
    return None


def can_never_fit(quota: Quota, gpus: int) -> bool:
    """A task that asks more GPUs than its owner may ever hold."""
    return gpus > quota.max_gpus


def _gpu_hint(usage: Usage) -> str:
    return f" (models {usage.model_gpus}, tasks {usage.task_gpus})"
