"""Metering as the ingress runs it: the usage in an answer, the stream's extra chunk, the
per-minute book, and the sink's drain-then-ack (all Ray-free, as in the replica)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from argus.cluster import usage_sink
from argus.cluster.usage import (
    Tokens,
    UsageBook,
    error_status,
    merge_rows,
    strip_usage_chunks,
    tokens_in,
)
from argus.cluster.usage_sink import UsageSink

pytestmark = pytest.mark.unit


def sse(*payloads: object) -> str:
    return "".join(f"data: {json.dumps(p)}\n\n" for p in payloads)


CHUNK = {"id": "c1", "choices": [{"index": 0, "delta": {"content": "Pa"}}], "usage": None}
USAGE = {"id": "c1", "choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 3}}


def test_the_usage_of_a_whole_answer_a_dict_and_a_stream() -> None:
    answer = SimpleNamespace(usage=SimpleNamespace(model_dump=lambda: USAGE["usage"]))
    assert tokens_in(answer) == Tokens(12, 3)
    assert tokens_in({"usage": {"prompt_tokens": 5, "completion_tokens": 0}}) == Tokens(5, 0)
    assert tokens_in(sse(CHUNK) + sse(USAGE) + "data: [DONE]\n\n") == Tokens(12, 3)
    assert tokens_in([sse(CHUNK), sse(USAGE)]) == Tokens(12, 3)
    assert tokens_in(sse(CHUNK)) is None
    assert tokens_in("data: {not json\n\n") is None
    assert tokens_in({"usage": {"prompt_tokens": "many"}}) is None
    assert tokens_in(object()) is None


def test_the_usage_chunk_a_client_did_not_ask_for_is_taken_out_and_nothing_else() -> None:
    stream = sse(CHUNK) + sse(USAGE) + "data: [DONE]\n\n"
    assert strip_usage_chunks(stream) == sse(CHUNK) + "data: [DONE]\n\n"
    assert strip_usage_chunks(sse(USAGE)) == ""
    assert strip_usage_chunks([sse(CHUNK), sse(USAGE)]) == [sse(CHUNK)]
    with_usage = {**CHUNK, "usage": {"prompt_tokens": 1, "completion_tokens": 1}}
    assert strip_usage_chunks(sse(with_usage)) == sse(with_usage)  # it has a choice: kept
    answer = SimpleNamespace(usage=None)
    assert strip_usage_chunks(answer) is answer


def test_an_error_answer_gives_its_status() -> None:
    assert error_status(SimpleNamespace(error=SimpleNamespace(code=400))) == 400
    assert error_status(SimpleNamespace(error=SimpleNamespace(code="bad"))) is None
    assert error_status(SimpleNamespace(error=SimpleNamespace(code=200))) is None
    assert error_status("data: {}\n\n") is None


def test_the_book_keeps_one_row_a_minute_user_key_model_and_status() -> None:
    book = UsageBook()
    book.record(120.5, "alice", "key_a", "m", 200, Tokens(10, 2), 0.25)
    book.record(179.9, "alice", "key_a", "m", 200, Tokens(5, 1), 0.5)
    book.record(180.0, "alice", "key_a", "m", 200, None, 0.1)  # the next minute
    book.record(130.0, "alice", "key_a", "m", 499, None, 1.0)
    rows = sorted(book.take(), key=lambda r: (r["minute"], r["status"]))
    assert [(r["minute"], r["status"], r["requests"]) for r in rows] == [
        (120, 200, 2),
        (120, 499, 1),
        (180, 200, 1),
    ]
    assert (rows[0]["prompt_tokens"], rows[0]["completion_tokens"]) == (15, 3)
    assert rows[0]["latency_ms"] == 750
    assert book.take() == []
    book.put_back(rows)
    book.put_back(rows[:1])
    again = {(r["minute"], r["status"]): r["requests"] for r in book.take()}
    assert again == {(120, 200): 4, (120, 499): 1, (180, 200): 1}
    assert merge_rows([*rows, *rows])[0]["requests"] == 4


def test_the_sink_hands_out_one_batch_until_it_is_acked() -> None:
    sink = UsageSink()
    assert sink.drain() is None
    book = UsageBook()
    book.record(60, "alice", "k", "m", 200, Tokens(1, 1), 0.1)
    sink.add(book.take())
    first = sink.drain()
    assert first is not None and len(first["rows"]) == 1
    book.record(60, "bob", "k2", "m", 200, Tokens(2, 2), 0.1)
    sink.add(book.take())  # arrives while the first batch is out
    assert sink.drain() == first  # the same batch again: its ack never came
    assert sink.ack("another") is False
    assert sink.ack(first["batch"]) is True
    second = sink.drain()
    assert second is not None and second["batch"] != first["batch"]
    assert [r["user"] for r in second["rows"]] == ["bob"]
    assert sink.ack(second["batch"]) and sink.drain() is None


def test_the_sink_keeps_the_newest_minutes_when_argus_stays_away(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(usage_sink, "MAX_PENDING_ROWS", 3)
    sink = UsageSink()
    book = UsageBook()
    for minute in range(5):
        book.record(minute * 60, "alice", "k", "m", 200, None, 0.0)
    assert sink.add(book.take()) == 3
    drained = sink.drain()
    assert drained is not None
    assert sorted(r["minute"] for r in drained["rows"]) == [120, 180, 240]
