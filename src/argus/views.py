"""How stored rows look on the wire."""

from __future__ import annotations

from typing import Any

from argus.storage import checkpoint_source
from argus.store.schema import ServeEvent, ServeModel, Task, TaskEvent, Token, User


def user_view(user: User) -> dict[str, Any]:
    return {
        "user_id": user.user_id,
        "is_admin": user.is_admin,
        "disabled": user.disabled,
        "allow_commands": user.allow_commands or user.is_admin,
        "created_at": user.created_at.isoformat(),
    }


def token_view(token: Token) -> dict[str, Any]:
    return {
        "token_id": token.token_id,
        "user_id": token.user_id,
        "created_at": token.created_at.isoformat(),
        "revoked_at": token.revoked_at.isoformat() if token.revoked_at else None,
    }


def model_view(model: ServeModel, cluster: dict[str, object] | None = None) -> dict[str, Any]:
    """A model; `cluster` (from the status view) is set while the Ray cluster is unreachable,
    and says that the state shown is the last one seen."""
    spec = model.resolved_spec if isinstance(model.resolved_spec, dict) else {}
    autoscaling = spec.get("autoscaling")
    scaling = autoscaling if isinstance(autoscaling, dict) else {}
    low = scaling.get("min_replicas", spec.get("num_replicas"))
    high = scaling.get("max_replicas", spec.get("num_replicas"))
    return {
        "model_key": model.model_key,
        "model_id": model.model_id,
        "model_id_suffix": model.model_id_suffix,
        "user_id": model.user_id,
        "state": model.state,
        "error_summary": model.error_summary,
        "generation": model.generation,
        "observed_generation": model.observed_generation,
        "target_replicas": low,  # what it holds at least (an autoscaled model's minimum)
        "ready_replicas": model.ready_replicas,
        "replicas": {"current": model.ready_replicas, "min": low, "max": high},
        "autoscaling": autoscaling,
        # An autoscaled model idle at zero replicas: it holds nothing, and its next
        # request waits while a replica starts (or gets 503 while there is no room).
        "scaled_to_zero": bool(scaling) and model.state == "RUNNING" and not model.ready_replicas,
        "gpus_per_replica": spec.get("gpus_per_replica"),
        "gpus": model.gpus,
        "model_source": spec.get("model_source"),
        "access": spec.get("access", "private"),  # who else may call it on :8000
        "cluster_unreachable_since": cluster.get("unreachable_since") if cluster else None,
        "created_at": model.created_at.isoformat(),
        "updated_at": model.updated_at.isoformat(),
    }


def event_view(event: ServeEvent | TaskEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "time": event.time.isoformat(),
        "event_type": event.event_type,
        "payload": event.payload,
    }


def event_page(events: list[Any], total: int, limit: int) -> dict[str, Any]:
    """A page of events, newest first, and where the next page starts (`before`)."""
    return {
        "items": [event_view(e) for e in events],
        "total": total,
        "next_before": events[-1].id if len(events) == limit else None,
    }


def task_view(task: Task, checkpoint_ready: bool = False) -> dict[str, Any]:
    spec = task.resolved_spec if isinstance(task.resolved_spec, dict) else {}
    return {
        "task_id": task.task_id,
        "name": task.name,
        "user_id": task.user_id,
        "workload": task.workload,
        "state": task.state,
        "error_summary": task.error_summary,
        "ray_job_id": task.ray_job_id,
        "nnodes": spec.get("nnodes"),
        "gpus_per_node": spec.get("gpus_per_node"),
        "cpus_per_node": spec.get("cpus_per_node"),
        "gpus": task.gpus,
        "cancel_requested": task.cancel_requested_at is not None,
        "checkpoint": {
            "model_source": checkpoint_source(task.task_id),
            "ready": checkpoint_ready,
        },
        "created_at": task.created_at.isoformat(),
        "updated_at": task.updated_at.isoformat(),
        "started_at": task.started_at.isoformat() if task.started_at else None,
        "finished_at": task.finished_at.isoformat() if task.finished_at else None,
    }
