"""A small JSON-schema validator for model output: pure, no dependencies, no I/O.

Structured LLM columns check each answer against the column's schema and re-ask the model with
the problems found, so what matters here is a *useful list of problems*, each with the JSON
path where it occurred::

    >>> schema = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 1}},
    ...           "required": ["n", "name"], "additionalProperties": False}
    >>> validate({"n": 0, "extra": True}, schema)
    ["$: missing required property 'name'", '$.n: 0 is less than the minimum 1',
     "$: unexpected property 'extra'; the allowed properties are 'n'"]
    >>> validate({"n": 3, "name": "x"}, {"properties": {"n": {"type": "integer"}}})
    []

Supported keywords (the subset JSON-schema generators such as pydantic emit, and structured
output APIs accept):

* ``type`` (a name or a list of names; ``integer`` accepts ``3`` and ``3.0``; ``true`` and
  ``false`` are booleans, never numbers), boolean schemas ``true`` / ``false``;
* objects: ``properties``, ``required``, ``additionalProperties`` (``false`` or a schema);
* ``enum``, ``const`` (compared as JSON values: ``1 == 1.0`` but ``true != 1``);
* arrays: ``items`` (a schema, or a list for the draft-4 tuple form), ``prefixItems``,
  ``minItems``, ``maxItems``, ``uniqueItems``;
* numbers: ``minimum``, ``maximum``, ``exclusiveMinimum``, ``exclusiveMaximum`` (numbers, or
  draft-4 booleans);
* strings: ``minLength``, ``maxLength`` (counted in code points);
* ``anyOf``, ``oneOf``, ``allOf``;
* ``$ref`` to ``#``, ``#/$defs/...`` and ``#/definitions/...`` (local references only).

Unknown keywords (``format``, ``pattern``, ``description``, ``title``...) are ignored, as the
JSON-schema specification allows. An unresolvable ``$ref`` is reported as a problem rather than
raised, so a broken schema makes every answer fail with a message that says why.

Paths look like ``$``, ``$.answer``, ``$.items[2].name``, ``$["key with spaces"]``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

__all__ = ["SchemaErrors", "json_equal", "validate"]

SchemaErrors = list[str]
"""What :func:`validate` returns: one message per problem, each starting with a JSON path."""

_MAX_DEPTH: Final = 128
"""Nested validations (instance depth + ``$ref`` hops) before giving up on a runaway schema."""

_MAX_SHOWN: Final = 60
"""Characters of an offending value shown in a message."""

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

_TYPE_CHECKS: Final[Mapping[str, Callable[[Any], bool]]] = {
    "null": lambda v: v is None,
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: _is_number(v) and float(v).is_integer(),
    "number": lambda v: _is_number(v),
    "string": lambda v: isinstance(v, str),
    "array": lambda v: isinstance(v, list | tuple),
    "object": lambda v: isinstance(v, Mapping),
}


def validate(instance: Any, schema: Any) -> SchemaErrors:
    """Check ``instance`` (parsed JSON) against ``schema``.

    Args:
      instance: a JSON value as ``json.loads`` returns it (dicts, lists, str, int, float,
        bool, None).
      schema: a JSON schema: a mapping, or ``True`` / ``False``.

    Returns:
      The problems found, each prefixed with the JSON path of the offending value; an empty
      list when ``instance`` is valid.
    """
    root = schema if isinstance(schema, Mapping) else {}
    return _Validator(root).check(instance, schema, "$", 0)


def json_equal(a: Any, b: Any) -> bool:
    """Equality of JSON values: numbers by value (``1 == 1.0``), booleans never equal numbers."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if _is_number(a) and _is_number(b):
        return bool(a == b)
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and a == b
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    return a is None and b is None


def _is_number(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and (isinstance(value, int) or math.isfinite(value))
    )


def _show(value: Any) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def _json_type(value: Any) -> str:
    """The JSON type name of a value, for messages."""
    for name in ("null", "boolean", "integer", "number", "string", "array", "object"):
        if _TYPE_CHECKS[name](value):
            return name
    return type(value).__name__


def _child(path: str, key: str) -> str:
    return f"{path}.{key}" if _IDENTIFIER.match(key) else f"{path}[{json.dumps(key)}]"


