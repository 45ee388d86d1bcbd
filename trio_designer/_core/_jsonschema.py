"""JSON Schema for structured columns, on the ``jsonschema`` library: pure, no I/O.

Four questions about a column's schema, each answered here:

* **Is the schema itself valid?** :func:`schema_problems` checks it against its meta-schema
  (Draft 2020-12 unless it says ``$schema``), and refuses ``$ref``\\ s that point outside the
  schema: a schema never makes the library fetch anything (``referencing`` retrieves nothing by
  default; a remote ``$ref`` would fail every answer instead).
* **Does an answer match it?** :class:`SchemaChecker` (or :func:`validate`) lists every
  problem, each with the JSON path where it occurred, for the re-ask::

      >>> validate({"n": 0, "extra": True}, {
      ...     "type": "object", "properties": {"n": {"type": "integer", "minimum": 1}},
      ...     "required": ["n", "name"], "additionalProperties": False})
      ['$.n: 0 is less than the minimum of 1', "$: 'name' is a required property",
       "$: Additional properties are not allowed ('extra' was unexpected)"]

  ``format`` (``email``, ``date``, ``ipv4``, ``uuid``...; formats whose checker needs an extra
  package are not checked) and ``pattern`` are enforced.
* **Would a provider's strict structured-output mode accept it?** :func:`strict_problems`
  (OpenAI's strict mode refuses objects without ``additionalProperties: false``, optional
  properties, and a list of keywords). A schema with problems is sent without ``strict``.
* **Does a template's ``{{ col.field.sub }}`` exist?** :func:`path_problem` follows the path
  through ``properties``, ``items``, local ``$ref`` and combinators.

Paths look like ``$``, ``$.answer``, ``$.items[2].name``, ``$['key with spaces']``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    import jsonschema

# jsonschema and referencing are imported on first use: with their dependencies they are
# ~0.15-0.25 s of every process's start-up (each shard's child process included), and a
# pipeline without a JSON schema never needs them.

from ._fastschema import compile_fast_check
from ._suggest import did_you_mean

__all__ = [
    "SchemaChecker",
    "SchemaErrors",
    "path_problem",
    "schema_problems",
    "strict_problems",
    "validate",
]

SchemaErrors = list[str]
"""What :func:`validate` returns: one message per problem, each starting with a JSON path."""

_MAX_SHOWN: Final = 200
"""Characters of one problem's message kept (the library quotes whole values)."""

_MAX_META_PROBLEMS: Final = 5
"""Meta-schema problems reported for one schema."""


def _validator_class(schema: Any) -> type[Any]:
    import jsonschema
    import jsonschema.validators

    cls: type[Any] = jsonschema.validators.validator_for(
        schema, default=jsonschema.Draft202012Validator
    )
    return cls


def _short(text: str) -> str:
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


class SchemaChecker:
    """Validates answers against one schema (build once per column, use for every answer).

    Args:
      schema: a JSON schema (a mapping or a boolean) that :func:`schema_problems` accepts.
    """

    def __init__(self, schema: Any) -> None:
        import referencing
        from referencing.exceptions import Unresolvable

        self._unresolvable = Unresolvable
        cls = _validator_class(schema)
        # An explicit empty registry: without one, jsonschema still fetches remote $refs over
        # HTTP (deprecated, but on by default), and a config must never make us fetch anything.
        self._validator = cls(
            schema, format_checker=cls.FORMAT_CHECKER, registry=referencing.Registry()
        )
        # A plain-Python "certainly valid" for the common schemas (``_fastschema``); any
        # other answer, or any schema it does not cover, goes through jsonschema.
        self._fast = compile_fast_check(schema, str(cls.META_SCHEMA.get("$id", "")))

    def errors(self, instance: Any) -> SchemaErrors:
        """Every problem of ``instance``, each ``"<json path>: <message>"``; empty if valid.

        A reference the schema cannot resolve is reported as a problem, not raised.
        """
        fast = self._fast
        if fast is not None and fast(instance):
            return []
        try:
            found = sorted(self._validator.iter_errors(instance), key=_error_order)
        except self._unresolvable as exc:
            return [f"$: the schema's $ref {str(exc.ref)!r} cannot be resolved"]
        except RecursionError:
            return ["$: the schema refers to itself without end; it cannot check anything"]
        return [f"{error.json_path}: {_short(error.message)}" for error in found]


def _error_order(error: jsonschema.ValidationError) -> tuple[int, str]:
    return (len(error.absolute_path), error.json_path)


def validate(instance: Any, schema: Any) -> SchemaErrors:
    """Check ``instance`` (parsed JSON) against ``schema``; see :class:`SchemaChecker`."""
    return SchemaChecker(schema).errors(instance)


