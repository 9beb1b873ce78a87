from __future__ import annotations

from typing import Any

import pytest

from argus.cluster.serve_app import EngineMode
from argus.serving.spec import (
    ALLOWED_ENGINE_KWARGS,
    DENIED_ENGINE_KWARGS,
    SpecLimits,
    validate_spec,
)
from argus.yamlspec import SpecInvalid, SpecSyntaxError, load_yaml_mapping

pytestmark = pytest.mark.unit
CPU = SpecLimits(engine=EngineMode.CPU, max_replicas=16)
GPU = SpecLimits(engine=EngineMode.GPU, max_replicas=16)


def spec(**over: Any) -> dict[str, Any]:
    return {"model_id": "smol", "model_source": "$HOME/m", **over}


def fields(e: SpecInvalid) -> list[str]:
    return [f.field for f in e.errors]


def test_defaults() -> None:
    s = validate_spec(spec(), CPU)
    assert (s.num_replicas, s.gpus_per_replica) == (1, 1)
    assert s.engine_kwargs.model_dump(exclude_none=True) == {}


def test_the_issue_example_parses() -> None:
    text = """
model_id: smol              # the suffix
model_source: $HOME/common/hf/SmolLM2-135M-Instruct
num_replicas: 1
gpus_per_replica: 1
engine_kwargs:
  max_model_len: 2048
"""
    s = validate_spec(load_yaml_mapping(text), CPU)
    assert s.engine_kwargs.max_model_len == 2048


@pytest.mark.parametrize("value", [1.5, True, "2", None, [1]])
def test_integers_are_integers(value: object) -> None:
    with pytest.raises(SpecInvalid) as e:
        validate_spec(spec(num_replicas=value), GPU)
    assert fields(e.value) == ["num_replicas"]


@pytest.mark.parametrize("text", ["num_replicas: 1.5", "num_replicas: true", "num_replicas: '2'"])
def test_integers_from_yaml(text: str) -> None:
    data = load_yaml_mapping("model_id: a\nmodel_source: /x\n" + text)
    with pytest.raises(SpecInvalid, match="num_replicas: must be a whole number"):
        validate_spec(data, GPU)


def test_unknown_fields_are_refused_by_name() -> None:
    with pytest.raises(SpecInvalid) as e:
        validate_spec(spec(replicas=2), CPU)
    assert fields(e.value) == ["replicas"]
    assert "unknown field" in str(e.value)


@pytest.mark.parametrize(("n", "ok"), [(0, False), (1, True), (16, True), (17, False)])
def test_replica_bounds(n: int, ok: bool) -> None:
    if ok:
        assert validate_spec(spec(num_replicas=n), GPU).num_replicas == n
    else:
        with pytest.raises(SpecInvalid) as e:
            validate_spec(spec(num_replicas=n), GPU)
        assert fields(e.value) == ["num_replicas"]


@pytest.mark.parametrize(
    ("g", "ok"), [(1, True), (2, True), (3, False), (4, True), (8, True), (16, False)]
)
def test_gpus_per_replica_on_gpu(g: int, ok: bool) -> None:
    if ok:
        assert validate_spec(spec(gpus_per_replica=g), GPU).gpus_per_replica == g
    else:
        with pytest.raises(SpecInvalid, match="one of 1, 2, 4, 8"):
            validate_spec(spec(gpus_per_replica=g), GPU)


def test_cpu_mode_allows_only_one_and_says_why() -> None:
    with pytest.raises(SpecInvalid, match="this cluster has no GPUs"):
        validate_spec(spec(gpus_per_replica=2), CPU)


def test_cpu_engine_on_logical_gpus_takes_gpus_per_replica_as_gpu_mode() -> None:
    holds = SpecLimits(engine=EngineMode.CPU, max_replicas=16, cpu_holds_gpus=True)
    assert validate_spec(spec(gpus_per_replica=2), holds).gpus_per_replica == 2
    with pytest.raises(SpecInvalid, match="one of 1, 2, 4, 8"):
        validate_spec(spec(gpus_per_replica=3), holds)
    with pytest.raises(SpecInvalid, match="float32"):
        validate_spec(spec(engine_kwargs={"dtype": "bfloat16"}), holds)


def test_cpu_mode_refuses_half_precision() -> None:
    with pytest.raises(SpecInvalid, match="float32"):
        validate_spec(spec(engine_kwargs={"dtype": "bfloat16"}), CPU)
    assert validate_spec(spec(engine_kwargs={"dtype": "bfloat16"}), GPU).engine_kwargs.dtype


