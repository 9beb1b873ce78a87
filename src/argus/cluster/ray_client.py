"""The real ServeClient: argus's Serve app, built and observed through Ray's own API.

`apply` builds one Ray Serve LLM app with `build_openai_app` and deploys it with
`serve._run(..., _blocking=False)`, which returns in well under a second; the
reconciler observes the outcome on later ticks.

Stable versions. `serve.run` gives every deployment a random code version unless
the deployment carries one (`Deployment._version`, which `serve.run` reads before
it falls back to a random string), so every apply would restart every replica of
every model. argus pins each LLMServer's version to a hash of its LLMConfig without
the replica count, and the ingress's to the set of model ids: adding, scaling or
removing one model then leaves the others' replicas alone, and a scale changes
only the replica count, in place. `_version` is private: Ray is pinned, and
`tests/e2e` fails the day an upgrade changes it.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Sequence
from typing import Any

from argus.cluster import usage_sink
from argus.cluster.node_welcome import NodeWelcome
from argus.cluster.serve_app import (
    INGRESS_DEPLOYMENT,
    INGRESS_GRACEFUL_SHUTDOWN_S,
    INGRESS_VERSION,
    ROUTES,
    llm_server_version,
)
from argus.cluster.serve_client import (
    ApplyError,
    DeploymentStatus,
    ModelDeployment,
    NodeResources,
    ServeObservation,
    UsageBatch,
)

log = logging.getLogger(__name__)

# Ray Serve builds a deployment's config by registering its request router's module with
# cloudpickle, pickling the class and unregistering the module: process-wide state, no
# lock. Two threads doing it at once (the agent answers calls from a thread pool) fail
# one of them with "... is not registered for pickle by value", which Ray reports as an
# invalid deployment config: a valid spec got a 422. Every call in this process that
# builds Serve configs holds this lock (`observe` reads the controller's plain details and
# parses no config, so it never waits for it).
_SERVE_CONFIG_LOCK = threading.Lock()
_ROUTER_PICKLES: dict[str, bytes] = {}  # request router path -> its class, cloudpickled


def _pickle_each_router_once() -> None:
    """Ray Serve pickles the request router class again for every RequestRouterConfig it
    makes, by value: each of its functions, and each one's walk over `sys.modules` (some
    6000 modules once vLLM is imported). One apply of two models made nine such configs
    a deployment, and the router's pickling was about two thirds of the apply's CPU. The
    class at a path does not change while the process runs, so it is pickled once per
    path and its bytes reused. Called with `_SERVE_CONFIG_LOCK` held."""
    from ray.serve.config import RequestRouterConfig

    serialize = RequestRouterConfig._serialize_request_router_cls
    if getattr(serialize, "argus_once", False):
        return

    def once(config: RequestRouterConfig) -> None:
        router = config.request_router_class
        path = router if isinstance(router, str) else f"{router.__module__}.{router.__name__}"
        if not path or path not in _ROUTER_PICKLES:
            serialize(config)  # Ray's own: it imports the class and sets the path
            made, imported = config.get_serialized_request_router_cls(), config.request_router_class
            if made and isinstance(imported, str):
                _ROUTER_PICKLES[imported] = made
            return
        config.set_serialized_request_router_cls(_ROUTER_PICKLES[path])
        config.request_router_class = path

    once.argus_once = True  # type: ignore[attr-defined]
    RequestRouterConfig._serialize_request_router_cls = once  # type: ignore[method-assign,assignment]


# Every engine skips Ray Serve LLM's download step: argus's weights are local (the
# class says why; it is loaded in the replica, so it is named, not imported, here).
ENGINE_START_CALLBACK = {"callback_class": "argus.cluster.engine_start.LocalWeights"}


class RayServeClient:
    def __init__(
        self,
        address: str,
        http_host: str,
        http_port: int,
        proxy_location: str,
        namespace: str = "argus",
    ) -> None:
        self.address = address
        self.http_host = http_host
        self.http_port = http_port
        self.proxy_location = proxy_location
        self.namespace = namespace
        self.node_welcome = NodeWelcome()  # the GCS's view of a node that joins (its module)

    # -- connection -----------------------------------------------------------
    def connect(self) -> None:
        import ray

        if not ray.is_initialized():
            ray.init(
                address=self.address,
                namespace=self.namespace,
                logging_level=logging.WARNING,
                log_to_driver=False,
            )

    def ensure_serve(self) -> None:
        """Start Serve (detached) with argus's HTTP options; a no-op when it runs."""
        from ray import serve

        # Import Ray Serve LLM (and with it vLLM) now, at start-up, not inside the first
        # apply: on a small machine the import takes 10 s of CPU that the first model's
        # start would otherwise wait for. In a thread, once connected, beside Serve's
        # start (seconds of waiting on its actors): what needs no model (ping, observe)
        # answers at once, so an agent started again after a head's or argus's restart
        # is ready that much sooner; an apply or check that comes first waits on Python's
        # import lock until the import is done.
        self.connect()
        _import_serve_llm_soon()
        serve.start(
            http_options={"host": self.http_host, "port": self.http_port},
            proxy_location=self.proxy_location,
        )

    def ping(self) -> None:
        import ray

        if not ray.is_initialized():
            raise RuntimeError("argus is not connected to Ray")
        ray.cluster_resources()  # type: ignore[no-untyped-call]

    def disconnect(self) -> None:
        import ray

        if ray.is_initialized():
            ray.shutdown()

    # -- the app ------------------------------------------------------------------
    def apply(self, app_name: str, models: Sequence[ModelDeployment], gate: dict[str, Any]) -> None:
        from ray import serve

        with _SERVE_CONFIG_LOCK:
            _pickle_each_router_once()
            serve._run(build(models, gate), name=app_name, route_prefix="/", _blocking=False)

    def check(self, models: Sequence[ModelDeployment]) -> dict[str, str]:
        from ray.serve.llm import LLMConfig

        refused = {}
        with _SERVE_CONFIG_LOCK:
            _pickle_each_router_once()
            for m in models:
                try:
                    LLMConfig.model_validate(for_ray(m.llm_config))
                except Exception as e:  # pydantic's ValidationError, or Ray's own checks
                    refused[m.model_id] = validation_reason(e)
        return refused

    def drain_usage(self) -> UsageBatch | None:
        from ray import get

        actor = usage_sink.sink(create=False)
        got = None if actor is None else get(actor.drain.remote(), timeout=10)
        return None if got is None else UsageBatch(str(got["batch"]), tuple(got["rows"]))

    def ack_usage(self, batch: str) -> None:
        from ray import get

        actor = usage_sink.sink(create=False)
        if actor is not None:
            get(actor.ack.remote(batch), timeout=10)

    def delete_app(self, app_name: str) -> None:
        from ray import serve

        serve.delete(app_name, _blocking=False)

    def observe(self, app_name: str) -> ServeObservation:
        """Serve's state as its controller reports it, read from the controller's plain
        details. `serve.status()` parses the same details into Serve's pydantic models,
        which cloudpickles every deployment's request router: 113 ms of CPU a call with
        two deployments (about 55 ms more with each model), against 1 ms for the details,
        once a tick, for as long as argus runs."""
        from ray.serve.context import _get_global_client

        client = _get_global_client(raise_if_no_controller_running=False)
        details: dict[str, Any] = client.get_serve_details() if client is not None else {}
        proxies = {
            str(node): _value(p.get("status")) for node, p in (details.get("proxies") or {}).items()
        }
        nodes = _nodes()
        try:
            self.node_welcome.welcome(n.node_id for n in nodes if n.alive)
        except Exception as e:  # it helps Ray place replicas; observing must go on without
            log.warning("could not send the welcome task to new Ray nodes: %s", e)
        app = (details.get("applications") or {}).get(app_name)
        if app is None:
            return ServeObservation(None, nodes=nodes, proxies=proxies)
        deployments = {
            str(name): DeploymentStatus(
                status=_value(d.get("status")),
                message=d.get("message") or "",
                replica_states=dict(Counter(_value(r.get("state")) for r in d.get("replicas", []))),
            )
            for name, d in (app.get("deployments") or {}).items()
        }
        return ServeObservation(
            app_status=_value(app.get("status")),
            app_message=app.get("message") or "",
            deployments=deployments,
            nodes=nodes,
            proxies=proxies,
        )

    def cluster_resources(self) -> dict[str, Any]:
        import ray

        return dict(ray.cluster_resources())  # type: ignore[no-untyped-call]


