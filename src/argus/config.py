"""One settings object, validated at start-up: YAML file, then environment overrides.

`load_settings()` is the factory; nothing reads the environment at import time.
A bad value raises `ConfigError` naming the key, where it came from and what is wrong.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from argus.cluster.serve_app import EngineMode
from argus.quotas import Quota

# Environment variable -> dotted settings key. The README's configuration table
# is checked against this mapping by a test.
ENV_OVERRIDES: dict[str, str] = {
    "ARGUS_DATA_DIR": "data_dir",
    "ARGUS_HOST": "server.host",
    "ARGUS_PORT": "server.port",
    "ARGUS_PUBLIC_HOST": "server.public_host",
    "ARGUS_METRICS_PUBLIC": "server.metrics_public",
    "ARGUS_DATABASE_URL": "database.url",
    "ARGUS_STORAGE_ROOT": "storage.root",
    "ARGUS_RAY_ADDRESS": "ray.address",
    "ARGUS_RAY_NUM_CPUS": "ray.num_cpus",
    "ARGUS_RAY_DASHBOARD_URL": "ray.dashboard_url",
    "ARGUS_RAY_PORT_BASE": "ray.port_base",
    "ARGUS_RAY_AGENT_URL": "ray.agent_url",
    "ARGUS_RAY_TEMP_DIR": "ray.temp_dir",
    "ARGUS_ENGINE": "serving.engine",
    "ARGUS_ACCELERATOR_TYPE": "serving.llm.accelerator_type",
    "ARGUS_CPU_HOLDS_GPUS": "serving.llm.cpu_holds_gpus",
    "ARGUS_SERVE_HOST": "serving.serve.http_host",
    "ARGUS_SERVE_PORT": "serving.serve.http_port",
    "ARGUS_RECONCILE_INTERVAL_S": "serving.reconcile_interval_s",
    "ARGUS_MAX_GPUS": "quotas.max_gpus",
    "ARGUS_MAX_MODELS": "quotas.max_models",
    "ARGUS_MAX_REPLICAS": "quotas.max_replicas",
    "ARGUS_REQUESTS_PER_MINUTE": "quotas.requests_per_minute",
    "ARGUS_TOKENS_PER_MINUTE": "quotas.tokens_per_minute",
}
CONFIG_ENV = "ARGUS_CONFIG"
ADMIN_TOKEN_ENV = "ARGUS_ADMIN_TOKEN"


class ConfigError(Exception):
    """A setting is missing or wrong; the message names the key and what to fix."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSettings(_Section):
    host: str = Field("127.0.0.1", description="Address the API and UI listen on.")
    port: int = Field(8080, ge=1, le=65535, description="Port of the API and UI.")
    public_host: str = Field(
        "127.0.0.1", description="Host name users reach argus and Serve by (used in URLs shown)."
    )
    metrics_public: bool = Field(
        False, description="Serve /metrics without a token (a scraper on a trusted network)."
    )


class DatabaseSettings(_Section):
    url: str | None = Field(
        None, description="SQLAlchemy URL; default sqlite:///<data_dir>/argus.db."
    )
    busy_timeout_ms: int = Field(5000, ge=0, description="SQLite busy timeout.")


class StorageSettings(_Section):
    root: Path | None = Field(
        None, description="Storage root (hf/, datasets/, users/); default <data_dir>/storage."
    )


HEAD_WORKER_PORTS = 200
HEAD_PORT_SPAN = 16 + HEAD_WORKER_PORTS  # the head's own ports, then its workers'


