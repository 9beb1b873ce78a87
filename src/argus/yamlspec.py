"""Strict YAML specs: the parser and the field errors every spec kind (serving, tasks) shares.

A safe YAML loader that also refuses duplicate keys; pydantic models with unknown
fields refused by name; each broken rule reported as `field: what to fix`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError


class SpecSyntaxError(ValueError):
    """The body is not a YAML mapping (HTTP 400)."""


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class SpecInvalid(ValueError):
    """One or more fields break a rule (HTTP 422)."""

    def __init__(self, errors: Iterable[FieldError]) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(str(e) for e in self.errors))


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping with the same key twice."""


def _no_duplicate_keys(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)  # type: ignore[no-untyped-call]
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=True)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicate_keys)


def load_yaml_mapping(text: str) -> dict[str, Any]:
    """Parse a YAML document that must be a mapping; SpecSyntaxError otherwise."""
    if "\x00" in text:
        raise SpecSyntaxError("the body contains a NUL byte")
    if not text.strip():
        raise SpecSyntaxError("the body is empty; send a YAML mapping such as 'model_id: smol'")
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        raise SpecSyntaxError(f"the body is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        kind = "empty" if data is None else type(data).__name__
        raise SpecSyntaxError(f"the top level must be a mapping of fields, not {kind}")
    bad_keys = [k for k in data if not isinstance(k, str)]
    if bad_keys:
        raise SpecSyntaxError(f"field names must be strings, got {bad_keys[0]!r}")
    return data


def pydantic_errors(e: ValidationError, model: type[BaseModel]) -> list[FieldError]:
    """Each pydantic error as a FieldError whose message says what to write instead."""
    out = []
    for err in e.errors():
        field = ".".join(str(p) for p in err["loc"]) or "(top level)"
        kind = err["type"]
        if kind == "extra_forbidden":
            msg = "unknown field; allowed: " + ", ".join(model.model_fields)
        elif kind == "missing":
            msg = "is required"
        elif kind in ("int_type", "int_parsing"):
            msg = f"must be a whole number, got {err['input']!r}"
        elif kind == "string_type":
            msg = f"must be a string, got {err['input']!r}"
        elif kind == "bool_type":
            msg = f"must be true or false, got {err['input']!r}"
        elif kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
            words = {
                "greater_than_equal": "at least",
                "greater_than": "more than",
                "less_than_equal": "at most",
                "less_than": "less than",
            }[kind]
            bound = next(iter((err.get("ctx") or {}).values()), "")
            msg = f"must be {words} {bound}, got {err['input']!r}"
        else:
            msg = err["msg"].removeprefix("Value error, ")
        out.append(FieldError(field, msg))
    return out