_SERVE_LLM_IMPORT: list[threading.Thread] = []  # the one import thread, once started


def _import_serve_llm_soon() -> None:
    def run() -> None:
        try:
            import ray.serve.llm  # noqa: F401
        except Exception as e:  # the apply that needs it imports it again, and says why
            log.warning("could not import Ray Serve LLM: %s", e)

    with _SERVE_CONFIG_LOCK:
        if not _SERVE_LLM_IMPORT:
            _SERVE_LLM_IMPORT.append(threading.Thread(target=run, name="argus-import-llm"))
            _SERVE_LLM_IMPORT[0].daemon = True
            _SERVE_LLM_IMPORT[0].start()


def build(models: Sequence[ModelDeployment], gate: dict[str, Any]) -> Any:
    """The one app: Ray Serve LLM's, with argus's ingress (keys, access) and stable versions."""
    from ray.llm._internal.serve.core.configs.openai_api_models import to_model_metadata
    from ray.llm._internal.serve.core.ingress import builder
    from ray.serve.llm import LLMConfig, build_openai_app

    # Ray Serve LLM logs the ingress's options at INFO on every build, its user_config
    # too: argus's gate, with the hash of every key and who may call which model. They
    # stay out of the agent's log; what it logs at WARNING and above still shows.
    builder.logger.setLevel(logging.WARNING)

    from argus.cluster.ingress import ArgusIngress

    configs = []
    for m in models:
        try:
            configs.append(LLMConfig.model_validate(for_ray(m.llm_config)))
        except Exception as e:
            log.warning("Ray Serve LLM refused the config of %s: %s", m.model_id, e)
            raise ApplyError(f"invalid LLMConfig: {validation_reason(e)}", m.model_id) from e
    routes = {c.model_id: to_model_metadata(c.model_id, c).model_dump(mode="json") for c in configs}
    app = build_openai_app(
        {
            "llm_configs": configs,
            "ingress_cls_config": {"ingress_cls": ArgusIngress},
            "ingress_deployment_config": {
                # Ray names the deployment after the class; argus keeps Ray's name.
                "name": INGRESS_DEPLOYMENT,
                "graceful_shutdown_timeout_s": INGRESS_GRACEFUL_SHUTDOWN_S,
                "user_config": {**gate, ROUTES: routes},
            },
        }
    )
    pin_versions(app, {m.model_id: llm_server_version(m.llm_config) for m in models})
    return app


