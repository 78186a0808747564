"""Scenario errors in the file's own terms: msgspec's and tomllib's messages, rewritten.

msgspec says what failed at which ``$.path``; :func:`explain` turns that into the
dotted field path of the TOML file and what the field expects, derived from the struct
types themselves (so a new field needs no new message), with the offending value as
:func:`show` writes it (as TOML would).
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping
from datetime import date, datetime, time
from enum import Enum
from typing import Any

import msgspec
import msgspec.inspect as mi

__all__ = ["explain", "show", "toml_message"]

_LOCATION = re.compile(r"^(?P<what>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<name>[^`]*)`$")
_MISSING = re.compile(r"^Object missing required field `(?P<name>[^`]*)`$")
_SEGMENT = re.compile(r"\.(?P<name>[^.\[]+)|\[(?P<index>\d+|\.\.\.)\]")
_TOML_AT = re.compile(
    r"^(?P<what>.*) \(at (?:line (?P<line>\d+), column (?P<col>\d+)|end of document)\)$"
)


def toml_message(message: str, text: str, source: str) -> str:
    match = _TOML_AT.match(message)
    if match is None:
        return f"{source}: invalid TOML: {message}"
    if match["line"] is None:
        lines = text.splitlines() or [""]
        line, col = len(lines), len(lines[-1]) + 1
    else:
        line, col = int(match["line"]), int(match["col"])
    return f"{source}:{line}:{col}: invalid TOML: {match['what']}"


def explain(message: str, raw: Mapping[str, Any], document: type) -> tuple[str, str]:
    """Turn a msgspec ValidationError message into (field path, problem)."""
    located = _LOCATION.match(message)
    assert located is not None  # the pattern matches any string
    what, path = located["what"], located["path"] or ""
    node: Any = mi.type_info(document)
    value: Any = raw
    names: list[str] = []
    for segment in _SEGMENT.finditer(path):
        node = _unwrap(node)
        if segment["name"] is not None:
            key = segment["name"]
            names.append(f".{key}" if names else key)
            node = _field_type(node, key)
            value = value.get(key) if isinstance(value, Mapping) else None
        elif segment["index"] == "...":
            # msgspec doesn't say which key of a table held the bad value: find it.
            assert isinstance(node, mi.DictType) and isinstance(value, Mapping)
            node = node.value_type
            key, value = next(((k, v) for k, v in value.items() if not _fits(v, node)), ("?", None))
            names.append(f".{key}")
        else:
            index = int(segment["index"])
            names.append(f"[{index}]")
            node = _item_type(node, index)
            value = value[index] if isinstance(value, list) and index < len(value) else None
    field = "".join(names)
    node = _unwrap(node, keep_metadata=True)

    if (unknown := _UNKNOWN.match(what)) is not None:
        return _unknown_field(field, unknown["name"], node, value, document)
    if (missing := _MISSING.match(what)) is not None:
        name = missing["name"]
        child = _unwrap(_field_type(_unwrap(node), name), keep_metadata=True)
        full = f"{field}.{name}" if field else name
        struct = _unwrap(child)
        if isinstance(struct, mi.StructType) and not struct.array_like:
            needs = ", ".join(f.encode_name for f in struct.fields if f.required)
            return full, f"required table [{full}] is missing (it needs at least: {needs})"
        return full, f"required key is missing; expected {_describe(child)}"
    problem = f"expected {_describe(node)}, got {show(value)}"
    if isinstance(value, Mapping) and isinstance(node, mi.ListType | mi.VarTupleType):
        problem += f" (write [[{field}]] with double brackets for each entry)"
    return field or "(top level)", problem


def _unknown_field(field: str, name: str, node: Any, value: Any, document: type) -> tuple[str, str]:
    struct = _unwrap(node)
    fields = [f.encode_name for f in struct.fields] if isinstance(struct, mi.StructType) else []
    full = f"{field}.{name}" if field else name
    child = value.get(name) if isinstance(value, Mapping) else None
    kind = "table" if isinstance(child, Mapping) else "key"
    close = difflib.get_close_matches(name, fields, n=1)
    hint = f' (did you mean "{close[0]}"?)' if close else ""
    top_level = [f.encode_name for f in msgspec.structs.fields(document)]
    if field and name in top_level:
        # TOML puts every key after a [table] header into that table.
        hint = f" (keys after a [table] header belong to that table: move {name} above it)"
    header = re.sub(r"\[\d+\]", "", field)
    where = (
        (f"[[{header}]]" if field.endswith("]") else f"[{header}]") if field else "the top level"
    )
    return full, f"unknown {kind}{hint}; {where} takes: {', '.join(fields)}"


def _unwrap(node: Any, *, keep_metadata: bool = False) -> Any:
    while isinstance(node, mi.Metadata) and not (
        keep_metadata and node.extra and "expected" in node.extra
    ):
        node = node.type
    return node


def _field_type(node: Any, name: str) -> Any:
    if isinstance(node, mi.StructType):
        for f in node.fields:
            if f.encode_name == name:
                return f.type
    return mi.AnyType()


def _item_type(node: Any, index: int) -> Any:
    if isinstance(node, mi.UnionType):  # e.g. csms.operations.target: the array member
        arrays = [t for t in node.types if isinstance(_unwrap(t), mi.ListType | mi.VarTupleType)]
        node = _unwrap(arrays[0]) if arrays else node
    if isinstance(node, mi.ListType | mi.VarTupleType):
        return node.item_type
    if isinstance(node, mi.StructType) and node.array_like and index < len(node.fields):
        return node.fields[index].type
    if isinstance(node, mi.TupleType) and index < len(node.item_types):
        return node.item_types[index]
    return mi.AnyType()


def _fits(value: Any, node: Any) -> bool:
    """Whether a scalar ``value`` converts to the msgspec type ``node`` (dict values)."""
    node = _unwrap(node)
    if isinstance(node, mi.UnionType):
        return any(_fits(value, t) for t in node.types)
    if isinstance(node, mi.BoolType):
        return isinstance(value, bool)
    if isinstance(node, mi.IntType):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(node, mi.FloatType):
        return isinstance(value, int | float) and not isinstance(value, bool)
    if isinstance(node, mi.StrType):
        return isinstance(value, str)
    return True


def _describe(node: Any) -> str:
    """What a value of msgspec type ``node`` must look like, in the file's terms."""
    if isinstance(node, mi.Metadata):
        if node.extra and "expected" in node.extra:
            return str(node.extra["expected"])
        return _describe(node.type)
    if isinstance(node, mi.FloatType):
        return "a number" + _bounds(node)
    if isinstance(node, mi.IntType):
        return "an integer" + _bounds(node)
    if isinstance(node, mi.BoolType):
        return "a boolean (true or false)"
    if isinstance(node, mi.StrType):
        return _describe_str(node)
    if isinstance(node, mi.LiteralType):
        return "one of " + ", ".join(show(v) for v in node.values)
    if isinstance(node, mi.EnumType):
        return "one of " + ", ".join(show(m.value) for m in node.cls)
    if isinstance(node, mi.UnionType):
        parts = [_describe(t) for t in node.types if not isinstance(t, mi.NoneType)]
        return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " or " + parts[-1]
    if isinstance(node, mi.StructType):
        if node.array_like:
            item = _unwrap(node.fields[0].type)
            bounds = _bounds(item) if isinstance(item, mi.FloatType) else ""
            return f"a [min, max] pair of numbers{bounds}"
        return "a table"
    if isinstance(node, mi.ListType | mi.VarTupleType):
        item = _unwrap(node.item_type)
        items = (
            "tables"
            if isinstance(item, mi.StructType)
            else "strings"
            if isinstance(item, mi.StrType)
            else None
        )
        of = f"of {items}" if items else f"whose items are each {_describe(item)}"
        return ("a non-empty array " if node.min_length else "an array ") + of
    if isinstance(node, mi.DictType):
        return f"a table whose values are each {_describe(node.value_type)}"
    return "a valid value"