class _Validator:
    """One validation run; ``root`` anchors ``$ref`` lookups."""

    def __init__(self, root: Mapping[str, Any]) -> None:
        self._root = root

    def check(self, value: Any, schema: Any, path: str, depth: int) -> SchemaErrors:
        if schema is True:
            return []
        if schema is False:
            return [f"{path}: no value is allowed here (the schema is false)"]
        if not isinstance(schema, Mapping):
            return [f"{path}: the schema is not an object or a boolean: {_show(schema)}"]
        if depth > _MAX_DEPTH:
            return [f"{path}: the schema nests or refers to itself too deeply to check"]
        if "$ref" in schema:
            ref_errors = self._ref(value, schema["$ref"], path, depth)
            if ref_errors:
                return ref_errors
        errors = self._type(value, schema, path)
        if errors:  # the other keywords would only repeat the type mismatch
            return errors
        for check in (self._enum_const, self._combinators, self._number, self._string):
            errors.extend(check(value, schema, path, depth))
        if isinstance(value, Mapping):
            errors.extend(self._object(value, schema, path, depth))
        elif isinstance(value, list | tuple):
            errors.extend(self._array(value, schema, path, depth))
        return errors

    # -- references ---------------------------------------------------------------------------

    def _ref(self, value: Any, ref: Any, path: str, depth: int) -> SchemaErrors:
        target = self._resolve(ref)
        if target is None:
            return [
                f"{path}: the schema's $ref {_show(ref)} does not point into this schema's "
                f"$defs or definitions"
            ]
        return self.check(value, target, path, depth + 1)

    def _resolve(self, ref: Any) -> Any:
        if not isinstance(ref, str) or not ref.startswith("#"):
            return None
        node: Any = self._root
        for part in filter(None, ref[1:].split("/")):
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(node, Mapping) or part not in node:
                return None
            node = node[part]
        return node if isinstance(node, Mapping | bool) else None

    # -- keywords for any value ---------------------------------------------------------------

    def _type(self, value: Any, schema: Mapping[str, Any], path: str) -> SchemaErrors:
        declared = schema.get("type")
        if declared is None:
            return []
        if isinstance(declared, str):
            names = [declared]
        elif isinstance(declared, list):
            names = [n for n in declared if isinstance(n, str)]
        else:
            return []
        known = [n for n in names if n in _TYPE_CHECKS]
        if not known or any(_TYPE_CHECKS[n](value) for n in known):
            return []
        expected = " or ".join(known)
        return [f"{path}: expected {expected}, got {_json_type(value)} {_show(value)}"]

    def _enum_const(
        self, value: Any, schema: Mapping[str, Any], path: str, depth: int
    ) -> SchemaErrors:
        errors: SchemaErrors = []
        if "const" in schema and not json_equal(value, schema["const"]):
            errors.append(f"{path}: expected {_show(schema['const'])}, got {_show(value)}")
        enum = schema.get("enum")
        if isinstance(enum, list) and not any(json_equal(value, option) for option in enum):
            options = ", ".join(_show(option) for option in enum)
            errors.append(f"{path}: {_show(value)} is not one of {options}")
        return errors

    def _combinators(
        self, value: Any, schema: Mapping[str, Any], path: str, depth: int
    ) -> SchemaErrors:
        errors: SchemaErrors = []
        for branch in _branches(schema, "allOf"):
            errors.extend(self.check(value, branch, path, depth + 1))
        any_of = _branches(schema, "anyOf")
        if any_of:
            results = [self.check(value, branch, path, depth + 1) for branch in any_of]
            if all(results):
                errors.append(_no_branch(path, "anyOf", results))
        one_of = _branches(schema, "oneOf")
        if one_of:
            results = [self.check(value, branch, path, depth + 1) for branch in one_of]
            matches = sum(not r for r in results)
            if matches == 0:
                errors.append(_no_branch(path, "oneOf", results))
            elif matches > 1:
                errors.append(f"{path}: matches {matches} of the oneOf choices; it must match one")
        return errors

    # -- numbers and strings ------------------------------------------------------------------

    def _number(self, value: Any, schema: Mapping[str, Any], path: str, depth: int) -> SchemaErrors:
        if not _is_number(value):
            return []
        errors: SchemaErrors = []
        low, high = schema.get("minimum"), schema.get("maximum")
        ex_low, ex_high = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
        if ex_low is True:  # draft 4: a flag on minimum
            ex_low, low = low, None
        if ex_high is True:
            ex_high, high = high, None
        if _is_number(low) and value < low:
            errors.append(f"{path}: {_show(value)} is less than the minimum {_show(low)}")
        if _is_number(high) and value > high:
            errors.append(f"{path}: {_show(value)} is greater than the maximum {_show(high)}")
        if _is_number(ex_low) and value <= ex_low:
            errors.append(f"{path}: {_show(value)} must be greater than {_show(ex_low)}")
        if _is_number(ex_high) and value >= ex_high:
            errors.append(f"{path}: {_show(value)} must be less than {_show(ex_high)}")
        return errors

    def _string(self, value: Any, schema: Mapping[str, Any], path: str, depth: int) -> SchemaErrors:
        if not isinstance(value, str):
            return []
        errors: SchemaErrors = []
        low, high = _limit(schema, "minLength"), _limit(schema, "maxLength")
        if low is not None and len(value) < low:
            errors.append(f"{path}: has {len(value)} characters; at least {low} are required")
        if high is not None and len(value) > high:
            errors.append(f"{path}: has {len(value)} characters; at most {high} are allowed")
        return errors

    # -- containers ---------------------------------------------------------------------------

    def _object(
        self, value: Mapping[str, Any], schema: Mapping[str, Any], path: str, depth: int
    ) -> SchemaErrors:
        errors: SchemaErrors = []
        properties = schema.get("properties")
        properties = properties if isinstance(properties, Mapping) else {}
        for name in schema.get("required") or ():
            if isinstance(name, str) and name not in value:
                errors.append(f"{path}: missing required property {name!r}")
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in properties:
                errors.extend(self.check(item, properties[key], _child(path, key), depth + 1))
            elif extra is False:
                allowed = ", ".join(repr(p) for p in properties) or "none"
                errors.append(
                    f"{path}: unexpected property {key!r}; the allowed properties are {allowed}"
                )
            else:
                errors.extend(self.check(item, extra, _child(path, key), depth + 1))
        return errors

    def _array(
        self, value: Sequence[Any], schema: Mapping[str, Any], path: str, depth: int
    ) -> SchemaErrors:
        errors: SchemaErrors = []
        low, high = _limit(schema, "minItems"), _limit(schema, "maxItems")
        if low is not None and len(value) < low:
            errors.append(f"{path}: has {len(value)} items; at least {low} are required")
        if high is not None and len(value) > high:
            errors.append(f"{path}: has {len(value)} items; at most {high} are allowed")
        prefix, rest = _item_schemas(schema)
        for index, item in enumerate(value):
            item_schema = prefix[index] if index < len(prefix) else rest
            if item_schema is False and index >= len(prefix):
                errors.append(f"{path}: has {len(value)} items; at most {len(prefix)} are allowed")
                break
            errors.extend(self.check(item, item_schema, f"{path}[{index}]", depth + 1))
        if schema.get("uniqueItems") is True:
            errors.extend(_duplicates(value, path))
        return errors


