"""The small JSON-schema validator used for structured LLM output."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_designer._core._jsonschema import json_equal, validate
from trio_designer.simulator._content import schema_instance

# --------------------------------------------------------------------------- types


@pytest.mark.parametrize(
    ("type_", "good", "bad"),
    [
        ("null", [None], [0, "", False, [], {}]),
        ("boolean", [True, False], [0, 1, "true", None]),
        ("integer", [0, -3, 10**30, 3.0], [3.5, True, "3", None]),
        ("number", [0, 2.5, -1e9, 7], [True, "1", None, float("nan"), float("inf")]),
        ("string", ["", "x"], [1, None, ["x"]]),
        ("array", [[], [1, "a"]], [{}, "[]", None]),
        ("object", [{}, {"a": 1}], [[], "{}", None]),
    ],
)
def test_type_keyword(type_: str, good: list[Any], bad: list[Any]) -> None:
    for value in good:
        assert validate(value, {"type": type_}) == [], value
    for value in bad:
        errors = validate(value, {"type": type_})
        assert len(errors) == 1, value
        assert errors[0].startswith(f"$: expected {type_}, got "), errors


def test_type_list_accepts_any_listed_type() -> None:
    schema = {"type": ["string", "null"]}
    assert validate(None, schema) == []
    assert validate("x", schema) == []
    assert validate(1, schema) == ["$: expected string or null, got integer 1"]


def test_boolean_schemas() -> None:
    assert validate({"anything": [1]}, True) == []
    assert validate(1, False) == ["$: no value is allowed here (the schema is false)"]
    assert validate(1, {}) == []


def test_unknown_keywords_are_ignored() -> None:
    assert validate("abc", {"type": "string", "format": "email", "pattern": "^z$"}) == []


# --------------------------------------------------------------------------- objects

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


def test_object_properties_required_and_closed() -> None:
    assert validate({"name": "Ada", "age": 36}, PERSON) == []
    assert validate({"name": "Ada", "age": -1, "email": "a@b"}, PERSON) == [
        "$.age: -1 is less than the minimum 0",
        "$: unexpected property 'email'; the allowed properties are 'name', 'age'",
    ]
    assert validate({}, PERSON) == [
        "$: missing required property 'name'",
        "$: missing required property 'age'",
    ]


def test_additional_properties_schema() -> None:
    schema = {"type": "object", "additionalProperties": {"type": "integer"}}
    assert validate({"a": 1, "b": 2}, schema) == []
    assert validate({"a": 1, "b c": "x"}, schema) == ['$["b c"]: expected integer, got string "x"']


def test_paths_of_nested_values() -> None:
    schema = {
        "type": "object",
        "properties": {
            "people": {"type": "array", "items": PERSON},
        },
    }
    value = {"people": [{"name": "Ada", "age": 36}, {"name": 7, "age": 1}]}
    assert validate(value, schema) == ["$.people[1].name: expected string, got integer 7"]


# --------------------------------------------------------------------------- enum / const


def test_enum_and_const_compare_json_values() -> None:
    assert validate(1.0, {"enum": [1, 2]}) == []
    assert validate(True, {"enum": [1, 2]}) == ["$: true is not one of 1, 2"]
    assert validate(1, {"enum": [True]}) == ["$: 1 is not one of true"]
    assert validate({"a": [1]}, {"const": {"a": [1.0]}}) == []
    assert validate("x", {"const": "y"}) == ['$: expected "y", got "x"']
    assert validate(None, {"enum": [None]}) == []


def test_json_equal() -> None:
    assert json_equal([1, {"a": None}], [1.0, {"a": None}])
    assert not json_equal(0, False)
    assert not json_equal({"a": 1}, {"a": 1, "b": 2})
    assert not json_equal([1], [1, 1])
    assert not json_equal("1", 1)


# --------------------------------------------------------------------------- arrays


def test_array_length_and_items() -> None:
    schema = {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 2}
    assert validate(["a"], schema) == []
    assert validate([], schema) == ["$: has 0 items; at least 1 are required"]
    assert validate(["a", "b", 3], schema) == [
        "$: has 3 items; at most 2 are allowed",
        "$[2]: expected string, got integer 3",
    ]


def test_tuple_items_draft4_and_prefix_items() -> None:
    draft4 = {"type": "array", "items": [{"type": "string"}, {"type": "integer"}]}
    assert validate(["a", 1, None], draft4) == []
    assert validate([1, "a"], draft4) == [
        "$[0]: expected string, got integer 1",
        '$[1]: expected integer, got string "a"',
    ]
    closed = {"prefixItems": [{"type": "string"}], "items": False}
    assert validate(["a"], closed) == []
    assert validate(["a", "b"], closed) == ["$: has 2 items; at most 1 are allowed"]


def test_unique_items() -> None:
    assert validate([1, 2], {"uniqueItems": True}) == []
    assert validate([1, "1", 1.0], {"uniqueItems": True}) == [
        "$: items 0 and 2 are equal; the items must be unique"
    ]


# --------------------------------------------------------------------------- numbers, strings


def test_numeric_bounds() -> None:
    schema = {"minimum": 1, "maximum": 3}
    assert [validate(x, schema) == [] for x in (0, 1, 3, 3.5)] == [False, True, True, False]
    exclusive = {"exclusiveMinimum": 1, "exclusiveMaximum": 3}
    assert [validate(x, exclusive) == [] for x in (1, 1.5, 3)] == [False, True, False]
    draft4 = {"minimum": 1, "exclusiveMinimum": True, "maximum": 3, "exclusiveMaximum": True}
    assert [validate(x, draft4) == [] for x in (1, 2, 3)] == [False, True, False]
    assert validate("10", schema) == []  # bounds apply to numbers only


def test_string_length_counts_code_points() -> None:
    schema = {"type": "string", "minLength": 2, "maxLength": 3}
    assert validate("éé", schema) == []
    assert validate("a", schema) == ["$: has 1 characters; at least 2 are required"]
    assert validate("abcd", schema) == ["$: has 4 characters; at most 3 are allowed"]


@settings(max_examples=200)
@given(low=st.integers(-50, 50), span=st.integers(0, 50), x=st.integers(-120, 120))
def test_integer_range_property(low: int, span: int, x: int) -> None:
    high = low + span
    errors = validate(x, {"type": "integer", "minimum": low, "maximum": high})
    assert (errors == []) == (low <= x <= high)


# --------------------------------------------------------------------------- combinators


def test_any_of_one_of_all_of() -> None:
    any_of = {"anyOf": [{"type": "string"}, {"type": "integer"}]}
    assert validate(1, any_of) == []
    assert validate(None, any_of) == [
        "$: matches none of the anyOf choices (choice 1: $: expected string, got null null; "
        "choice 2: $: expected integer, got null null)"
    ]
    one_of = {"oneOf": [{"type": "number"}, {"type": "integer"}]}
    assert validate(1.5, one_of) == []
    assert validate(2, one_of) == ["$: matches 2 of the oneOf choices; it must match one"]
    all_of = {"allOf": [{"minimum": 0}, {"maximum": 1}]}
    assert validate(0.5, all_of) == []
    assert validate(2, all_of) == ["$: 2 is greater than the maximum 1"]


# --------------------------------------------------------------------------- references


def test_refs_to_defs_definitions_and_root() -> None:
    pydantic_style = {
        "$defs": {"Item": {"type": "object", "properties": {"n": {"type": "integer"}}}},
        "type": "object",
        "properties": {"items": {"type": "array", "items": {"$ref": "#/$defs/Item"}}},
    }
    assert validate({"items": [{"n": 1}]}, pydantic_style) == []
    assert validate({"items": [{"n": "x"}]}, pydantic_style) == [
        '$.items[0].n: expected integer, got string "x"'
    ]
    draft7 = {"definitions": {"s": {"type": "string"}}, "$ref": "#/definitions/s"}
    assert validate("ok", draft7) == []
    assert validate(1, draft7) == ["$: expected string, got integer 1"]


def test_recursive_schema() -> None:
    tree = {
        "type": "object",
        "properties": {
            "value": {"type": "integer"},
            "children": {"type": "array", "items": {"$ref": "#"}},
        },
        "required": ["value"],
    }
    value = {"value": 1, "children": [{"value": 2, "children": [{"value": "three"}]}]}
    assert validate(value, tree) == [
        '$.children[0].children[0].value: expected integer, got string "three"'
    ]


def test_broken_and_runaway_refs_are_reported_not_raised() -> None:
    assert validate(1, {"$ref": "#/$defs/missing"}) == [
        "$: the schema's $ref \"#/$defs/missing\" does not point into this schema's $defs or "
        "definitions"
    ]
    assert validate(1, {"$ref": "https://example.com/schema"}) != []
    errors = validate(1, {"$ref": "#"})  # refers to itself without consuming the value
    assert errors == ["$: the schema nests or refers to itself too deeply to check"]


# --------------------------------------------------------------------------- vs the simulator

SCHEMAS = [
    PERSON,
    {
        "type": "object",
        "properties": {
            "title": {"type": "string", "minLength": 3, "maxLength": 40},
            "tags": {"type": "array", "items": {"enum": ["a", "b", "c"]}, "minItems": 1},
            "score": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
            "kind": {"const": "review"},
            "meta": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/Meta"}]},
        },
        "required": ["title", "tags", "score", "kind", "meta"],
        "additionalProperties": False,
        "$defs": {
            "Meta": {
                "type": "object",
                "properties": {"stars": {"type": "integer", "minimum": 1, "maximum": 5}},
                "required": ["stars"],
                "additionalProperties": False,
            }
        },
    },
    {"type": "array", "items": {"type": "integer", "minimum": -3, "maximum": 3}, "maxItems": 4},
]


@settings(max_examples=100)
@given(index=st.integers(0, len(SCHEMAS) - 1), seed=st.integers(0, 2**32))
def test_simulator_instances_validate(index: int, seed: int) -> None:
    """The simulator's schema instances pass our validator, and a broken copy does not."""
    schema = SCHEMAS[index]
    instance = schema_instance(schema, random.Random(seed))
    assert validate(json.loads(json.dumps(instance)), schema) == []
    assert validate({"not": "valid"} if isinstance(instance, list) else [instance], schema) != []
