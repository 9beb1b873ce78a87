"""The SFT workload's data side: the shipped dataset, prompt masking, bad-input errors."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from argus.training import sft
from argus.training.datasets import DEMO_CHAT_DIRNAME, install_demo_chat, packaged_demo_chat
from argus.training.sft import (
    IGNORE_INDEX,
    SftInputError,
    build_examples,
    read_conversations,
    tokenize_conversation,
)
from tests.conftest import make_model_folder

pytestmark = pytest.mark.unit

# ChatML, as SmolLM2 and many others use; the generation prompt opens the assistant turn.
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_SPECIALS = ["<pad>", "<unk>", "<|im_start|>", "<|im_end|>"]


def make_chat_tokenizer(texts: Iterable[str], template: str = CHATML) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over `texts` with a chat template: no download, built in ms."""
    split = pre_tokenizers.Whitespace()
    words = {w for text in texts for w, _ in split.pre_tokenize_str(text)}
    words |= {"system", "user", "assistant"}
    vocab = {token: i for i, token in enumerate([*_SPECIALS, *sorted(words)])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = split
    backend.add_special_tokens(_SPECIALS)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="<unk>",
        pad_token="<pad>",
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
    )
    tokenizer.chat_template = template
    return tokenizer


def packaged_texts() -> list[str]:
    lines = packaged_demo_chat().decode("utf-8").splitlines()
    return [m["content"] for line in lines for m in json.loads(line)["messages"]]


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    return make_chat_tokenizer([*packaged_texts(), "Be brief.", "Hi", "Hello.", "2+2?", "4."])


def ids(tokenizer: PreTrainedTokenizerFast, text: str) -> list[int]:
    out: list[int] = tokenizer(text, add_special_tokens=False)["input_ids"]
    return out


def learned(example: dict[str, list[int]]) -> list[int]:
    return [label for label in example["labels"] if label != IGNORE_INDEX]


def chat(*turns: tuple[str, str]) -> list[dict[str, str]]:
    return [{"role": role, "content": content} for role, content in turns]


# --- the shipped dataset -----------------------------------------------------------------


def test_demo_chat_dataset_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    path.write_bytes(packaged_demo_chat())
    conversations = read_conversations(path)
    assert 60 <= len(conversations) <= 100
    questions = set()
    for conversation in conversations:
        roles = [m["role"] for m in conversation.messages]
        assert roles == ["user", "assistant"], conversation.line
        assert all(m["content"].strip() for m in conversation.messages), conversation.line
        questions.add(conversation.messages[0]["content"])
    assert len(questions) == len(conversations), "a question is repeated"


def test_every_demo_example_fits_and_keeps_its_reply(
    tokenizer: PreTrainedTokenizerFast, tmp_path: Path
) -> None:
    path = tmp_path / "train.jsonl"
    path.write_bytes(packaged_demo_chat())
    examples, dropped = build_examples(tokenizer, read_conversations(path), 256, path)
    assert dropped == 0
    assert all(learned(e) for e in examples)


# --- masking -------------------------------------------------------------------------------


def test_only_the_reply_and_its_end_of_turn_are_learned(
    tokenizer: PreTrainedTokenizerFast,
) -> None:
    messages = chat(("user", "What is the capital of France?"), ("assistant", "Paris."))
    example = tokenize_conversation(tokenizer, messages, 256)
    assert example is not None
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    reply = [*ids(tokenizer, "Paris."), end]
    n_prompt = len(example["input_ids"]) - len(reply)
    assert example["labels"][:n_prompt] == [IGNORE_INDEX] * n_prompt
    assert example["labels"][n_prompt:] == reply == example["input_ids"][n_prompt:]
    assert tokenizer.decode(example["input_ids"][:n_prompt]).endswith("assistant")
    assert example["attention_mask"] == [1] * len(example["input_ids"])


def test_earlier_turns_and_the_system_prompt_are_masked(
    tokenizer: PreTrainedTokenizerFast,
) -> None:
    messages = chat(
        ("system", "Be brief."),
        ("user", "Hi"),
        ("assistant", "Hello."),
        ("user", "2+2?"),
        ("assistant", "4."),
    )
    example = tokenize_conversation(tokenizer, messages, 256)
    assert example is not None
    assert learned(example) == [
        *ids(tokenizer, "4."),
        tokenizer.convert_tokens_to_ids("<|im_end|>"),
    ]


def test_truncation_keeps_the_start_of_the_reply(tokenizer: PreTrainedTokenizerFast) -> None:
    messages = chat(("user", "What is gravity?"), ("assistant", "Gravity is the force."))
    prompt_len = len(ids(tokenizer, "<|im_start|>user What is gravity?<|im_end|>")) + 2
    example = tokenize_conversation(tokenizer, messages, prompt_len + 2)
    assert example is not None
    assert len(example["input_ids"]) == len(example["labels"]) == prompt_len + 2
    assert learned(example) == ids(tokenizer, "Gravity is")


