"""Strict YAML specs: the parser and the field errors every spec kind (serving, tasks) shares.

A safe YAML loader that refuses what a spec never needs and a hostile one abuses:
duplicate keys, anchors and aliases (a few hundred bytes of nested aliases expand to
gigabytes), nesting deeper than `MAX_DEPTH`, keys that are lists or mappings, numbers
longer than `MAX_NUMBER_CHARS`, tags beyond plain scalars, lists and mappings, and lone
surrogates. Each refusal is a `SpecSyntaxError` (HTTP 400) that says what to write.
Field rules are pydantic models with unknown fields refused by name; each broken rule is
reported as `field: what to fix`, at most `MAX_ERRORS` of them, each value quoted short.
"""

from __future__ import annotations

import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode

from argus.text import has_lone_surrogate, printable, shown

MAX_DEPTH = 32
MAX_NUMBER_CHARS = 40
MAX_ERRORS = 10
MAX_FIELD_CHARS = 64
_MESSAGE_LIMIT = 400


class SpecSyntaxError(ValueError):
    """The body is not a YAML mapping argus accepts (HTTP 400)."""


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class SpecInvalid(ValueError):
    """One or more fields break a rule (HTTP 422). At most MAX_ERRORS are kept."""

    def __init__(self, errors: Iterable[FieldError]) -> None:
        self.errors = capped(errors)
        super().__init__("; ".join(str(e) for e in self.errors))


def capped(errors: Iterable[FieldError]) -> list[FieldError]:
    """The first MAX_ERRORS errors, and one line that counts the rest."""
    out: list[FieldError] = []
    more = 0
    for e in errors:
        if len(out) < MAX_ERRORS:
            out.append(e)
        else:
            more += 1
    if more:
        out.append(FieldError("(more)", f"{more} more errors not shown; fix these first"))
    return out


def field_name(parts: Iterable[object]) -> str:
    """A dotted field path for a message, each part quoted short."""
    names = []
    for p in parts:
        text = p if isinstance(p, str) else str(p) if isinstance(p, int) else shown(p)
        if len(text) > MAX_FIELD_CHARS or has_lone_surrogate(text):
            text = shown(text, MAX_FIELD_CHARS)
        names.append(text)
    return ".".join(names) or "(top level)"


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses aliases, deep nesting, odd keys, long numbers and tags."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: int) -> Node | None:  # type: ignore[override]
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise ComposerError(
                None,
                None,
                "anchors and aliases (&name, *name) are not accepted in a spec; "
                "write each value out",
                event.start_mark,
            )
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise ComposerError(
                    None,
                    None,
                    f"the spec is nested deeper than {MAX_DEPTH} levels",
                    event.start_mark,
                )
            return super().compose_node(parent, index)  # type: ignore[no-any-return]
        finally:
            self._depth -= 1


