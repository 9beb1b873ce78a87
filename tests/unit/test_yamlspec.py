"""The strict YAML loader and the id rules under generated input: no input raises anything but
the error argus maps to a 400/422, and what is accepted follows the rules exactly."""

from __future__ import annotations

import re
import string

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from argus.ids import InvalidId, validate_model_id_suffix, validate_user_id
from argus.text import shown
from argus.yamlspec import (
    MAX_DEPTH,
    MAX_ERRORS,
    FieldError,
    SpecInvalid,
    SpecSyntaxError,
    load_yaml_mapping,
)

# Hundreds of generated examples a test: 4 s under coverage alone, past the unit tier's
# 60 s when make test ran e2e engines on both cores beside it. A hang still fails.
pytestmark = [pytest.mark.unit, pytest.mark.timeout(300)]
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Text built from what YAML gives meaning to, so that the generator reaches the parser's
# corners (flow and block collections, anchors, tags, quotes, escapes) and not only plain words.
_YAML_BITS = st.sampled_from(
    [
        "a",
        "b",
        ":",
        " ",
        "\n",
        "  ",
        "-",
        "[",
        "]",
        "{",
        "}",
        ",",
        "?",
        "&x",
        "*x",
        "!!set",
        "!!binary",
        "!!python/object:os.system",
        "'",
        '"',
        "\\ud800",
        "\\x00",
        "#",
        "|",
        ">",
        "0x",
        "9" * 50,
        "1e999",
        ".nan",
        "~",
        "<<",
        "%YAML 1.1\n",
        "---",
        "...",
        "\t",
        "é",
        "😀",
    ]
)
yaml_like = st.lists(_YAML_BITS, max_size=40).map("".join)


@FAST
@given(st.one_of(yaml_like, st.text(max_size=200)))
def test_any_text_is_a_mapping_or_a_clear_syntax_error(text: str) -> None:
    try:
        data = load_yaml_mapping(text)
    except SpecSyntaxError as e:
        assert str(e) and len(str(e)) < 600
        return
    assert isinstance(data, dict) and all(isinstance(k, str) for k in data)


plain = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(10**12), 10**12),
        st.text(string.ascii_letters + " .-_/", max_size=20),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(string.ascii_lowercase, min_size=1, max_size=8), inner, max_size=4),
    ),
    max_leaves=20,
)


@FAST
@given(st.dictionaries(st.text(string.ascii_lowercase, min_size=1, max_size=8), plain, max_size=5))
def test_plain_data_comes_back_as_it_was_written(data: dict[str, object]) -> None:
    text = yaml.safe_dump(data, sort_keys=False) if data else "{}"
    if not data:
        with pytest.raises(SpecSyntaxError):
            load_yaml_mapping("")
        return
    assert load_yaml_mapping(text) == data


def test_nesting_is_refused_at_its_limit_not_one_level_before() -> None:
    def nested(levels: int) -> str:
        return "a: " + "[" * (levels - 1) + "]" * (levels - 1)

    assert load_yaml_mapping(nested(MAX_DEPTH - 1))
    with pytest.raises(SpecSyntaxError, match="nested deeper"):
        load_yaml_mapping(nested(MAX_DEPTH + 1))


def test_errors_are_capped_and_counted() -> None:
    e = SpecInvalid(FieldError(f"f{i}", "bad") for i in range(MAX_ERRORS + 7))
    assert len(e.errors) == MAX_ERRORS + 1
    assert e.errors[-1] == FieldError("(more)", "7 more errors not shown; fix these first")


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        (7, "7"),
        ("x" * 10_000, "..."),
        ([[[[[[1]]]]]], "[[[...]]]"),
        ("\ud800", "\\ud800"),
    ],
)
def test_a_value_is_quoted_short_whatever_it_is(value: object, needle: str) -> None:
    text = shown(value)
    assert needle in text and len(text) <= 80
    text.encode("utf-8")  # never a lone surrogate


def test_a_number_python_will_not_print_is_described() -> None:
    assert shown(10**5000) == "a number of about 5000 digits"


USER_RE = re.compile(r"[a-z][a-z0-9_-]{0,31}")
SUFFIX_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9._-]{0,63}")


@FAST
@given(
    st.one_of(st.text(max_size=40), st.from_regex(USER_RE, fullmatch=True).map(lambda s: s + "\n"))
)
def test_a_user_id_is_accepted_exactly_when_it_follows_the_rule(raw: str) -> None:
    try:
        assert validate_user_id(raw) == raw
    except InvalidId as e:
        assert not USER_RE.fullmatch(raw)
        assert "lowercase letter first" in str(e) and len(str(e)) < 300
        return
    assert USER_RE.fullmatch(raw) and "\n" not in raw


@FAST
@given(
    st.one_of(
        st.text(max_size=70), st.from_regex(SUFFIX_RE, fullmatch=True).map(lambda s: s + "\n")
    )
)
def test_a_model_id_suffix_is_accepted_exactly_when_it_follows_the_rule(raw: str) -> None:
    try:
        assert validate_model_id_suffix(raw) == raw
    except InvalidId:
        assert not SUFFIX_RE.fullmatch(raw)
        return
    assert SUFFIX_RE.fullmatch(raw) and "\n" not in raw
