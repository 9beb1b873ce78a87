"""Supervised fine-tuning of a chat model: the built-in training workload argus runs as a Ray job.

    python -m argus.training.sft --model-source DIR --train-file FILE --output-dir DIR \\
        [--max-steps N] [--learning-rate F] [--batch-size N] [--max-seq-len N] [--seed N]

The train file is JSONL, one conversation a line: `{"messages": [{"role": ..., "content":
...}, ...]}` ending with an assistant message. Each conversation is rendered with the
model's own chat template and the loss is taken on the last assistant reply only: the
tokens of the prompt (the conversation before that reply plus the template's
generation prompt) get the label -100. Training is transformers' `Trainer`.

The result is a folder vLLM can serve, `<output-dir>/checkpoint/`: safetensors weights
(float32 when trained on CPU, which is what the CPU engine serves; the source's own dtype
when trained on a GPU), the tokenizer, the source's `generation_config.json` (its
sampling defaults are what the serving engine applies) and `argus_training.json`. It is
built in a sibling temporary folder and renamed into place at the end, so a run that
crashes never leaves a half-written folder named `checkpoint`.

Bad input exits with code 2 and one line on stderr that names the file, the line and
the fix. Progress is printed as plain `argus-sft: ...` lines on stdout, which is what a
Ray job's log shows. torch and transformers are imported inside `main`, so importing
this module (for its data functions, or by a CLI that only builds the command) is cheap.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from argus.storage import CHECKPOINT_NAME, OFFLINE_HF, replace_dir

LOG_PREFIX = "argus-sft"
EXIT_BAD_INPUT = 2
TRAINING_INFO_NAME = "argus_training.json"
IGNORE_INDEX = -100  # the label torch's cross-entropy skips

DEFAULT_MAX_STEPS = 20
DEFAULT_LEARNING_RATE = 5e-5
DEFAULT_BATCH_SIZE = 4
DEFAULT_MAX_SEQ_LEN = 256
DEFAULT_SEED = 42

_ROLES = ("system", "user", "assistant")
_LINE_HINT = (
    'each line must be one JSON object like {"messages": [{"role": "user", "content": "..."}, '
    '{"role": "assistant", "content": "..."}]}'
)

Example = dict[str, list[int]]


class SftInputError(Exception):
    """The input cannot be trained on; the message names the file and what to fix."""


@dataclass(frozen=True)
class Conversation:
    line: int  # 1-based line number in the train file, for error messages
    messages: list[dict[str, str]]


# --- data: pure functions over plain values ---------------------------------------------


def read_conversations(path: Path) -> list[Conversation]:
    """Parse a JSONL chat file; raise SftInputError naming the first bad line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SftInputError(f"{path}: no such file; --train-file must be a JSONL file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SftInputError(f"{path}: cannot read it ({e}); it must be UTF-8 JSONL") from None
    conversations = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if raw.strip():
            conversations.append(Conversation(number, _parse_line(raw, path, number)))
    if not conversations:
        raise SftInputError(f"{path}: the file has no conversations; {_LINE_HINT}")
    return conversations


def _parse_line(raw: str, path: Path, number: int) -> list[dict[str, str]]:
    where = f"{path} line {number}"
    try:
        record = json.loads(raw)
    except json.JSONDecodeError as e:
        raise SftInputError(f"{where}: not valid JSON ({e.msg}); {_LINE_HINT}") from None
    messages = record.get("messages") if isinstance(record, dict) else None
    if not isinstance(messages, list) or not messages:
        raise SftInputError(f'{where}: no non-empty "messages" list; {_LINE_HINT}')
    parsed: list[dict[str, str]] = []
    for index, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        content = message.get("content") if isinstance(message, dict) else None
        if role not in _ROLES or not isinstance(content, str):
            raise SftInputError(
                f"{where}: message {index} must be an object with a role of "
                f"{', '.join(_ROLES)} and a string content; {_LINE_HINT}"
            )
        parsed.append({"role": role, "content": content})
    if parsed[-1]["role"] != "assistant":
        raise SftInputError(
            f"{where}: the last message must be the assistant's reply to learn from; "
            "add one or remove the line"
        )
    if len(parsed) < 2:
        raise SftInputError(
            f"{where}: the assistant's reply needs a message before it (a user question or "
            "an instruction) to answer"
        )
    return parsed


def tokenize_conversation(
    tokenizer: Any, messages: list[dict[str, str]], max_seq_len: int
) -> Example | None:
    """Token ids and labels for one conversation, the prompt part masked with -100.

    The prompt is everything before the last assistant message, rendered with the
    template's generation prompt, so the model learns the reply and its end-of-turn token
    but not the question. Returns None when truncation to `max_seq_len` leaves no reply
    token to learn from.
    """
    prompt_text = tokenizer.apply_chat_template(
        messages[:-1], tokenize=False, add_generation_prompt=True
    )
    full_text = tokenizer.apply_chat_template(messages, tokenize=False)
    prompt_ids: list[int] = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    full_ids: list[int] = tokenizer(full_text, add_special_tokens=False)["input_ids"]
    # Templates that render a turn differently once it is no longer the last one, or a
    # token merging across the prompt/reply seam, make the two tokenizations part ways;
    # masking only their common prefix never hides a reply token.
    masked = _common_prefix_len(prompt_ids, full_ids)
    input_ids = full_ids[:max_seq_len]
    if masked >= len(input_ids):
        return None
    labels = [IGNORE_INDEX] * masked + input_ids[masked:]
    return {"input_ids": input_ids, "attention_mask": [1] * len(input_ids), "labels": labels}


def _common_prefix_len(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def build_examples(
    tokenizer: Any, conversations: list[Conversation], max_seq_len: int, source: Path
) -> tuple[list[Example], int]:
    """Tokenized examples and how many conversations were dropped for having no reply left."""
    examples: list[Example] = []
    for conversation in conversations:
        try:
            example = tokenize_conversation(tokenizer, conversation.messages, max_seq_len)
        except Exception as e:  # a template may raise on a shape it does not support
            raise SftInputError(
                f"{source} line {conversation.line}: the model's chat template cannot render "
                f"it ({type(e).__name__}: {e}); check the roles and their order"
            ) from None
        if example is not None:
            examples.append(example)
    if not examples:
        raise SftInputError(
            f"{source}: every conversation's prompt fills --max-seq-len {max_seq_len}, so no "
            "reply is left to learn from; raise --max-seq-len or shorten the prompts"
        )
    return examples, len(conversations) - len(examples)


# --- command line -------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, not {text}")
    return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m argus.training.sft",
        description="Fine-tune a chat model on a JSONL chat file (loss on the replies only).",
    )
    parser.add_argument("--model-source", type=Path, required=True, help="local HF model folder")
    parser.add_argument("--train-file", type=Path, required=True, help='JSONL of {"messages"}')
    parser.add_argument("--output-dir", type=Path, required=True, help="gets checkpoint/")
    parser.add_argument("--max-steps", type=_positive_int, default=DEFAULT_MAX_STEPS)
    parser.add_argument("--learning-rate", type=_positive_float, default=DEFAULT_LEARNING_RATE)
    parser.add_argument("--batch-size", type=_positive_int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--max-seq-len", type=_positive_int, default=DEFAULT_MAX_SEQ_LEN)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        _check_model_source(args.model_source)
        conversations = read_conversations(args.train_file)
        return _train(args, conversations)
    except SftInputError as e:
        print(f"{LOG_PREFIX}: error: {e}", file=sys.stderr, flush=True)
        return EXIT_BAD_INPUT


def _say(message: str) -> None:
    print(f"{LOG_PREFIX}: {message}", flush=True)


def _check_model_source(folder: Path) -> None:
    if not folder.is_dir():
        raise SftInputError(
            f"{folder}: no such folder; --model-source must be a local model folder"
        )
    if not (folder / "config.json").is_file():
        raise SftInputError(
            f"{folder}: no config.json; --model-source must be a Hugging Face model folder "
            "(config.json, safetensors weights, tokenizer files)"
        )


# --- training: the only part that needs torch and transformers ----------------------------


def _train(args: argparse.Namespace, conversations: list[Conversation]) -> int:
    # Weights come from local disk only (design D8); also keep any helper off the network.
    for name, value in OFFLINE_HF.items():
        os.environ.setdefault(name, value)
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # Progress bars are carriage-return noise in a Ray job's log; the step lines say enough.
    transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    started = time.monotonic()
    source: Path = args.model_source
    threads = _set_threads(torch)
    use_cuda = torch.cuda.is_available()
    bf16 = use_cuda and torch.cuda.is_bf16_supported()

    tokenizer = _load(AutoTokenizer, source, "tokenizer")
    if not getattr(tokenizer, "chat_template", None):
        raise SftInputError(
            f"{source}: the tokenizer has no chat template; use a chat (instruct) model or add "
            "a chat_template to its tokenizer files"
        )
    examples, dropped = build_examples(tokenizer, conversations, args.max_seq_len, args.train_file)
    # Master weights stay float32 for the optimizer; on a GPU bf16 autocast does the math.
    model = _load(AutoModelForCausalLM, source, "model", dtype=torch.float32, use_safetensors=True)
    save_dtype = _source_dtype(torch, source) if use_cuda else torch.float32

    output_dir: Path = args.output_dir
    final_dir = output_dir / CHECKPOINT_NAME
    tmp_dir = output_dir / f"{CHECKPOINT_NAME}.tmp-{os.getpid()}"
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        tmp_dir.mkdir()
    except OSError as e:
        raise SftInputError(f"{output_dir}: cannot create the output folder ({e})") from None

    device = "cuda" if use_cuda else "cpu"
    _say(
        f"start model {source} examples {len(examples)} (dropped {dropped} with no reply left "
        f"within {args.max_seq_len} tokens) device {device} "
        f"{'bf16' if bf16 else 'float32'} threads {threads} steps {args.max_steps} "
        f"batch {args.batch_size} lr {args.learning_rate:.1e}"
    )
    try:
        # Saved before training changes its padding settings: the checkpoint's tokenizer
        # must be the source's.
        tokenizer.save_pretrained(str(tmp_dir))
        use_cache = getattr(model.config, "use_cache", None)
        progress = _fit(args, model, tokenizer, examples, tmp_dir, use_cuda, bf16)
        if use_cache is not None:
            # Trainer turns the KV cache off for training and would save it off.
            model.config.use_cache = use_cache
        model.to(device="cpu", dtype=save_dtype)
        # transformers 5 always writes safetensors (the safe_serialization flag is gone).
        model.save_pretrained(str(tmp_dir))
        generation_config = source / "generation_config.json"
        if generation_config.is_file():
            shutil.copyfile(generation_config, tmp_dir / "generation_config.json")
        seconds = time.monotonic() - started
        info = {
            "base_model": str(source.resolve()),
            "train_file": str(args.train_file.resolve()),
            "examples": len(examples),
            "dropped_examples": dropped,
            "steps": progress.steps,
            "max_steps": args.max_steps,
            "batch_size": args.batch_size,
            "learning_rate": args.learning_rate,
            "max_seq_len": args.max_seq_len,
            "seed": args.seed,
            "final_loss": progress.last_loss,
            "seconds": round(seconds, 1),
            "device": device,
            "dtype": str(save_dtype).removeprefix("torch."),
            "transformers_version": transformers.__version__,
            "torch_version": torch.__version__,
        }
        _write_json(tmp_dir / TRAINING_INFO_NAME, info)
        replace_dir(tmp_dir, final_dir)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    loss = "n/a" if progress.last_loss is None else f"{progress.last_loss:.4f}"
    _say(f"done steps {progress.steps} final loss {loss} in {seconds:.1f} s checkpoint {final_dir}")
    return 0


def _load(auto_class: Any, source: Path, what: str, **kwargs: Any) -> Any:
    try:
        # argus's own code only: no Python shipped with the model, no pickle weights.
        return auto_class.from_pretrained(
            str(source), local_files_only=True, trust_remote_code=False, **kwargs
        )
    except (OSError, ValueError) as e:
        # One line: transformers' messages here are about the folder's files, not a bug.
        reason = " ".join(str(e).split())
        raise SftInputError(
            f"{source}: cannot load the {what} ({type(e).__name__}: {reason}); "
            "--model-source must be a complete local Hugging Face model folder"
        ) from None


def _set_threads(torch: Any) -> int:
    # A Ray job or the user may cap threads with OMP_NUM_THREADS; otherwise use every core
    # this process may run on (not os.cpu_count(), which ignores CPU affinity limits).
    raw = os.environ.get("OMP_NUM_THREADS", "")
    threads = int(raw) if raw.isdigit() and int(raw) > 0 else len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    return threads


def _source_dtype(torch: Any, source: Path) -> Any:
    # The dtype the source was published in, so a GPU checkpoint is not twice its size.
    try:
        config = json.loads((source / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return torch.float32
    name = (config.get("dtype") or config.get("torch_dtype")) if isinstance(config, dict) else None
    dtype = getattr(torch, name, None) if isinstance(name, str) else None
    return dtype if isinstance(dtype, torch.dtype) else torch.float32


@dataclass
class _Progress:
    steps: int = 0
    last_loss: float | None = None


def _fit(
    args: argparse.Namespace,
    model: Any,
    tokenizer: Any,
    examples: list[Example],
    work_dir: Path,
    use_cuda: bool,
    bf16: bool,
) -> _Progress:
    from transformers import (
        DataCollatorForSeq2Seq,
        PrinterCallback,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    progress = _Progress()

    class PrintProgress(TrainerCallback):  # type: ignore[misc]  # transformers is not read
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            if not logs or "loss" not in logs:
                return  # the end-of-training summary has train_loss, not loss
            progress.steps = int(state.global_step)
            progress.last_loss = float(logs["loss"])
            lr = float(logs.get("learning_rate", 0.0))
            _say(
                f"step {state.global_step}/{state.max_steps} loss {progress.last_loss:.4f} "
                f"lr {lr:.1e}"
            )

    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    training_args = TrainingArguments(
        output_dir=str(work_dir),
        max_steps=args.max_steps,
        learning_rate=args.learning_rate,
        per_device_train_batch_size=args.batch_size,
        seed=args.seed,
        logging_steps=1,
        save_strategy="no",
        eval_strategy="no",
        report_to=[],
        disable_tqdm=True,
        use_cpu=not use_cuda,
        bf16=bf16,
        dataloader_pin_memory=use_cuda,
    )
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=examples,  # a list is a map-style dataset
        data_collator=DataCollatorForSeq2Seq(
            tokenizer, padding=True, label_pad_token_id=IGNORE_INDEX
        ),
        callbacks=[PrintProgress()],
    )
    # PrinterCallback would print every log dict a second time, as a raw dict.
    trainer.remove_callback(PrinterCallback)
    result = trainer.train()
    progress.steps = int(result.global_step)
    return progress


def _write_json(path: Path, data: dict[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())


if __name__ == "__main__":
    sys.exit(main())