def test_a_prompt_that_fills_max_seq_len_is_dropped(tokenizer: PreTrainedTokenizerFast) -> None:
    messages = chat(("user", "What is gravity?"), ("assistant", "Gravity is the force."))
    assert tokenize_conversation(tokenizer, messages, 4) is None
    conversations = [sft.Conversation(1, messages)]
    with pytest.raises(SftInputError, match="raise --max-seq-len"):
        build_examples(tokenizer, conversations, 4, Path("train.jsonl"))


def test_a_template_that_renders_the_prompt_differently_never_hides_the_reply() -> None:
    # The generation prompt adds a word the full rendering lacks: the two tokenizations part
    # ways there, and only their common prefix is masked.
    template = CHATML.replace("assistant\n{% endif %}", "assistant think\n{% endif %}")
    assert template != CHATML
    tokenizer = make_chat_tokenizer(["What is gravity?", "A force.", "think"], template)
    messages = chat(("user", "What is gravity?"), ("assistant", "A force."))
    example = tokenize_conversation(tokenizer, messages, 64)
    assert example is not None
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert learned(example) == [*ids(tokenizer, "A force."), end]


# --- bad input: exit code 2 and one line naming the file and line ----------------------


def _run(capsys: pytest.CaptureFixture[str], model: Path, train: Path, out: Path) -> str:
    argv = ["--model-source", str(model), "--train-file", str(train), "--output-dir", str(out)]
    assert sft.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1, captured.err
    assert captured.err.startswith("argus-sft: error: ")
    return captured.err


GOOD = json.dumps({"messages": chat(("user", "Hi"), ("assistant", "Hello."))})


@pytest.mark.parametrize(
    ("lines", "needles"),
    [
        ([GOOD, "{not json"], ["line 2", "not valid JSON"]),
        ([GOOD, GOOD, json.dumps({"messages": chat(("user", "Hi"))})], ["line 3", "assistant"]),
        ([json.dumps({"text": "Hi"})], ["line 1", '"messages"']),
        ([json.dumps({"messages": chat(("bot", "Hi"), ("assistant", "x"))})], ["line 1", "role"]),
        ([json.dumps({"messages": chat(("assistant", "Hello."))})], ["line 1", "before it"]),
        (["", "  "], ["no conversations"]),
    ],
    ids=["not-json", "no-reply", "no-messages", "bad-role", "reply-only", "empty"],
)
def test_bad_train_file_exits_2_naming_the_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, lines: list[str], needles: list[str]
) -> None:
    train = tmp_path / "train.jsonl"
    train.write_text("\n".join(lines) + "\n", encoding="utf-8")
    err = _run(capsys, make_model_folder(tmp_path / "model"), train, tmp_path / "out")
    assert str(train) in err
    for needle in needles:
        assert needle in err
    assert not (tmp_path / "out").exists()


def test_blank_lines_are_skipped_and_numbering_stays_true(tmp_path: Path) -> None:
    train = tmp_path / "train.jsonl"
    train.write_text(f"{GOOD}\n\n{GOOD}\n", encoding="utf-8")
    assert [c.line for c in read_conversations(train)] == [1, 3]


def test_missing_train_file_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    err = _run(capsys, make_model_folder(tmp_path / "model"), missing, tmp_path / "out")
    assert f"{missing}: no such file" in err


def test_model_folder_without_config_exits_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    model = tmp_path / "model"
    model.mkdir()
    train = tmp_path / "train.jsonl"
    train.write_text(GOOD + "\n", encoding="utf-8")
    err = _run(capsys, model, train, tmp_path / "out")
    assert f"{model}: no config.json" in err


# --- installing the dataset into the storage root ---------------------------------------


def test_install_demo_chat_is_idempotent_and_repairs(tmp_path: Path) -> None:
    path = install_demo_chat(tmp_path)
    assert path == tmp_path / "datasets" / DEMO_CHAT_DIRNAME / "train.jsonl"
    assert path.read_bytes() == packaged_demo_chat()

    stamp = path.stat().st_mtime_ns
    assert install_demo_chat(tmp_path) == path
    assert path.stat().st_mtime_ns == stamp, "an up-to-date file was rewritten"

    path.write_text("edited\n", encoding="utf-8")
    install_demo_chat(tmp_path)
    assert path.read_bytes() == packaged_demo_chat()
    assert sorted(p.name for p in path.parent.iterdir()) == ["train.jsonl"]
