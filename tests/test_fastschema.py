"""The fast schema check (``_core/_fastschema.py``) never says "valid" where jsonschema finds a
problem, and does say it for the valid answers of the schemas LLM columns use."""

from __future__ import annotations

import random
from typing import Any

import jsonschema
import pytest

from trio_designer._core._fastschema import compile_fast_check
from trio_designer._core._jsonschema import SchemaChecker, validate
from trio_designer.config import Rubric
from trio_designer.generators._llm import judge_schema

DRAFT = "https://json-schema.org/draft/2020-12/schema"

DEEP_ANALYSIS = {
    "type": "object",
    "properties": {
        "tone": {"type": "string", "enum": ["neutral", "enthusiastic", "critical"]},
        "depth": {"type": "integer", "minimum": 1, "maximum": 5},
        "keywords": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 4},
    },
    "required": ["tone", "depth", "keywords"],
}

SCHEMAS: list[Any] = [
    DEEP_ANALYSIS,
    judge_schema(
        [
            Rubric(name="clarity", description="How clear.", scores={"1": "a", "2": "b"}),
            Rubric(name="tone", description="Tone.", scores={"low": "a", "high": "b"}),
        ]
    ),
    {"type": "array", "items": {"type": ["string", "null"], "maxLength": 3}, "maxItems": 2},
    {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1.5},
    {"type": "integer", "enum": [1, 2, 3]},
    {"const": "x"},
    {"type": "object", "additionalProperties": {"type": "boolean"}, "minProperties": 1},
    {"type": "object", "properties": {"a": True}, "additionalProperties": False},
    {"minimum": 2},  # no type: a bound applies to numbers only
    {"type": "string", "minLength": 2, "title": "annotations are ignored"},
    True,
]


def _instance(rng: random.Random, depth: int = 0) -> Any:
    """A random JSON-like value, biased towards the shapes the schemas above ask for."""
    scalars: list[Any] = [
        None,
        True,
        False,
        0,
        1,
        2,
        3,
        5,
        6,
        -1,
        1.0,
        1.5,
        0.5,
        float("nan"),
        float("inf"),
        "",
        "x",
        "ab",
        "abcd",
        "neutral",
        "critical",
        "1",
        "2",
        "low",
        "high",
    ]
    kind = rng.random()
    if depth > 3 or kind < 0.5:
        return rng.choice(scalars)
    if kind < 0.7:
        return [_instance(rng, depth + 1) for _ in range(rng.randrange(0, 6))]
    names = ["tone", "depth", "keywords", "clarity", "reasoning", "score", "a", "b"]
    return {rng.choice(names): _instance(rng, depth + 1) for _ in range(rng.randrange(0, 5))}


def _valid_examples() -> list[tuple[Any, Any]]:
    return [
        (DEEP_ANALYSIS, {"tone": "neutral", "depth": 3, "keywords": ["a", "b"]}),
        (
            SCHEMAS[1],
            {
                "clarity": {"reasoning": "r", "score": "2"},
                "tone": {"reasoning": "", "score": "low"},
            },
        ),
        (SCHEMAS[2], ["ab", None]),
        (SCHEMAS[3], 1),
        (SCHEMAS[4], 2),
        (SCHEMAS[5], "x"),
        (SCHEMAS[6], {"k": True}),
        (SCHEMAS[7], {"a": [1, {"b": None}]}),
        (SCHEMAS[8], "not a number"),
        (SCHEMAS[9], "abc"),
        (True, {"anything": [1]}),
    ]


def _mutated(rng: random.Random, value: Any) -> Any:
    """``value`` with one random part replaced, removed or added."""
    if isinstance(value, dict) and value and rng.random() < 0.8:
        copy = dict(value)
        key = rng.choice(sorted(copy))
        roll = rng.random()
        if roll < 0.2:
            del copy[key]
        elif roll < 0.3:
            copy[rng.choice(["extra", "a", "score"])] = _instance(rng)
        else:
            copy[key] = _mutated(rng, copy[key])
        return copy
    if isinstance(value, list) and value and rng.random() < 0.8:
        copy = list(value)
        index = rng.randrange(len(copy))
        roll = rng.random()
        if roll < 0.2:
            del copy[index]
        elif roll < 0.3:
            copy.append(_instance(rng))
        else:
            copy[index] = _mutated(rng, copy[index])
        return copy
    return _instance(rng) if rng.random() < 0.7 else value


@pytest.mark.parametrize(("schema", "valid"), _valid_examples())
def test_fast_yes_is_never_wrong(schema: Any, valid: Any) -> None:
    """Random values and random mutations of a valid one: whenever the fast check says
    valid, jsonschema agrees (and both kinds of answer occur)."""
    fast = compile_fast_check(schema, DRAFT)
    assert fast is not None, "the common schemas get a fast check"
    validator = jsonschema.Draft202012Validator(schema)
    rng = random.Random(13)
    answers = {True: 0, False: 0}
    for n in range(4000):
        instance = _instance(rng) if n % 2 else _mutated(rng, _mutated(rng, valid))
        said = fast(instance)
        answers[said] += 1
        if said:
            assert validator.is_valid(instance), (schema, instance)
    assert answers[True]
    assert answers[False] or schema is True


@pytest.mark.parametrize(("schema", "instance"), _valid_examples())
def test_fast_yes_for_valid_answers(schema: Any, instance: Any) -> None:
    fast = compile_fast_check(schema, DRAFT)
    assert fast is not None
    assert fast(instance)
    assert SchemaChecker(schema).errors(instance) == []


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "string", "pattern": "^a"},
        {"type": "string", "format": "email"},
        {"$ref": "#/$defs/x", "$defs": {"x": {"type": "string"}}},
        {"anyOf": [{"type": "string"}, {"type": "integer"}]},
        {"type": "array", "prefixItems": [{"type": "string"}]},
        {"enum": [1, "1"]},
        {"enum": [True, 1]},
        {"type": "array", "uniqueItems": True},
        {"x-vendor": 1},
        False,
    ],
)
def test_schemas_outside_the_subset_get_no_fast_check(schema: Any) -> None:
    assert compile_fast_check(schema, DRAFT) is None


def test_draft_4_gets_no_fast_check() -> None:
    assert compile_fast_check({"type": "string"}, "http://json-schema.org/draft-04/schema#") is None
    draft7 = "http://json-schema.org/draft-07/schema#"
    fast = compile_fast_check({"type": "string"}, draft7)
    assert fast is not None
    assert fast("x")


def test_integral_float_and_bool_go_to_jsonschema() -> None:
    """Not sure -> jsonschema decides: 2.0 is an integer there, True never is."""
    fast = compile_fast_check({"type": "integer"}, DRAFT)
    assert fast is not None
    assert not fast(2.0)
    assert not fast(True)
    assert validate(2.0, {"type": "integer"}) == []
    assert validate(True, {"type": "integer"}) != []


def test_problems_are_still_worded_by_jsonschema() -> None:
    errors = SchemaChecker(DEEP_ANALYSIS).errors({"tone": "bored", "depth": 9, "keywords": []})
    assert errors == [
        "$.depth: 9 is greater than the maximum of 5",
        "$.keywords: [] should be non-empty",
        "$.tone: 'bored' is not one of ['neutral', 'enthusiastic', 'critical']",
    ]
