"""The SFT workload end to end: a real 2-step run of a tiny Llama, as a Ray job would run it."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from argus.training import sft
from argus.training.datasets import install_demo_chat, packaged_demo_chat
from tests.unit.test_sft_data import GOOD, make_chat_tokenizer, packaged_texts

pytestmark = pytest.mark.integration

SAMPLING = {"do_sample": True, "temperature": 0.2, "top_p": 0.9}


def make_tiny_model(folder: Path) -> Path:
    """A 2-layer, hidden-32 Llama with a chat tokenizer over the demo dataset's words."""
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    tokenizer = make_chat_tokenizer(packaged_texts())
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    GenerationConfig(**SAMPLING, eos_token_id=tokenizer.eos_token_id).save_pretrained(folder)
    return folder


def run_sft(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "argus.training.sft", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


@dataclass
class Run:
    proc: subprocess.CompletedProcess[str]
    output_dir: Path
    model: Path
    train_file: Path

    @property
    def checkpoint(self) -> Path:
        return self.output_dir / "checkpoint"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    tmp = tmp_path_factory.mktemp("sft")
    model = make_tiny_model(tmp / "tiny-llama")
    train_file = install_demo_chat(tmp / "storage")
    output_dir = tmp / "out"
    # A checkpoint from an earlier run, which this one must replace whole.
    (output_dir / "checkpoint").mkdir(parents=True)
    (output_dir / "checkpoint" / "stale.txt").write_text("old run\n")
    proc = run_sft(
        "--model-source", model, "--train-file", train_file, "--output-dir", output_dir,
        "--max-steps", "2", "--learning-rate", "1e-3", "--batch-size", "2",
        "--max-seq-len", "64", "--seed", "1",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return Run(proc, output_dir, model, train_file)


def test_progress_is_printed_as_plain_lines(run: Run) -> None:
    lines = run.proc.stdout.splitlines()
    assert lines[0].startswith("argus-sft: start model ")
    assert f"examples {len(packaged_demo_chat().splitlines())}" in lines[0]
    assert "device cpu" in lines[0]
    steps = [line for line in lines if line.startswith("argus-sft: step ")]
    assert [line.split()[2] for line in steps] == ["1/2", "2/2"]
    for line in steps:
        assert math.isfinite(float(line.split(" loss ")[1].split()[0]))
    assert lines[-1].startswith("argus-sft: done steps 2 final loss ")
    assert lines[-1].endswith(f"checkpoint {run.checkpoint}")
    assert "Traceback" not in run.proc.stderr
    assert "\r" not in run.proc.stderr, "progress bars in the job log"


def test_checkpoint_is_a_servable_float32_folder(run: Run) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    names = {p.name for p in run.checkpoint.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "argus_training.json"} <= names
    assert "stale.txt" not in names, "the old checkpoint was not replaced"
    assert not [p for p in run.output_dir.iterdir() if p.name != "checkpoint"], "temp left"

    model = AutoModelForCausalLM.from_pretrained(run.checkpoint, local_files_only=True)
    assert model.dtype == torch.float32
    assert model.config.num_hidden_layers == 2
    assert model.config.use_cache is True, "Trainer's use_cache=False leaked into the checkpoint"
    tokenizer = AutoTokenizer.from_pretrained(run.checkpoint, local_files_only=True)
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True
    )
    assert rendered.endswith("<|im_start|>assistant\n")
    generation = json.loads((run.checkpoint / "generation_config.json").read_text())
    assert {k: generation.get(k) for k in SAMPLING} == SAMPLING


def test_training_record(run: Run) -> None:
    info = json.loads((run.checkpoint / "argus_training.json").read_text())
    assert info["base_model"] == str(run.model.resolve())
    assert info["train_file"] == str(run.train_file.resolve())
    assert info["steps"] == 2
    assert math.isfinite(info["final_loss"])
    assert f"final loss {info['final_loss']:.4f} " in run.proc.stdout.splitlines()[-1]
    assert info["seconds"] > 0


def test_bad_input_exits_2_with_one_line_and_no_traceback(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    train = tmp_path / "train.jsonl"
    train.write_text(f"{GOOD}\n[not, json\n")
    proc = run_sft("--model-source", model, "--train-file", train, "--output-dir", tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [proc.stderr.strip()]
    assert f"{train} line 2: not valid JSON" in proc.stderr


def test_a_tokenizer_without_chat_template_exits_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    model = tmp_path / "base-model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "llama"}))
    tokenizer = make_chat_tokenizer(["Hi", "Hello."])
    tokenizer.chat_template = None
    tokenizer.save_pretrained(model)
    train = tmp_path / "train.jsonl"
    train.write_text(GOOD + "\n")
    argv = ["--model-source", str(model), "--train-file", str(train), "--output-dir", str(tmp_path)]
    assert sft.main(argv) == 2
    err = capsys.readouterr().err
    assert err == f"argus-sft: error: {model}: the tokenizer has no chat template; " + (
        "use a chat (instruct) model or add a chat_template to its tokenizer files\n"
    )


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"dtype": "bfloat16"}, "bfloat16"),
        ({"torch_dtype": "float16"}, "float16"),
        ({"dtype": "no-such-type"}, "float32"),
        ({}, "float32"),
    ],
)
def test_a_gpu_checkpoint_keeps_the_source_dtype(
    tmp_path: Path, config: dict[str, str], expected: str
) -> None:
    import torch

    (tmp_path / "config.json").write_text(json.dumps(config))
    assert sft._source_dtype(torch, tmp_path) == getattr(torch, expected)