# -- the schema itself -------------------------------------------------------------------------


def schema_problems(schema: Any) -> list[str]:
    """What is wrong with a schema: meta-schema violations and non-local ``$ref``\\ s.

    Each problem starts with the path inside the schema (``properties.x.type: ...``, or
    ``(root): ...``). Empty when the schema is valid.
    """
    cls = _validator_class(schema)
    meta = cls(cls.META_SCHEMA)  # the meta-schemas ship with the library: nothing to fetch
    problems = [
        f"{_schema_path(error.absolute_path)}: {_short(error.message)}"
        for error in sorted(meta.iter_errors(schema), key=_error_order)[:_MAX_META_PROBLEMS]
    ]
    if problems:
        return problems
    for path, ref in sorted(_refs(schema, ()), key=lambda item: _schema_path(item[0])):
        if not isinstance(ref, str) or not ref.startswith("#"):
            problems.append(
                f"{_schema_path(path)}.$ref: {ref!r} points outside the schema; only local "
                "references ('#/$defs/...') are allowed (nothing is ever fetched)"
            )
            continue
        if "/" in ref and _local(schema, ref) is None:  # '#anchor' forms: left to the library
            problems.append(f"{_schema_path(path)}.$ref: {ref!r} does not resolve in the schema")
    return problems


def _schema_path(path: Sequence[Any]) -> str:
    if not path:
        return "(root)"
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path)[
        1 if not isinstance(path[0], int) else 0 :
    ]


def _refs(node: Any, path: tuple[Any, ...]) -> Iterator[tuple[tuple[Any, ...], Any]]:
    stack: list[tuple[Any, tuple[Any, ...]]] = [(node, path)]
    while stack:
        value, where = stack.pop()
        if isinstance(value, Mapping):
            if "$ref" in value:
                yield where, value["$ref"]
            for key, item in value.items():
                if key not in ("enum", "const", "examples", "default"):
                    stack.append((item, (*where, key)))
        elif isinstance(value, list):
            stack.extend((item, (*where, index)) for index, item in enumerate(value))


# -- strict structured output ------------------------------------------------------------------

#: Keywords OpenAI's strict mode does not accept (the conservative, documented list).
_STRICT_UNSUPPORTED: Final = frozenset(
    {
        "minLength",
        "maxLength",
        "pattern",
        "format",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
        "patternProperties",
        "unevaluatedProperties",
        "propertyNames",
        "minProperties",
        "maxProperties",
        "unevaluatedItems",
        "contains",
        "minContains",
        "maxContains",
        "minItems",
        "maxItems",
        "uniqueItems",
        "allOf",
        "not",
        "if",
        "then",
        "else",
        "dependentRequired",
        "dependentSchemas",
        "prefixItems",
    }
)
_STRICT_MAX_DEPTH: Final = 5
_STRICT_MAX_PROPERTIES: Final = 100


def strict_problems(schema: Any) -> list[str]:
    """Why a provider's strict structured-output mode would refuse ``schema`` (empty: it
    would accept it).

    The rules are OpenAI's: the root is an object (not ``anyOf``); every object has
    ``additionalProperties: false`` and lists every property in ``required``; none of a list
    of keywords (``minLength``, ``pattern``, ``format``, ``minimum``, ``minItems``...); at most
    5 levels of nesting and 100 properties.
    """
    if not isinstance(schema, Mapping) or schema.get("type") != "object":
        return ["(root): the root must be an object schema ('type': 'object')"]
    problems: list[str] = []
    properties = 0
    stack: list[tuple[Any, tuple[Any, ...], int]] = [(schema, (), 0)]
    while stack:
        node, path, depth = stack.pop()
        if not isinstance(node, Mapping):
            continue
        where = _schema_path(path)
        unsupported = sorted(_STRICT_UNSUPPORTED & set(node))
        if unsupported:
            problems.append(f"{where}: uses {', '.join(unsupported)}")
        if node.get("type") == "object" or "properties" in node:
            props = node.get("properties") or {}
            properties += len(props)
            if node.get("additionalProperties") is not False:
                problems.append(f"{where}: an object without 'additionalProperties: false'")
            required = set(node.get("required") or ())
            missing = [name for name in props if name not in required]
            if missing:
                problems.append(f"{where}: optional properties {', '.join(map(repr, missing))}")
            if depth >= _STRICT_MAX_DEPTH:
                problems.append(f"{where}: nested more than {_STRICT_MAX_DEPTH} objects deep")
            stack.extend(
                (sub, (*path, "properties", name), depth + 1) for name, sub in props.items()
            )
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), Mapping):
                stack.append((node[key], (*path, key), depth))
        for key in ("anyOf", "oneOf"):
            for index, sub in enumerate(node.get(key) or ()):
                stack.append((sub, (*path, key, index), depth))
        for key in ("$defs", "definitions"):
            for name, sub in (node.get(key) or {}).items():
                stack.append((sub, (*path, key, name), depth))
    if properties > _STRICT_MAX_PROPERTIES:
        problems.append(f"(root): more than {_STRICT_MAX_PROPERTIES} properties in all")
    return sorted(dict.fromkeys(problems))


