"""JSON schema → Arrow type: how structured and judge columns are stored as nested columns.

A structured column's value is a parsed JSON document that matched its schema; stored as a
struct column, pandas, polars and duckdb read its fields directly
(``SELECT product.price FROM 'out/parquet-files/*.parquet'``). :func:`arrow_type_for_schema`
maps a schema to the Arrow type of such values, or to ``None`` when the schema does not map,
and the column falls back to JSON text (a ``string`` column, as before issue 14):

=================================================  ===========================================
schema                                             Arrow type
=================================================  ===========================================
``{"type": "object", "properties": {...}}``        ``struct`` of the properties, in order
``{"type": "array", "items": S}``                  ``list<S>``
``{"enum": [...]}`` / ``{"const": ...}`` of         ``string`` (``int64``, ``float64``,
strings (of integers, numbers, booleans)           ``bool``)
``string`` / ``integer`` / ``number`` /            ``string`` / ``int64`` / ``float64`` /
``boolean``                                        ``bool``
``"type": [T, "null"]``, ``anyOf: [S, {null}]``    ``T`` / ``S``, nullable
``anyOf``/``oneOf`` whose branches map alike       that type
``{"$ref": "#/$defs/x"}``                          the type of ``x`` (local refs only)
=================================================  ===========================================

A struct field is non-nullable when the property is ``required`` and its schema does not allow
``null``; everything else is nullable (the column itself always is: a skipped cell is null).

**What falls back to JSON text** (the whole column): ``oneOf``/``anyOf`` over different
types, ``allOf``, free-form objects (no ``properties``, or ``additionalProperties`` /
``patternProperties`` given explicitly), arrays without ``items`` or with ``prefixItems``,
``type`` lists of two non-null types (``["integer", "number"]`` is ``float64``), enums mixing
kinds, recursive ``$ref``\\ s, the boolean schemas ``true``/``{}``. An object with ``properties``
and no ``additionalProperties`` maps to a struct of its declared properties: keys a model adds
beyond them are not stored (declare ``additionalProperties: false`` to forbid them, or
``true`` to keep the column as JSON text).

Pure: no I/O; pyarrow is the only import beyond the standard library (hence ``_sink/``, not
``_core/``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import pyarrow as pa

__all__ = ["arrow_type_for_schema", "value_fits"]

_SCALARS: Final[Mapping[str, pa.DataType]] = {
    "string": pa.string(),
    "integer": pa.int64(),
    "number": pa.float64(),
    "boolean": pa.bool_(),
}

_MAX_DEPTH: Final = 64
"""Nesting (through ``$ref`` included) beyond which a schema counts as recursive."""


class _Unmappable(Exception):
    """The schema (or a part of it) has no Arrow type; the column stores JSON text."""


def arrow_type_for_schema(schema: Any) -> pa.DataType | None:
    """The Arrow type of values matching ``schema``, or ``None``: store them as JSON text.

    See the module docstring for the mapping. Never raises for a schema the config accepted.
    """
    try:
        data_type, _nullable = _map(schema, schema, 0)
    except (_Unmappable, RecursionError):
        return None
    return data_type


def value_fits(value: Any, data_type: pa.DataType) -> str | None:
    """``None`` when ``value`` converts to ``data_type``; else why not (an integer beyond
    int64, say), for the generator to re-ask rather than the sink to fail the row group.

    Values of the common shapes are checked in Python first (:func:`_surely_fits`: a tenth of
    the CPU of a one-value Arrow conversion, which a judge paid on every answer, on the path
    from an answer to the next request); anything else is converted by Arrow, as before.
    """
    if _surely_fits(value, data_type):
        return None
    try:
        pa.array([value], type=data_type)
    except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
        return f"the value cannot be stored as {data_type} ({exc})"
    return None


_STRING: Final = pa.string()
_INT64_TYPE: Final = pa.int64()
_FLOAT64: Final = pa.float64()
_BOOL: Final = pa.bool_()
_INT64: Final = range(-(2**63), 2**63)
_EXACT_FLOAT: Final = range(-(2**53), 2**53 + 1)


def _surely_fits(value: Any, data_type: pa.DataType) -> bool:
    """Whether ``value`` certainly converts to ``data_type``; ``False``: not sure (ask
    pyarrow). Exact types only (a ``bool`` is no ``int`` here); a struct value with a key
    beyond its fields, or without a non-nullable one, is "not sure". By the type's checker
    (:func:`_checker`)."""
    return _checker(data_type)(value, 0)


_Check = Callable[[Any, int], bool]
_CHECKERS_KEPT: Final = 256
_checkers: dict[int, tuple[pa.DataType, _Check]] = {}
"""A checker per Arrow type object, made once: comparing a value's type with an Arrow type (a
C call each) is done when the checker is made, not for every value of every answer. Keyed by
the type object's ``id`` (the object kept beside it, so the id cannot be reused while the entry
stands): hashing a ``pa.DataType`` costs ~5 µs, more than checking a judge's answer (~1.6 µs).
A generator keeps its column's type object for the run, so a run makes a handful."""


def _checker(data_type: pa.DataType) -> _Check:
    entry = _checkers.get(id(data_type))
    if entry is not None and entry[0] is data_type:
        return entry[1]
    if len(_checkers) >= _CHECKERS_KEPT:
        _checkers.clear()
    check = _make_checker(data_type)
    _checkers[id(data_type)] = (data_type, check)
    return check