def _limit(schema: Mapping[str, Any], key: str) -> int | float | None:
    """A numeric keyword's value, or None when absent or not a number."""
    value = schema.get(key)
    return value if _is_number(value) else None


def _branches(schema: Mapping[str, Any], key: str) -> list[Any]:
    branches = schema.get(key)
    return list(branches) if isinstance(branches, list) else []


def _no_branch(path: str, key: str, results: Sequence[SchemaErrors]) -> str:
    """One message for an ``anyOf``/``oneOf`` that no branch accepts, with each first problem."""
    firsts = "; ".join(f"choice {i + 1}: {r[0]}" for i, r in enumerate(results))
    return f"{path}: matches none of the {key} choices ({firsts})"


def _item_schemas(schema: Mapping[str, Any]) -> tuple[list[Any], Any]:
    """(positional item schemas, schema of the remaining items), for draft 4 and 2020-12."""
    items = schema.get("items", True)
    if isinstance(items, list):
        return items, schema.get("additionalItems", True)
    prefix = schema.get("prefixItems")
    return (list(prefix) if isinstance(prefix, list) else []), items


def _duplicates(value: Sequence[Any], path: str) -> SchemaErrors:
    for i, item in enumerate(value):
        for j in range(i):
            if json_equal(item, value[j]):
                return [f"{path}: items {j} and {i} are equal; the items must be unique"]
    return []
