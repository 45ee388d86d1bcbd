"""A fast yes for the common JSON schemas: a plain-Python check that an answer is valid.

``jsonschema`` walks a schema keyword by keyword through generic machinery; for the small
schemas LLM columns use (objects of strings, integers, enums, arrays of them) that walk was
the largest single cost of a cell replayed from the response cache (~18 % of a warm run).
:func:`compile_fast_check` turns such a schema, once per column, into nested closures that
answer one question: *is this instance certainly valid?*

Soundness is the whole contract: ``True`` only when ``jsonschema`` would report no error;
``False`` means "invalid, or not sure" and the caller runs ``jsonschema`` (which then also
words the problems for the re-ask). So the check may be incomplete, never wrong:

* a schema using any keyword outside :data:`_KEYWORDS` (``$ref``, ``pattern``, ``format``,
  combinators, ``prefixItems``...), or of another draft than 7, 2019-09 or 2020-12, gets no
  fast check (``None``): every answer goes through ``jsonschema`` as before;
* types follow ``jsonschema``'s checker, conservatively: ``integer`` accepts ``int`` (not
  ``bool``) and says "not sure" for an integral ``float``; ``enum``/``const`` are checked
  fast only when every allowed value is a string, or every one an ``int``;
* each keyword applies only to the instance type it constrains (``required`` ignores a
  non-object, ``minimum`` a non-number), as in the specification.

Pure, no I/O; tested against ``jsonschema`` on the same instances (``tests/test_fastschema.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

__all__ = ["FastCheck", "compile_fast_check"]

FastCheck = Callable[[Any], bool]
"""``True``: the instance is certainly valid; ``False``: invalid or not sure."""

#: Keywords without effect on validity (annotations), accepted and ignored.
_ANNOTATIONS: Final = frozenset(
    {
        "title",
        "description",
        "default",
        "examples",
        "$comment",
        "deprecated",
        "readOnly",
        "writeOnly",
    }
)

#: Keywords the fast check enforces.
_ENFORCED: Final = frozenset(
    {
        "type",
        "enum",
        "const",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "minItems",
        "maxItems",
        "minLength",
        "maxLength",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "minProperties",
        "maxProperties",
    }
)

_KEYWORDS: Final = _ANNOTATIONS | _ENFORCED

#: Drafts whose meaning of the keywords above is the one implemented here (draft 4 has
#: boolean ``exclusiveMinimum``; draft 7 and 2019-09 also allow a list for ``items``, which
#: is declined below).
DRAFTS: Final = frozenset(
    {
        "https://json-schema.org/draft/2020-12/schema",
        "https://json-schema.org/draft/2019-09/schema",
        "http://json-schema.org/draft-07/schema",
    }
)


class _Unsupported(Exception):
    """The schema uses something the fast check does not implement."""


def compile_fast_check(schema: Any, draft: str) -> FastCheck | None:
    """The fast check of ``schema`` (already known to be a valid schema of ``draft``, the
    ``$id`` of its meta-schema without a trailing ``#``), or ``None`` when the schema uses
    anything the fast check does not implement."""
    if draft.rstrip("#") not in DRAFTS:
        return None
    try:
        return _compile(schema, root=True)
    except _Unsupported:
        return None


def _number(value: Any) -> bool:
    return type(value) is int or type(value) is float


def _compile(schema: Any, *, root: bool = False) -> FastCheck:
    if schema is True:
        return _always
    if schema is False or not isinstance(schema, Mapping):
        raise _Unsupported  # False: never valid, let jsonschema say so
    keys = set(schema)
    if root:
        keys.discard("$schema")
    if not keys <= _KEYWORDS:
        raise _Unsupported
    checks: list[FastCheck] = []
    if "type" in schema:
        checks.append(_type_check(schema["type"]))
    if "enum" in schema:
        checks.append(_member_check(schema["enum"]))
    if "const" in schema:
        checks.append(_member_check([schema["const"]]))
    checks.extend(_object_checks(schema))
    checks.extend(_array_checks(schema))
    checks.extend(_scalar_checks(schema))
    if not checks:
        return _always
    if len(checks) == 1:
        return checks[0]
    return _all_of(tuple(checks))


def _all_of(parts: tuple[FastCheck, ...]) -> FastCheck:
    """Every one of ``parts`` (two or more), in order, stopping at the first that fails. Two
    and three (a type with an enum, an object's type and its properties) are spelled out: an
    ``all()`` over a generator expression, a frame and a generator a call, was most of a small
    structured value's check."""
    if len(parts) == 2:
        first, second = parts
        return lambda value: first(value) and second(value)
    if len(parts) == 3:
        first, second, third = parts
        return lambda value: first(value) and second(value) and third(value)

    def every(value: Any) -> bool:
        return all(check(value) for check in parts)

    return every


def _always(value: Any) -> bool:
    return True


_TYPE_TESTS: Final[Mapping[str, FastCheck]] = {
    "string": lambda v: type(v) is str,
    "integer": lambda v: type(v) is int,  # an integral float: "not sure"
    "number": _number,
    "boolean": lambda v: type(v) is bool,
    "null": lambda v: v is None,
    "array": lambda v: type(v) is list,
    "object": lambda v: type(v) is dict,
}


def _type_check(spec: Any) -> FastCheck:
    names = [spec] if isinstance(spec, str) else spec
    if not isinstance(names, list) or not names:
        raise _Unsupported
    try:
        tests = tuple(_TYPE_TESTS[name] for name in names)
    except (KeyError, TypeError):
        raise _Unsupported from None
    if len(tests) == 1:
        return tests[0]
    return lambda v: any(test(v) for test in tests)


def _member_check(allowed: Any) -> FastCheck:
    """``enum``/``const``: fast only for all-string or all-int (not bool) choices, where
    Python's ``==`` on an instance of the same exact type is ``jsonschema``'s equality."""
    if not isinstance(allowed, list) or not allowed:
        raise _Unsupported
    if all(type(a) is str for a in allowed):
        strings = frozenset(allowed)
        return lambda v: type(v) is str and v in strings
    if all(type(a) is int for a in allowed):
        ints = frozenset(allowed)
        return lambda v: type(v) is int and v in ints
    raise _Unsupported


def _count(schema: Mapping[str, Any], keyword: str) -> int | None:
    value = schema.get(keyword)
    if value is None:
        return None
    if type(value) is not int or value < 0:
        raise _Unsupported
    return value


_OBJECT_KEYWORDS: Final = (
    "properties",
    "required",
    "additionalProperties",
    "minProperties",
    "maxProperties",
)


def _object_checks(schema: Mapping[str, Any]) -> list[FastCheck]:
    if not any(k in schema for k in _OBJECT_KEYWORDS):
        return []
    properties_spec = schema.get("properties", {})
    if not isinstance(properties_spec, Mapping):
        raise _Unsupported
    properties = {name: _compile(sub) for name, sub in properties_spec.items()}
    required = schema.get("required", [])
    if not isinstance(required, list) or not all(type(r) is str for r in required):
        raise _Unsupported
    required_names = tuple(required)
    extra_spec = schema.get("additionalProperties", True)
    extra: FastCheck | None
    closed = extra_spec is False
    extra = None if closed or extra_spec is True else _compile(extra_spec)
    least, most = _count(schema, "minProperties"), _count(schema, "maxProperties")

    def check(value: Any) -> bool:
        if type(value) is not dict:
            return True  # these keywords constrain objects only (a "type" says the rest)
        for name in required_names:
            if name not in value:
                return False
        for name, item in value.items():
            sub = properties.get(name)
            if sub is not None:
                if not sub(item):
                    return False
            elif closed or (extra is not None and not extra(item)):
                return False
        if least is not None and len(value) < least:
            return False
        return most is None or len(value) <= most

    return [check]


def _array_checks(schema: Mapping[str, Any]) -> list[FastCheck]:
    if not any(k in schema for k in ("items", "minItems", "maxItems")):
        return []
    items_spec = schema.get("items", True)
    if isinstance(items_spec, list):
        raise _Unsupported  # draft 7's tuple form
    items = None if items_spec is True else _compile(items_spec)
    least, most = _count(schema, "minItems"), _count(schema, "maxItems")

    def check(value: Any) -> bool:
        if type(value) is not list:
            return True
        if least is not None and len(value) < least:
            return False
        if most is not None and len(value) > most:
            return False
        if items is not None:
            for item in value:
                if not items(item):
                    return False
        return True

    return [check]


def _scalar_checks(schema: Mapping[str, Any]) -> list[FastCheck]:
    checks: list[FastCheck] = []
    shortest, longest = _count(schema, "minLength"), _count(schema, "maxLength")
    if shortest is not None or longest is not None:

        def length(value: Any) -> bool:
            if type(value) is not str:
                return True
            if shortest is not None and len(value) < shortest:
                return False
            return longest is None or len(value) <= longest

        checks.append(length)
    bounds = []
    for keyword in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        if keyword in schema:
            bound = schema[keyword]
            if not _number(bound):
                raise _Unsupported
            bounds.append((keyword, bound))
    if bounds:
        low = [b for k, b in bounds if k == "minimum"]
        high = [b for k, b in bounds if k == "maximum"]
        low_x = [b for k, b in bounds if k == "exclusiveMinimum"]
        high_x = [b for k, b in bounds if k == "exclusiveMaximum"]

        def within(value: Any) -> bool:
            if not _number(value):
                return True  # bounds constrain numbers only
            if value != value:  # NaN: let jsonschema decide
                return False
            return (
                all(value >= b for b in low)
                and all(value <= b for b in high)
                and all(value > b for b in low_x)
                and all(value < b for b in high_x)
            )

        checks.append(within)
    return checks