# -- template paths into a schema --------------------------------------------------------------


def path_problem(schema: Any, path: Sequence[str]) -> str | None:
    """Whether a template path (``("name", "sub")``, ``"[0]"`` for an index) can exist in a
    value that matches ``schema``; a message with "did you mean" when it cannot.

    Only a *definite* absence is reported: a property missing from an object that lists its
    ``properties`` and allows no others (``additionalProperties`` absent or false, no
    ``patternProperties``), or an index into a schema that is not an array. Anything the
    schema leaves open passes.
    """
    root = schema
    nodes = [schema]
    for depth, step in enumerate(path):
        found: list[Any] = []
        for node in _expand(nodes, root):
            result = _step(node, step)
            if result is _OPEN:
                return None
            found.extend(result)
        if not found:
            return _absent(_expand(nodes, root), path, depth)
        nodes = found
    return None


_OPEN: Final = object()


def _expand(nodes: Sequence[Any], root: Any) -> list[Any]:
    """Follow local ``$ref`` and flatten ``anyOf`` / ``oneOf`` / ``allOf`` branches."""
    result: list[Any] = []
    stack = list(nodes)
    seen = 0
    while stack and seen < 1000:
        seen += 1
        node = stack.pop()
        if not isinstance(node, Mapping):
            result.append(node)
            continue
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#"):
            target = _local(root, ref)
            if target is not None:
                stack.append(target)
        branches = [b for key in ("anyOf", "oneOf", "allOf") for b in node.get(key) or ()]
        stack.extend(branches)
        indirect = "$ref" in node or branches
        if not indirect or _STRUCTURAL & set(node):  # a bare $ref/anyOf wrapper adds nothing
            result.append(node)
    return result


_STRUCTURAL: Final = frozenset(
    {"type", "properties", "additionalProperties", "patternProperties", "items", "prefixItems"}
)


def _local(root: Any, ref: str) -> Any:
    node = root
    for part in filter(None, ref[1:].split("/")):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _step(node: Any, step: str) -> Any:
    """The sub-schemas ``step`` leads to from ``node``; ``_OPEN`` when anything goes."""
    if node is True or not isinstance(node, Mapping):
        return _OPEN if node is not False else []
    if step.startswith("["):
        if "items" in node or "prefixItems" in node:
            index = int(step[1:-1])
            prefix = node.get("prefixItems") or []
            return [prefix[index]] if index < len(prefix) else [node.get("items", True)]
        return [] if _typed_as_not(node, "array") else _OPEN
    properties = node.get("properties")
    if isinstance(properties, Mapping) and step in properties:
        return [properties[step]]
    closed = node.get("additionalProperties") is False or (
        "additionalProperties" not in node and "patternProperties" not in node
    )
    if isinstance(properties, Mapping) and closed:
        return []
    if _typed_as_not(node, "object"):
        return []
    extra = node.get("additionalProperties")
    return [extra] if isinstance(extra, Mapping) else _OPEN


def _typed_as_not(node: Mapping[str, Any], kind: str) -> bool:
    declared = node.get("type")
    kinds = [declared] if isinstance(declared, str) else list(declared or ())
    return bool(kinds) and kind not in kinds


def _absent(nodes: Sequence[Any], path: Sequence[str], depth: int) -> str:
    step = path[depth]
    shown = ".".join(path[: depth + 1]).replace(".[", "[")
    names = {
        name
        for node in nodes
        if isinstance(node, Mapping) and isinstance(node.get("properties"), Mapping)
        for name in node["properties"]
    }
    parent = ".".join(path[:depth]).replace(".[", "[")
    if step.startswith("["):
        return f"{shown}: the schema does not make {parent} a list"
    kinds = {n.get("type") for n in nodes if isinstance(n, Mapping)} - {None, "object"}
    if not names and len(kinds) == 1 and isinstance(next(iter(kinds)), str):
        return f"{shown}: the schema makes {parent} a {next(iter(kinds))}, which has no {step!r}"
    listed = ", ".join(map(repr, sorted(names))) or "none"
    hint = did_you_mean(step, names, otherwise=f"the schema's properties there are {listed}")
    return f"{shown}: the schema has no property {step!r}; {hint}"