def _mapping(loader: _StrictLoader, node: MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if not isinstance(key_node, ScalarNode):
            raise ConstructorError(
                None,
                None,
                "a field name must be a plain word, not a list or a mapping",
                key_node.start_mark,
            )
        key = loader.construct_object(key_node, deep=True)  # type: ignore[no-untyped-call]
        if not isinstance(key, str):
            raise ConstructorError(
                None,
                None,
                f"field names are text; quote {shown(key)} if it is meant as a name",
                key_node.start_mark,
            )
        if key in seen:
            raise ConstructorError(None, None, f"duplicate key {shown(key)}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=True)


def _int(loader: _StrictLoader, node: ScalarNode) -> int:
    if len(str(node.value)) > MAX_NUMBER_CHARS:
        raise ConstructorError(
            None, None, f"a number longer than {MAX_NUMBER_CHARS} characters", node.start_mark
        )
    return loader.construct_yaml_int(node)  # type: ignore[no-untyped-call,no-any-return]


def _str(loader: _StrictLoader, node: ScalarNode) -> str:
    value = loader.construct_scalar(node)  # type: ignore[no-untyped-call]
    assert isinstance(value, str)
    if has_lone_surrogate(value):
        raise ConstructorError(
            None, None, "a text holds a lone surrogate escape (such as \\ud800)", node.start_mark
        )
    return value


def _timestamp_as_text(loader: _StrictLoader, node: ScalarNode) -> str:
    # `2026-11-30` is a date to YAML 1.1; no spec field is a date, so keep what was written.
    return _str(loader, node)


def _refused_tag(loader: _StrictLoader, node: Node) -> Any:
    raise ConstructorError(
        None,
        None,
        f"the YAML tag {shown(node.tag, 40)} is not accepted; write plain text, numbers, "
        "lists and mappings",
        node.start_mark,
    )


_TAG = "tag:yaml.org,2002:"
_StrictLoader.add_constructor(_TAG + "map", _mapping)
_StrictLoader.add_constructor(_TAG + "int", _int)
_StrictLoader.add_constructor(_TAG + "str", _str)
_StrictLoader.add_constructor(_TAG + "timestamp", _timestamp_as_text)
for _name in ("set", "omap", "pairs", "binary"):
    _StrictLoader.add_constructor(_TAG + _name, _refused_tag)
_StrictLoader.add_constructor(None, _refused_tag)  # any tag not listed above


def load_yaml_mapping(text: str) -> dict[str, Any]:
    """Parse a YAML document that must be a mapping; SpecSyntaxError otherwise."""
    if "\x00" in text:
        raise SpecSyntaxError("the body contains a NUL byte")
    if not text.strip():
        raise SpecSyntaxError("the body is empty; send a YAML mapping such as 'model_id: smol'")
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        raise SpecSyntaxError(f"the body is not valid YAML: {_yaml_message(e)}") from None
    except RecursionError:  # a backstop: MAX_DEPTH stops nesting well before this
        raise SpecSyntaxError(f"the spec is nested deeper than {MAX_DEPTH} levels") from None
    if not isinstance(data, dict):
        kind = "empty" if data is None else type(data).__name__
        raise SpecSyntaxError(f"the top level must be a mapping of fields, not {kind}")
    return data


def _yaml_message(e: yaml.YAMLError) -> str:
    """The parser's reason and where, without its echo of the text."""
    if isinstance(e, yaml.MarkedYAMLError) and e.problem:
        mark = e.problem_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        message = f"{e.problem}{where}"
    else:
        message = str(e)
    message = printable(message)
    return message if len(message) <= _MESSAGE_LIMIT else message[: _MESSAGE_LIMIT - 3] + "..."


_BOUND_WORDS = {
    "greater_than_equal": "at least",
    "greater_than": "more than",
    "less_than_equal": "at most",
    "less_than": "less than",
}


def _model_at(model: type[BaseModel], loc: Sequence[object]) -> type[BaseModel]:
    """The (nested) model whose field `loc` leads into: `autoscaling.x` is Autoscaling's."""
    for part in loc:
        info = model.model_fields.get(part) if isinstance(part, str) else None
        if info is None:
            return model
        nested = [
            t
            for t in (info.annotation, *typing.get_args(info.annotation))
            if isinstance(t, type) and issubclass(t, BaseModel)
        ]
        if not nested:
            return model
        model = nested[0]
    return model


def pydantic_errors(e: ValidationError, model: type[BaseModel]) -> list[FieldError]:
    """Each pydantic error as a FieldError whose message says what to write instead."""
    out = []
    for err in e.errors(include_url=False):
        field = field_name(err["loc"])
        kind = err["type"]
        given = shown(err.get("input"))
        if kind == "extra_forbidden":
            msg = "unknown field; allowed: " + ", ".join(
                _model_at(model, err["loc"][:-1]).model_fields
            )
        elif kind == "missing":
            msg = "is required"
        elif kind in ("int_type", "int_parsing", "int_from_float"):
            msg = f"must be a whole number, got {given}"
        elif kind == "string_type":
            msg = f"must be a string, got {given}"
        elif kind == "bool_type":
            msg = f"must be true or false, got {given}"
        elif kind in ("float_type", "float_parsing"):
            msg = f"must be a number, got {given}"
        elif kind == "finite_number":
            msg = "must be a finite number"
        elif kind in _BOUND_WORDS:
            bound = next(iter((err.get("ctx") or {}).values()), "")
            msg = f"must be {_BOUND_WORDS[kind]} {bound}, got {given}"
        elif kind in ("dict_type", "model_type", "model_attributes_type"):
            msg = f"must be a mapping of fields, got {given}"
        elif kind == "list_type":
            msg = f"must be a list, got {given}"
        elif kind == "literal_error":
            expected = (err.get("ctx") or {}).get("expected", "")
            msg = f"must be one of {expected}, got {given}"
        else:
            msg = str(err["msg"]).removeprefix("Value error, ")
            if len(msg) > _MESSAGE_LIMIT:
                msg = msg[: _MESSAGE_LIMIT - 3] + "..."
        out.append(FieldError(field, msg))
    return out