@pytest.mark.parametrize("name", sorted(DENIED_ENGINE_KWARGS))
def test_dangerous_engine_options_are_refused_with_a_reason(name: str) -> None:
    with pytest.raises(SpecInvalid) as e:
        validate_spec(spec(engine_kwargs={name: "x"}), GPU)
    assert fields(e.value) == [f"engine_kwargs.{name}"]
    assert "not allowed" in str(e.value)


def test_the_must_refuse_list_from_the_issue_is_covered() -> None:
    must = {
        "trust_remote_code",
        "tokenizer",
        "download_dir",
        "chat_template",
        "hf_overrides",
        "speculative_config",
        "enable_lora",
        "tensor_parallel_size",
    }
    assert must <= set(DENIED_ENGINE_KWARGS)
    assert not must & set(ALLOWED_ENGINE_KWARGS)


def test_unknown_engine_option_lists_the_allowed_ones() -> None:
    with pytest.raises(SpecInvalid, match="unknown engine option; allowed: max_model_len"):
        validate_spec(spec(engine_kwargs={"max_modle_len": 5}), GPU)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_model_len": 1.5},
        {"max_model_len": 0},
        {"gpu_memory_utilization": 1.5},
        {"enforce_eager": "yes"},
        {"dtype": "int4"},
        {"quantization": "magic"},
        {"block_size": 7},
    ],
)
def test_engine_option_values_are_checked(kwargs: dict[str, Any]) -> None:
    with pytest.raises(SpecInvalid) as e:
        validate_spec(spec(engine_kwargs=kwargs), GPU)
    assert fields(e.value)[0].startswith("engine_kwargs.")


def test_allowed_engine_options_pass() -> None:
    kw = {
        "max_model_len": 2048,
        "gpu_memory_utilization": 0.8,
        "max_num_seqs": 64,
        "enable_prefix_caching": True,
        "enforce_eager": True,
        "seed": 0,
        "quantization": "awq",
    }
    s = validate_spec(spec(engine_kwargs=kw), GPU)
    assert s.engine_kwargs.model_dump(exclude_none=True) == kw


def test_engine_kwargs_must_be_a_mapping() -> None:
    with pytest.raises(SpecInvalid) as e:
        validate_spec(spec(engine_kwargs=[1]), GPU)
    assert fields(e.value) == ["engine_kwargs"]


def test_model_id_rule_and_missing_fields() -> None:
    with pytest.raises(SpecInvalid) as e:
        validate_spec({"model_id": "bad id"}, GPU)
    assert fields(e.value) == ["model_id", "model_source"]
    assert "is required" in str(e.value)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "empty"),
        ("   \n", "empty"),
        ("- a\n", "must be a mapping"),
        ("just a string", "must be a mapping"),
        ("a: [", "not valid YAML"),
        ("a: 1\na: 2\n", "duplicate key 'a'"),
        ("!!python/object/apply:os.system ['true']", "not valid YAML"),
        ("1: x\n", "field names are text"),
        ("a: \x00", "NUL"),
    ],
)
def test_yaml_syntax_errors(text: str, needle: str) -> None:
    with pytest.raises(SpecSyntaxError, match=needle):
        load_yaml_mapping(text)


def test_an_autoscaling_range_is_stored_and_read_back_as_written() -> None:
    from argus.serving.spec import Autoscaling, ResolvedServingSpec

    scaling = {"min_replicas": 0, "max_replicas": 3, "idle_seconds": 60}
    written = validate_spec(spec(gpus_per_replica=2, autoscaling=scaling), GPU)
    resolved = ResolvedServingSpec.model_validate(written.model_dump(exclude_unset=True))
    stored = resolved.stored()
    assert "num_replicas" not in stored
    assert stored["autoscaling"] == {**scaling, "target_ongoing_requests": 8}
    back = ResolvedServingSpec.from_stored(stored)
    assert back == resolved and back.stored() == stored
    assert (back.min_replicas, back.max_replicas, back.gpus) == (0, 3, 6)  # quota: the ceiling
    fixed = back.with_replicas(2)
    assert fixed.autoscaling is None and fixed.stored()["num_replicas"] == 2
    again = fixed.with_autoscaling(Autoscaling(max_replicas=2))
    assert again.stored()["autoscaling"]["min_replicas"] == 1 and again.gpus == 4
    # A stored spec with both is refused when read back, like a posted one.
    with pytest.raises(SpecInvalid, match="not both"):
        ResolvedServingSpec.from_stored({**stored, "num_replicas": 1})
