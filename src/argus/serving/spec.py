"""The serving spec: what a user may ask for, and the typed resolved spec argus keeps.

`ServingSpec` is the spec as written (model_source not yet resolved), parsed strictly:
a safe YAML loader that refuses duplicate keys and aliases, unknown fields refused by
name, integers that are integers. The engine options a tenant may set form an
allowlist; the options that name a path or run code are refused with the reason.

`ResolvedServingSpec` is the one source of truth from the POST to the LLMConfig: what
the store keeps (`stored()`) and reads back (`from_stored()`, which checks every rule
again, the allowlist included, so a spec written into the database by a restore or by
hand cannot turn anything on that a POST could not).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from argus.cluster.serve_app import EngineMode
from argus.ids import InvalidId, validate_model_id_suffix, validate_user_id
from argus.text import shown
from argus.yamlspec import FieldError, SpecInvalid, field_name, pydantic_errors

ALLOWED_GPUS_PER_REPLICA = (1, 2, 4, 8)


QuantizationMethod = Literal[
    "awq", "awq_marlin", "gptq", "gptq_marlin", "fp8", "compressed-tensors", "bitsandbytes"
]


class EngineKwargs(BaseModel):
    """vLLM engine options a tenant may set. Everything else is refused by name."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)

    max_model_len: int | None = Field(None, ge=16, le=1_048_576, description="Context length.")
    gpu_memory_utilization: float | None = Field(
        None, gt=0, le=0.98, description="Fraction of each GPU's memory vLLM may take."
    )
    max_num_seqs: int | None = Field(None, ge=1, le=4096, description="Sequences per batch.")
    max_num_batched_tokens: int | None = Field(
        None, ge=16, le=1_048_576, description="Tokens per scheduler step."
    )
    dtype: Literal["auto", "float16", "bfloat16", "float32"] | None = Field(
        None, description="Weight and activation dtype."
    )
    quantization: QuantizationMethod | None = Field(
        None, description="Quantization method of the checkpoint."
    )
    kv_cache_dtype: Literal["auto", "fp8", "fp8_e4m3", "fp8_e5m2"] | None = None
    enable_prefix_caching: bool | None = None
    enable_chunked_prefill: bool | None = None
    enforce_eager: bool | None = Field(None, description="Skip CUDA graph capture.")
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    block_size: Literal[8, 16, 32, 64, 128] | None = None
    max_logprobs: int | None = Field(None, ge=0, le=100)

    def given(self) -> dict[str, Any]:
        """The options the spec sets (unset ones are vLLM's defaults)."""
        return self.model_dump(exclude_none=True)


ALLOWED_ENGINE_KWARGS: tuple[str, ...] = tuple(EngineKwargs.model_fields)

# Refused with a reason: each names a path, runs code, or is argus's to set.
DENIED_ENGINE_KWARGS: dict[str, str] = {
    "trust_remote_code": "it runs Python code shipped with the model",
    "tokenizer": "it names a path or hub id; the tokenizer is read from model_source",
    "tokenizer_mode": "argus uses the tokenizer that model_source ships",
    "download_dir": "it names a path; weights load from model_source only",
    "chat_template": "it names a file or runs a template outside the model folder",
    "hf_overrides": "it rewrites the model's config, which can load remote code",
    "speculative_config": "it names another model by path or hub id",
    "speculative_model": "it names another model by path or hub id",
    "enable_lora": "LoRA adapters are paths; they are not supported yet",
    "lora_modules": "LoRA adapters are paths; they are not supported yet",
    "max_loras": "LoRA adapters are not supported yet",
    "model": "argus sets it from model_source",
    "served_model_name": "argus sets it to the public model id",
    "revision": "weights load from the local model_source only",
    "code_revision": "weights load from the local model_source only",
    "tokenizer_revision": "weights load from the local model_source only",
    "load_format": "argus loads safetensors only",
    "tensor_parallel_size": "argus sets it from gpus_per_replica",
    "pipeline_parallel_size": "argus sets parallelism from gpus_per_replica",
    "distributed_executor_backend": "argus runs every engine on Ray",
    "device": "argus picks the device from the cluster's engine mode",
    "worker_cls": "it loads arbitrary Python code",
    "worker_extension_cls": "it loads arbitrary Python code",
    "logits_processors": "it loads arbitrary Python code",
    "allowed_local_media_path": "it opens the node's file system to requests",
    "allowed_media_domains": "argus sets which hosts a request may make the engine fetch",
}


MAX_SHARED_USERS = 64


