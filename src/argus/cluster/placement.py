"""The fit rule, once: can a demand be placed on what a cluster has free, node by node.

The serving plan, the task schedule and the fake cluster all place with `fits`, so a
model or task argus approves is one Ray would place, and the fakes place as Ray does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from argus.cluster.serve_client import NodeResources

Free = dict[str, dict[str, float]]  # node id -> resource -> amount available
_EPS = 1e-9


def node_fits(demand: Mapping[str, float], avail: Mapping[str, float]) -> bool:
    return all(avail.get(k, 0.0) + _EPS >= v for k, v in demand.items())


def take(demand: Mapping[str, float], avail: dict[str, float]) -> None:
    for k, v in demand.items():
        avail[k] = avail.get(k, 0.0) - v


def gpu_demand(gpus: int, accelerator_type: str | None) -> dict[str, float]:
    """`gpus` GPUs of the cluster's type: Ray adds 0.001 of its `accelerator_type:<type>`
    node label to a bundle that names a type, so a node of another type does not fit."""
    demand = {"GPU": float(gpus)}
    if accelerator_type:
        demand[f"accelerator_type:{accelerator_type}"] = 0.001
    return demand


def fits(demand: Mapping[str, float], replicas: int, free: Free) -> bool:
    """Place `replicas` copies of `demand` first-fit, each on one node.

    On success the placement is taken out of `free`; on failure `free` is left as it was.
    """
    trial = {node: dict(avail) for node, avail in free.items()}
    for _ in range(replicas):
        for avail in trial.values():
            if node_fits(demand, avail):
                take(demand, avail)
                break
        else:
            return False
    free.update(trial)
    return True


def free_resources(nodes: Sequence[NodeResources]) -> Free:
    return {n.node_id: dict(n.available) for n in nodes if n.alive}