def _make_checker(data_type: pa.DataType) -> _Check:
    """``check(value, depth)``: :func:`_surely_fits` for this type (``None`` fits every type;
    a list or dict nested deeper than ``_MAX_DEPTH`` is "not sure")."""
    if data_type == _STRING:

        def check(value: Any, depth: int) -> bool:
            # a lone surrogate cannot be encoded: Arrow refuses it
            if type(value) is str:
                return value.isascii() or _encodes(value)
            return value is None

    elif data_type == _INT64_TYPE:

        def check(value: Any, depth: int) -> bool:
            if type(value) is int:
                return value in _INT64
            return value is None

    elif data_type == _FLOAT64:

        def check(value: Any, depth: int) -> bool:
            kind = type(value)
            if kind is float:
                return True
            if kind is int:
                return value in _EXACT_FLOAT
            return value is None

    elif data_type == _BOOL:

        def check(value: Any, depth: int) -> bool:
            return type(value) is bool or value is None

    elif pa.types.is_list(data_type):
        item = _make_checker(data_type.value_type)

        def check(value: Any, depth: int) -> bool:
            if type(value) is not list:
                return value is None
            if depth > _MAX_DEPTH:
                return False
            return all(item(element, depth + 1) for element in value)

    elif pa.types.is_struct(data_type):
        fields = [(field.name, _make_checker(field.type), field.nullable) for field in data_type]
        size = len(fields)

        def check(value: Any, depth: int) -> bool:
            if type(value) is not dict:
                return value is None
            if depth > _MAX_DEPTH or len(value) > size:
                return False
            found = 0
            for name, field_check, nullable in fields:
                if name in value:
                    found += 1
                    if not field_check(value[name], depth + 1):
                        return False
                elif not nullable:
                    return False
            return found == len(value)

    else:

        def check(value: Any, depth: int) -> bool:
            return value is None

    return check


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _map(node: Any, root: Any, depth: int) -> tuple[pa.DataType, bool]:
    """(type, nullable) of one sub-schema."""
    if depth > _MAX_DEPTH or not isinstance(node, Mapping):
        raise _Unmappable
    if "$ref" in node:
        return _map(_resolve(root, node["$ref"]), root, depth + 1)
    if "allOf" in node or "not" in node or "if" in node:
        raise _Unmappable
    for key in ("anyOf", "oneOf"):
        if key in node:
            return _branches(node[key], root, depth)
    if "const" in node:
        return _literals([node["const"]])
    if "enum" in node:
        return _literals(node["enum"])
    declared = node.get("type")
    kinds = [declared] if isinstance(declared, str) else list(declared or ())
    nullable = "null" in kinds
    kinds = [kind for kind in kinds if kind != "null"]
    if set(kinds) == {"integer", "number"}:
        return pa.float64(), nullable
    if len(kinds) != 1:
        raise _Unmappable
    kind = kinds[0]
    if kind in _SCALARS:
        return _SCALARS[kind], nullable
    if kind == "object":
        return _struct(node, root, depth), nullable
    if kind == "array":
        return _list(node, root, depth), nullable
    raise _Unmappable


def _branches(branches: Any, root: Any, depth: int) -> tuple[pa.DataType, bool]:
    if not isinstance(branches, Sequence) or not branches:
        raise _Unmappable
    types: list[pa.DataType] = []
    nullable = False
    for branch in branches:
        if isinstance(branch, Mapping) and branch.get("type") == "null" and len(branch) == 1:
            nullable = True
            continue
        data_type, branch_nullable = _map(branch, root, depth + 1)
        types.append(data_type)
        nullable = nullable or branch_nullable
    if not types or any(t != types[0] for t in types):
        raise _Unmappable
    return types[0], nullable


def _literals(values: Any) -> tuple[pa.DataType, bool]:
    if not isinstance(values, Sequence) or isinstance(values, str):
        raise _Unmappable
    nullable = any(v is None for v in values)
    present = [v for v in values if v is not None]
    if not present:
        raise _Unmappable
    if all(isinstance(v, str) for v in present):
        return pa.string(), nullable
    if all(isinstance(v, bool) for v in present):
        return pa.bool_(), nullable
    if all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return pa.int64(), nullable
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in present):
        return pa.float64(), nullable
    raise _Unmappable


def _struct(node: Mapping[str, Any], root: Any, depth: int) -> pa.DataType:
    properties = node.get("properties")
    if not isinstance(properties, Mapping) or not properties:
        raise _Unmappable  # a free-form object
    if node.get("additionalProperties", False) is not False or "patternProperties" in node:
        raise _Unmappable  # explicitly open: keep every key, as JSON text
    required = set(node.get("required") or ())
    fields = []
    for name, sub in properties.items():
        data_type, nullable = _map(sub, root, depth + 1)
        fields.append(pa.field(str(name), data_type, nullable=nullable or name not in required))
    return pa.struct(fields)


def _list(node: Mapping[str, Any], root: Any, depth: int) -> pa.DataType:
    items = node.get("items")
    if "prefixItems" in node or not isinstance(items, Mapping):
        raise _Unmappable
    data_type, _nullable = _map(items, root, depth + 1)
    return pa.list_(data_type)


def _resolve(root: Any, ref: Any) -> Any:
    if not isinstance(ref, str) or not ref.startswith("#"):
        raise _Unmappable
    node = root
    for part in filter(None, ref[1:].split("/")):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, Mapping) or part not in node:
            raise _Unmappable
        node = node[part]
    return node