class SharedWith(BaseModel):
    """`access: {users: [bob, carol]}`: these users may call the model, as its owner may."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    users: list[str] = Field(max_length=MAX_SHARED_USERS, description="User ids.")


# Who may call the model on the OpenAI endpoint besides its owner (and the admin).
Access = Literal["private", "all-users"] | SharedWith


ACCESS_RULE = "use private, all-users, or {users: [bob, carol]}"


def access_of(raw: Any) -> Access:
    """An `access` value as written (a spec's, a PATCH body's), checked; ValueError says why."""
    if raw in ("private", "all-users"):
        return raw  # type: ignore[no-any-return]
    if isinstance(raw, str):
        raise ValueError(f"{shown(raw)} is not an access: {ACCESS_RULE}")
    if not isinstance(raw, dict):
        raise ValueError(f"{ACCESS_RULE} (got {type(raw).__name__})")
    if set(raw) != {"users"}:
        raise ValueError(f"a mapping here takes exactly one field, users: {ACCESS_RULE}")
    users = raw["users"]
    if not isinstance(users, list) or not all(isinstance(u, str) for u in users):
        raise ValueError("users must be a list of user ids")
    if len(users) > MAX_SHARED_USERS:
        raise ValueError(f"share with at most {MAX_SHARED_USERS} users (or use all-users)")
    try:
        return SharedWith(users=sorted({validate_user_id(u) for u in users}))
    except InvalidId as e:
        raise ValueError(str(e)) from None


def stored_access(access: Access) -> str | dict[str, Any]:
    return access.model_dump() if isinstance(access, SharedWith) else access


class Autoscaling(BaseModel):
    """`autoscaling:` instead of `num_replicas`: Ray Serve adds replicas under load, up to
    `max_replicas`, and takes them away once idle for `idle_seconds`, down to
    `min_replicas` (0: the model gives back all it holds, and its next request starts it)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    min_replicas: int = Field(1, ge=0, description="Replicas kept while idle; 0 scales to zero.")
    max_replicas: int = Field(ge=1, description="Most replicas under load.")
    target_ongoing_requests: int = Field(
        8, ge=1, le=4096, description="Requests in flight per replica that it scales to."
    )
    idle_seconds: int = Field(
        600, ge=5, le=7 * 86400, description="Idle time before a replica is given back."
    )

    @model_validator(mode="after")
    def _range(self) -> Autoscaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"min_replicas ({self.min_replicas}) is more than max_replicas "
                f"({self.max_replicas})"
            )
        return self


