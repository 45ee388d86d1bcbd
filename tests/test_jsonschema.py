"""JSON Schema for structured columns: our face on the ``jsonschema`` library.

The library does the validating (Draft 2020-12, ``format``, ``pattern``); these tests pin what
we add: messages with JSON paths for the re-ask, the meta-schema check with paths inside the
schema, local-only ``$ref`` (nothing is ever fetched), strict-mode compatibility, and template
paths into a schema.
"""

from __future__ import annotations

import json
import random
import socket
import threading
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_designer._core._jsonschema import (
    SchemaChecker,
    path_problem,
    schema_problems,
    strict_problems,
    validate,
)
from trio_designer.simulator._content import schema_instance

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


# -- answers -----------------------------------------------------------------------------------


def test_every_problem_is_listed_with_its_json_path() -> None:
    assert validate({"name": "Ada", "age": 36}, PERSON) == []
    assert validate({"name": "Ada", "age": -1, "email": "a@b"}, PERSON) == [
        "$: Additional properties are not allowed ('email' was unexpected)",
        "$.age: -1 is less than the minimum of 0",
    ]
    assert validate({}, PERSON) == [
        "$: 'name' is a required property",
        "$: 'age' is a required property",
    ]
    nested = {"type": "object", "properties": {"people": {"type": "array", "items": PERSON}}}
    value = {"people": [{"name": "Ada", "age": 36}, {"name": 7, "age": 1}]}
    assert validate(value, nested) == ["$.people[1].name: 7 is not of type 'string'"]
    odd = {"type": "object", "additionalProperties": {"type": "integer"}}
    assert validate({"b c": "x"}, odd) == ["$['b c']: 'x' is not of type 'integer'"]


def test_draft_2020_12_keywords_format_and_pattern_are_enforced() -> None:
    schema = {
        "type": "object",
        "properties": {
            "email": {"type": "string", "format": "email"},
            "day": {"type": "string", "format": "date"},
            "code": {"type": "string", "pattern": "^[A-Z]{3}$"},
            "pair": {"type": "array", "prefixItems": [{"type": "string"}], "items": False},
        },
    }
    good = {"email": "ada@example.com", "day": "2024-02-29", "code": "ABC", "pair": ["x"]}
    assert validate(good, schema) == []
    bad = {"email": "nope", "day": "2023-02-29", "code": "abc", "pair": ["x", 1]}
    assert validate(bad, schema) == [
        "$.code: 'abc' does not match '^[A-Z]{3}$'",
        "$.day: '2023-02-29' is not a 'date'",
        "$.email: 'nope' is not a 'email'",
        "$.pair: Expected at most 1 item but found 1 extra: 1",
    ]


def test_integers_booleans_and_enums_are_json_values() -> None:
    assert validate(3.0, {"type": "integer"}) == []
    assert validate(True, {"type": "integer"}) != []
    assert validate(True, {"enum": [1, 2]}) != []
    assert validate(1.0, {"enum": [1, 2]}) == []


@settings(max_examples=200, deadline=None)
@given(low=st.integers(-50, 50), span=st.integers(0, 50), x=st.integers(-120, 120))
def test_integer_range_property(low: int, span: int, x: int) -> None:
    high = low + span
    errors = validate(x, {"type": "integer", "minimum": low, "maximum": high})
    assert (errors == []) == (low <= x <= high)


def test_long_messages_are_cut() -> None:
    (problem,) = validate("x" * 1000, {"type": "integer"})
    assert len(problem) < 220
    assert problem.endswith("...")


# -- the schema itself -------------------------------------------------------------------------


def test_meta_schema_problems_name_their_path_inside_the_schema() -> None:
    assert schema_problems(PERSON) == []
    assert schema_problems({"type": "not-a-type"}) == [
        "type: 'not-a-type' is not valid under any of the given schemas"
    ]
    assert schema_problems({"properties": {"x": {"type": "strin"}}, "required": "x"}) == [
        "required: 'x' is not of type 'array'",
        "properties.x.type: 'strin' is not valid under any of the given schemas",
    ]


def test_refs_stay_inside_the_schema_and_nothing_is_fetched() -> None:
    """jsonschema still fetches remote $refs over HTTP unless told not to; we never do."""
    connections: list[Any] = []
    with socket.socket() as listener:  # a server that sees (and hangs up on) any fetch
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(0.05)
        stop = threading.Event()

        def serve() -> None:
            while not stop.is_set():
                try:
                    connection, _ = listener.accept()
                except OSError:
                    continue
                connections.append(connection)
                connection.close()

        server = threading.Thread(target=serve, daemon=True)
        server.start()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/schema.json"
        schema = {"properties": {"a": {"$ref": url}, "b": {"$ref": "#/$defs/nope"}}}
        try:
            assert schema_problems(schema) == [
                f"properties.a.$ref: {url!r} points outside the schema; only local references "
                "('#/$defs/...') are allowed (nothing is ever fetched)",
                "properties.b.$ref: '#/$defs/nope' does not resolve in the schema",
            ]
            assert validate({"a": 1}, {"$ref": url}) == [
                f"$: the schema's $ref {url!r} cannot be resolved"
            ]
        finally:
            stop.set()
            server.join(timeout=5)
    assert connections == []