def _bounds(node: mi.FloatType | mi.IntType) -> str:
    low = f" >= {_num(node.ge)}" if node.ge is not None else None
    low = f" > {_num(node.gt)}" if node.gt is not None else low
    high = f" <= {_num(node.le)}" if node.le is not None else None
    high = f" < {_num(node.lt)}" if node.lt is not None else high
    if node.ge is not None and node.le is not None:
        return f" from {_num(node.ge)} to {_num(node.le)}"
    return (low or "") + (" and" if low and high else "") + (high or "")


def _describe_str(node: mi.StrType) -> str:
    low, high = node.min_length or 0, node.max_length
    if high is not None:
        return (
            f"a string of {low} to {high} characters"
            if low
            else (f"a string of at most {high} characters")
        )
    return "a non-empty string" if low else "a string"


def _num(value: float) -> str:
    return f"{value:g}"


def show(value: Any) -> str:
    """A value as it would be written in TOML, shortened if long."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Enum):
        return show(value.value)
    if isinstance(value, str):
        text = value if len(value) <= 60 else value[:57] + "..."
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, float):
        return "inf" if value == math.inf else "-inf" if value == -math.inf else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, msgspec.Struct) and value.__struct_config__.array_like:  # a Range
        return "[" + ", ".join(show(v) for v in msgspec.structs.astuple(value)) + "]"
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list | tuple):
        text = "[" + ", ".join(show(v) for v in value) + "]"
        return text if len(text) <= 60 else f"an array of {len(value)} items"
    return repr(value)