class RaySettings(_Section):
    address: str | None = Field(
        None, description="Cluster to connect to; null starts a local head unless one runs."
    )
    num_cpus: int = Field(16, ge=1, description="Logical CPUs of a local head (design D6).")
    dashboard_host: str = Field("127.0.0.1", description="Dashboard bind address of a local head.")
    dashboard_url: str | None = Field(
        None,
        description="Ray's job submission API (the dashboard); default http://127.0.0.1:8265.",
    )
    port_base: int | None = Field(
        None,
        ge=1024,
        le=65535 - HEAD_PORT_SPAN,
        description=(
            "A local head's ports: GCS at port_base, dashboard at +1, then the head's other "
            f"services and {HEAD_WORKER_PORTS} worker ports; null: Ray's defaults "
            "(GCS 6379, dashboard 8265). Two argus on one machine need two bases."
        ),
    )
    temp_dir: Path | None = Field(
        None,
        description=(
            "A local head's temp dir (sockets, logs; its processes' temp files in tmp/, "
            "torch's compiled kernels kept in the machine's cache); null: Ray's /tmp/ray."
        ),
    )
    agent_url: str | None = Field(
        None,
        pattern=r"^tcp:[A-Za-z0-9._-]+:[0-9]{1,5}$",
        description=(
            "A Ray agent that runs beside the head (tcp:<host>:<port>, its token in "
            "ARGUS_AGENT_TOKEN): argus then is no Ray node and starts no agent itself "
            "(docs/deploy.md). null: argus runs its own agent."
        ),
    )

    @property
    def head_port(self) -> int:
        return self.port_base if self.port_base is not None else 6379

    @property
    def dashboard_port(self) -> int:
        return self.port_base + 1 if self.port_base is not None else 8265

    @property
    def jobs_url(self) -> str:
        return self.dashboard_url or f"http://127.0.0.1:{self.dashboard_port}"


ORIGIN_PATTERN = r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$"


class ServeSettings(_Section):
    http_host: str = Field("127.0.0.1", description="Ray Serve HTTP proxy host.")
    http_port: int = Field(8000, ge=1, le=65535, description="Ray Serve HTTP (OpenAI) port.")
    proxy_location: Literal["HeadOnly", "EveryNode", "Disabled"] = "HeadOnly"
    cors_origins: list[Annotated[str, StringConstraints(pattern=ORIGIN_PATTERN)]] = Field(
        default_factory=list,
        max_length=64,
        description=(
            "Web origins (scheme://host[:port]) whose pages may call the OpenAI endpoint "
            "from a browser; empty: none."
        ),
    )


class LLMSettings(_Section):
    accelerator_type: str | None = Field(
        None, description="Ray accelerator type for GPU replicas (e.g. H20); unused on CPU."
    )
    cpu_kvcache_space_gib: int = Field(
        1, ge=1, description="VLLM_CPU_KVCACHE_SPACE for each CPU engine."
    )
    cpu_holds_gpus: bool = Field(
        False,
        description=(
            "CPU engine on nodes that declare logical GPUs (`ray start --num-gpus=N`): each "
            "replica's bundles hold gpus_per_replica logical GPUs (and the accelerator type, "
            "if set) as in gpu mode; for placement testing without GPUs. Ignored in gpu mode."
        ),
    )
    allowed_media_domains: list[str] = Field(
        default_factory=list,
        description=(
            "Hosts a chat request may make an engine fetch images or audio from; empty: "
            "none (data: URLs only)."
        ),
    )


class ServingSettings(_Section):
    engine: EngineMode = EngineMode.CPU
    app_name: str = Field("argus-llm", pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_-]*$")
    max_replicas: int = Field(16, ge=1, description="Largest num_replicas a spec may ask for.")
    reconcile_interval_s: float = Field(2.0, gt=0, description="Reconciler tick.")
    serve: ServeSettings = ServeSettings()
    llm: LLMSettings = LLMSettings()


class TrainingSettings(_Section):
    python: str | None = Field(
        None,
        description="Python that runs a task on the Ray nodes; default the one argus runs with.",
    )
    max_active_per_user: int = Field(
        8, ge=1, description="Tasks a user may have QUEUED, SUBMITTED or RUNNING at once."
    )