class _SpecFields(BaseModel):
    """The fields a written and a resolved spec share, with the same rules."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    model_id: str = Field(description="Suffix of the public id <user>-<YYYYMMDDHHMM>-<model_id>.")
    model_source: str = Field(description="Folder with config.json and safetensors weights.")
    num_replicas: int = Field(1, ge=1, description="Engine replicas (or `autoscaling`).")
    gpus_per_replica: int = Field(1, ge=1, description="GPUs per replica (tensor parallel size).")
    engine_kwargs: EngineKwargs = Field(default_factory=EngineKwargs)
    access: Access = Field(
        "private",
        description="Who else may call it: private (the default), all-users, or {users: [...]}.",
    )
    autoscaling: Autoscaling | None = Field(
        None, description="A replica range that follows load, instead of num_replicas."
    )

    @model_validator(mode="after")
    def _one_replica_rule(self) -> _SpecFields:
        if self.autoscaling is not None and "num_replicas" in self.model_fields_set:
            raise ValueError("give num_replicas (a fixed count) or autoscaling (a range), not both")
        return self

    @property
    def min_replicas(self) -> int:
        """Replicas the model keeps however idle (what must fit when it is placed)."""
        return self.autoscaling.min_replicas if self.autoscaling else self.num_replicas

    @property
    def max_replicas(self) -> int:
        """Replicas the model may hold at most (what quotas count)."""
        return self.autoscaling.max_replicas if self.autoscaling else self.num_replicas

    @field_validator("access", mode="before")
    @classmethod
    def _access_rule(cls, v: Any) -> Access:
        return v if isinstance(v, SharedWith) else access_of(v)

    @field_validator("model_id")
    @classmethod
    def _suffix_rule(cls, v: str) -> str:
        try:
            return validate_model_id_suffix(v)
        except InvalidId as e:
            raise ValueError(str(e)) from None


class ServingSpec(_SpecFields):
    """A model to serve, as the user wrote it (model_source not yet resolved)."""


class ResolvedServingSpec(_SpecFields):
    """What argus stores and deploys: model_source is the real folder it resolved to."""

    @property
    def gpus(self) -> int:
        """GPUs the model may hold at most (what quotas count): an autoscaled model's
        ceiling, since it takes replicas up to max_replicas without asking anyone."""
        return self.max_replicas * self.gpus_per_replica

    def stored(self) -> dict[str, Any]:
        """The JSON the store keeps."""
        replicas: dict[str, Any] = (
            {"autoscaling": self.autoscaling.model_dump()}
            if self.autoscaling
            else {"num_replicas": self.num_replicas}
        )
        return {
            "model_id": self.model_id,
            "model_source": self.model_source,
            **replicas,
            "gpus_per_replica": self.gpus_per_replica,
            "engine_kwargs": self.engine_kwargs.given(),
            "access": stored_access(self.access),
        }

    @classmethod
    def from_stored(cls, data: Any) -> ResolvedServingSpec:
        """Read back a stored spec, checking every rule again; SpecInvalid if one breaks."""
        if not isinstance(data, dict):
            raise SpecInvalid([FieldError("(top level)", "the stored spec is not a mapping")])
        errors = engine_kwargs_errors(data.get("engine_kwargs"))
        if errors:
            raise SpecInvalid(errors)
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            raise SpecInvalid(pydantic_errors(e, cls)) from None

    def with_replicas(self, num_replicas: int) -> ResolvedServingSpec:
        """A fixed replica count (an autoscaled model stops scaling)."""
        return self.model_copy(update={"num_replicas": num_replicas, "autoscaling": None})

    def with_autoscaling(self, autoscaling: Autoscaling) -> ResolvedServingSpec:
        return self.model_copy(update={"num_replicas": 1, "autoscaling": autoscaling})

    def with_access(self, access: Access) -> ResolvedServingSpec:
        return self.model_copy(update={"access": access})


@dataclass(frozen=True)
class SpecLimits:
    engine: EngineMode
    max_replicas: int
    cpu_holds_gpus: bool = False  # CPU engine on logical GPUs: gpus_per_replica as on GPUs


def engine_kwargs_errors(raw: Any) -> list[FieldError]:
    """Options that are refused (with the reason) or unknown (with the allowed list)."""
    if not isinstance(raw, dict):
        return []  # pydantic reports the type
    errors = []
    for key in raw:
        where = field_name(("engine_kwargs", key))
        if key in DENIED_ENGINE_KWARGS:
            errors.append(FieldError(where, f"not allowed: {DENIED_ENGINE_KWARGS[key]}"))
        elif key not in ALLOWED_ENGINE_KWARGS:
            errors.append(
                FieldError(
                    where, "unknown engine option; allowed: " + ", ".join(ALLOWED_ENGINE_KWARGS)
                )
            )
    return errors


def limit_errors(spec: _SpecFields, limits: SpecLimits) -> list[FieldError]:
    """The rules of this cluster: replica cap, GPUs per replica, the CPU engine's dtype.

    A posted spec and a PATCH of its replica count both go through here.
    """
    errors = []
    if spec.max_replicas > limits.max_replicas:
        errors.append(
            FieldError(
                "autoscaling.max_replicas" if spec.autoscaling else "num_replicas",
                f"{spec.max_replicas} is more than this cluster allows ({limits.max_replicas})",
            )
        )
    if limits.engine is EngineMode.CPU:
        if spec.gpus_per_replica != 1 and not limits.cpu_holds_gpus:
            errors.append(
                FieldError(
                    "gpus_per_replica",
                    "this cluster has no GPUs (it runs the CPU engine): use 1, which means "
                    "one CPU engine per replica",
                )
            )
        if spec.engine_kwargs.dtype not in (None, "auto", "float32"):
            errors.append(
                FieldError(
                    "engine_kwargs.dtype",
                    "the CPU engine runs in float32 (bfloat16 gives wrong answers there); "
                    "remove dtype or set float32",
                )
            )
    if spec.gpus_per_replica not in ALLOWED_GPUS_PER_REPLICA and (
        limits.engine is EngineMode.GPU or limits.cpu_holds_gpus
    ):
        errors.append(
            FieldError(
                "gpus_per_replica",
                f"must be one of {', '.join(map(str, ALLOWED_GPUS_PER_REPLICA))} "
                "(it becomes the tensor parallel size)",
            )
        )
    return errors


def validate_spec(data: dict[str, Any], limits: SpecLimits) -> ServingSpec:
    """Check every field; SpecInvalid lists each broken rule with its field."""
    errors = engine_kwargs_errors(data.get("engine_kwargs"))
    if errors:
        raise SpecInvalid(errors)
    try:
        spec = ServingSpec.model_validate(data)
    except ValidationError as e:
        raise SpecInvalid(pydantic_errors(e, ServingSpec)) from None
    errors = limit_errors(spec, limits)
    if errors:
        raise SpecInvalid(errors)
    return spec