def test_local_refs_defs_and_recursion() -> None:
    tree = {
        "$defs": {"Node": {"type": "object", "properties": {"v": {"type": "integer"}}}},
        "type": "object",
        "properties": {
            "value": {"type": "integer"},
            "items": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
            "children": {"type": "array", "items": {"$ref": "#"}},
        },
    }
    assert schema_problems(tree) == []
    value = {"items": [{"v": "x"}], "children": [{"children": [{"value": "three"}]}]}
    assert validate(value, tree) == [
        "$.items[0].v: 'x' is not of type 'integer'",
        "$.children[0].children[0].value: 'three' is not of type 'integer'",
    ]


def test_a_self_referring_schema_is_reported_not_raised() -> None:
    assert SchemaChecker({"$ref": "#"}).errors(1) == [
        "$: the schema refers to itself without end; it cannot check anything"
    ]


# -- strict structured output ------------------------------------------------------------------


def test_strict_mode_accepts_closed_objects_with_every_property_required() -> None:
    assert strict_problems(PERSON) == ["properties.age: uses minimum"]
    closed = {
        "type": "object",
        "properties": {
            "tags": {
                "type": "array",
                "items": {"type": "object", "properties": {"t": {"type": "string"}}},
            },
            "note": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        },
        "required": ["tags"],
    }
    assert strict_problems(closed) == [
        "(root): an object without 'additionalProperties: false'",
        "(root): optional properties 'note'",
        "properties.tags.items: an object without 'additionalProperties: false'",
        "properties.tags.items: optional properties 't'",
    ]
    assert strict_problems({"anyOf": [PERSON]}) == [
        "(root): the root must be an object schema ('type': 'object')"
    ]


# -- template paths ----------------------------------------------------------------------------

PRODUCT = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "tags": {"type": "array", "items": {"$ref": "#/$defs/Tag"}},
        "extra": {"type": "object"},
        "choice": {"anyOf": [{"$ref": "#/$defs/Tag"}, {"type": "null"}]},
    },
    "$defs": {"Tag": {"type": "object", "properties": {"label": {"type": "string"}}}},
}


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        (("name",), None),
        (("nmae",), "nmae: the schema has no property 'nmae'; did you mean 'name'?"),
        (("tags", "[0]", "label"), None),
        (("tags", "[0]", "lable"), "tags[0].lable: the schema has no property 'lable'; did you "
         "mean 'label'?"),
        (("choice", "label"), None),
        (("extra", "anything", "goes"), None),  # an open object
        (("name", "first"), "name.first: the schema makes name a string, which has no 'first'"),
        (("name", "[0]"), "name[0]: the schema does not make name a list"),
        (("zzz",), "zzz: the schema has no property 'zzz'; the schema's properties there are "
         "'choice', 'extra', 'name', 'tags'"),
    ],
)
def test_template_paths_into_a_schema(path: tuple[str, ...], problem: Any) -> None:
    assert path_problem(PRODUCT, path) == problem


# -- vs the simulator --------------------------------------------------------------------------

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


@settings(max_examples=100, deadline=None)
@given(index=st.integers(0, len(SCHEMAS) - 1), seed=st.integers(0, 2**32))
def test_simulator_instances_validate(index: int, seed: int) -> None:
    """The simulator's schema instances pass the validator, and a broken copy does not."""
    schema = SCHEMAS[index]
    assert schema_problems(schema) == []
    instance = schema_instance(schema, random.Random(seed))
    assert validate(json.loads(json.dumps(instance)), schema) == []
    assert validate({"not": "valid"} if isinstance(instance, list) else [instance], schema) != []


def test_validate_notes_a_schema_sent_without_strict(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from _cli_harness import run_cli

    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.yaml").write_text(
        "models: [{alias: gen, model: sim-gen}]\n"
        "columns:\n"
        "  - {name: p, kind: llm_structured, model: gen, prompt: x, schema: {type: object,"
        " properties: {n: {type: integer, minimum: 1}}}}\n"
    )
    outcome = run_cli(["validate", "s.yaml"])
    assert outcome.status == 0
    assert outcome.err == (
        "note: columns[0] 'p': the schema is sent without strict mode (a strict structured-"
        "output mode would refuse it: (root): an object without 'additionalProperties: false';"
        " (root): optional properties 'n'; properties.n: uses minimum); the answers are still "
        "validated against every keyword\n"
    )


def test_schema_problems_and_field_typos_reach_python_callers_before_any_request() -> None:
    from _cli_harness import preview

    from trio_designer import ConfigError, PipelineConfig

    head = "models: [{alias: gen, model: sim-gen}]\ncolumns:\n"
    bad_type = head + (
        "  - {name: p, kind: llm_structured, model: gen, prompt: x, schema: {type: not-a-type}}\n"
    )
    with pytest.raises(ConfigError, match=r"columns\[0\]\.schema: 'schema' is not a valid JSON"):
        PipelineConfig.from_yaml(bad_type)
    typo = head + (
        "  - {name: product, kind: llm_structured, model: gen, prompt: x, schema: {type: object,"
        " properties: {name: {type: string}}, required: [name], additionalProperties: false}}\n"
        "  - {name: ad, kind: llm_text, model: gen, prompt: 'Sell {{ product.nmae }}'}\n"
    )
    config = PipelineConfig.from_yaml(typo)  # structurally fine: the graph finds the typo
    with pytest.raises(
        ConfigError,
        match=r"^columns\[1\] 'ad': prompt reads product\.nmae: the schema has no property "
        r"'nmae'; did you mean 'name'\?$",
    ):
        preview(config, num_records=1)