def for_ray(llm_config: dict[str, Any]) -> dict[str, Any]:
    """A model's LLMConfig as Ray gets it: with the engine start callback (not part of
    the config's hash: the version of a running replica does not change with it)."""
    return {**llm_config, "callback_config": ENGINE_START_CALLBACK}


def validation_reason(e: Exception) -> str:
    """What a pydantic error says is wrong, without its banner and links (a summary of
    the whole text kept the banner and lost the reason)."""
    errors = getattr(e, "errors", None)
    if not callable(errors):
        return str(e)
    try:
        parts = [
            f"{'.'.join(str(p) for p in err.get('loc', ())) or 'config'}: {err.get('msg')}"
            + _because(err)
            for err in errors()
        ]
    except Exception:
        return str(e)
    return "; ".join(parts) or str(e)


def _because(err: dict[str, Any]) -> str:
    """The reason under a validator's error: Ray's "Invalid deployment config: {...}"
    names the whole dict and keeps what is wrong with it in the exception's cause."""
    raised = (err.get("ctx") or {}).get("error")
    cause = getattr(raised, "__cause__", None)
    return f" ({validation_reason(cause)})" if isinstance(cause, Exception) else ""


def pin_versions(app: Any, versions: dict[str, str]) -> None:
    """Give the ingress and each LLMServer deployment of a built app a stable version."""
    ingress = app._bound_deployment
    llm_apps: dict[str, Any] = ingress.init_kwargs["llm_deployments"]
    if set(llm_apps) != set(versions):
        raise ApplyError(f"the built app routes to {sorted(llm_apps)}, expected {sorted(versions)}")
    for model_id, llm_app in llm_apps.items():
        llm_app._bound_deployment._version = versions[model_id]
    ingress._version = INGRESS_VERSION


def _value(member: Any) -> str:
    """A Serve status enum member's value (they are `str` enums), or the string itself."""
    return str(getattr(member, "value", member))


def _nodes() -> tuple[NodeResources, ...]:
    from ray._private import state

    total = state.total_resources_per_node()  # type: ignore[no-untyped-call]
    available = state.available_resources_per_node()  # type: ignore[no-untyped-call]
    return tuple(
        NodeResources(
            node_id=node_id,
            total={k: float(v) for k, v in res.items() if _is_schedulable(k)},
            available={
                k: float(v) for k, v in available.get(node_id, {}).items() if _is_schedulable(k)
            },
        )
        for node_id, res in sorted(total.items())
    )


def _is_schedulable(resource: str) -> bool:
    # Placement-group bookkeeping (CPU_group_..., bundle_group_...) and node markers
    # are not capacity; keep CPU, GPU, memory and accelerator types.
    return "_group_" not in resource and not resource.startswith(("node:", "bundle_group"))