class QuotaSettings(_Section):
    """What one user may hold at once, unless the admin sets it for them."""

    max_gpus: int = Field(
        8,
        ge=0,
        description=(
            "GPUs a user's models and running tasks hold at once (on the CPU engine a "
            "replica counts its gpus_per_replica, as on GPUs)."
        ),
    )
    max_models: int = Field(8, ge=0, description="Live models a user may have.")
    max_replicas: int = Field(4, ge=1, description="Replicas one model of a user may have.")
    requests_per_minute: int | None = Field(
        None,
        ge=1,
        description="Calls a user may make to the OpenAI endpoint a minute; none: no limit.",
    )
    tokens_per_minute: int | None = Field(
        None,
        ge=1,
        description="Tokens (prompt and completion) a user may spend a minute; none: no limit.",
    )

    def as_quota(self) -> Quota:
        return Quota(
            self.max_gpus,
            self.max_models,
            self.max_replicas,
            self.requests_per_minute,
            self.tokens_per_minute,
        )


class Settings(_Section):
    data_dir: Path = Field(Path("~/.argus"), description="Where argus keeps its state.")
    server: ServerSettings = ServerSettings()
    database: DatabaseSettings = DatabaseSettings()
    storage: StorageSettings = StorageSettings()
    ray: RaySettings = RaySettings()
    serving: ServingSettings = ServingSettings()
    training: TrainingSettings = TrainingSettings()
    quotas: QuotaSettings = QuotaSettings()
    admin_token: str | None = Field(
        None, description=f"Admin token; from {ADMIN_TOKEN_ENV} only, never from a file."
    )

    @model_validator(mode="after")
    def _check_gpu_needs_accelerator(self) -> Settings:
        if self.serving.engine is EngineMode.GPU and not self.serving.llm.accelerator_type:
            raise ValueError(
                "serving.llm.accelerator_type must be set when serving.engine is 'gpu'"
            )
        return self

    @property
    def data_path(self) -> Path:
        return self.data_dir.expanduser().absolute()

    @property
    def database_url(self) -> str:
        return self.database.url or f"sqlite:///{self.data_path / 'argus.db'}"

    @property
    def storage_root(self) -> Path:
        root = self.storage.root if self.storage.root is not None else self.data_path / "storage"
        return root.expanduser().absolute()

    @property
    def admin_token_file(self) -> Path:
        return self.data_path / "admin-token"

    @property
    def ray_token_file(self) -> Path:
        """Ray's own auth token (RAY_AUTH_TOKEN_PATH) for the head argus starts."""
        return self.data_path / "ray-token"

    @property
    def api_url(self) -> str:
        return f"http://{self.server.public_host}:{self.server.port}"

    @property
    def openai_base_url(self) -> str:
        return f"http://{self.server.public_host}:{self.serving.serve.http_port}/v1"


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = tree
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[leaf] = value


def _describe_errors(err: ValidationError, sources: Mapping[str, str]) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        where = sources.get(key, "")
        origin = f" (from {where})" if where else ""
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown setting; remove it or check its spelling"
        lines.append(f"  {key}{origin}: {msg}")
    return "invalid configuration:\n" + "\n".join(lines)


def load_settings(
    path: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Build the settings: defaults, then the YAML file, then ARGUS_* variables."""
    env = os.environ if environ is None else environ
    config_path = path if path is not None else env.get(CONFIG_ENV)
    tree: dict[str, Any] = {}
    sources: dict[str, str] = {}
    if config_path:
        file = Path(config_path)
        if not file.is_file():
            raise ConfigError(f"{CONFIG_ENV}: config file {file} does not exist")
        try:
            loaded = yaml.safe_load(file.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise ConfigError(f"{file}: not valid YAML: {e}") from e
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{file}: the top level must be a mapping of settings")
        tree = loaded or {}
        if "admin_token" in tree:
            raise ConfigError(
                f"{file}: admin_token must not be kept in a config file; set {ADMIN_TOKEN_ENV}"
            )
    for var, key in ENV_OVERRIDES.items():
        if var in env:
            value: Any = env[var]
            if key == "ray.address" and value in ("", "null"):
                value = None
            _set_dotted(tree, key, value)
            sources[key] = var
    if env.get(ADMIN_TOKEN_ENV):
        tree["admin_token"] = env[ADMIN_TOKEN_ENV]
        sources["admin_token"] = ADMIN_TOKEN_ENV
    try:
        return Settings.model_validate(tree)
    except ValidationError as e:
        raise ConfigError(_describe_errors(e, sources)) from None
