"""The simulator's answer fast paths (branch ``simhot``) give exactly what the plain code gave.

Each fast path in ``trio_designer/simulator/_content.py`` is checked against the code it
replaced (kept here as the reference): the answers' text must not move for the same request,
because other benches and tests compare them.
"""

from __future__ import annotations

import json
import random
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_designer.simulator._content import (
    _STOPWORDS,
    _WORD,
    Answer,
    _choose,
    _dump_json,
    _formatted,
    _schema_tag_text,
    _without_schema_tags,
    prompt_words,
)
from trio_designer.simulator._requests import chat_body, chat_json, completion_id

_SCHEMA_TAG = re.compile(r"<response_schema>\s*(.*?)\s*</response_schema>", re.DOTALL)

# Text with the tags, whitespace of every kind, and characters that lower-case to ASCII letters
# (the Kelvin sign, the dotted capital I).
_PIECES = st.sampled_from(
    [
        "<response_schema>",
        "</response_schema>",
        " ",
        "\n",
        "\t",
        "\u2003",
        "\x1c",
        '{"type": "integer"}',
        "Owls",
        "don't",
        "well-known",
        "x-ray'-",
        "\u212aelvin",
        "\u0130stanbul",
        "caf\u00e9",
        "ABOUT",
        "the",
        "--dash",
        "Write",
        "ab",
    ]
)
_TEXT = st.one_of(st.lists(_PIECES, max_size=30).map("".join), st.text(max_size=200))


def _reference_prompt_words(prompt: str, limit: int = 40) -> list[str]:
    words: dict[str, None] = {}
    for word in _WORD.findall(prompt):
        lowered = word.lower().strip("'-")
        if len(lowered) >= 4 and lowered not in _STOPWORDS:
            words.setdefault(lowered, None)
    return list(words)[:limit]


@settings(max_examples=400, deadline=None)
@given(_TEXT)
def test_schema_tags_are_found_as_the_regex_found_them(text: str) -> None:
    match = _SCHEMA_TAG.search(text)
    assert _schema_tag_text(text) == (None if match is None else match.group(1))
    assert _without_schema_tags(text) == _SCHEMA_TAG.sub(" ", text)


@settings(max_examples=400, deadline=None)
@given(_TEXT, st.integers(1, 50))
def test_prompt_words_as_before(text: str, limit: int) -> None:
    assert prompt_words(text, limit) == _reference_prompt_words(text, limit)


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None)
@given(_JSON)
def test_indented_json_as_the_standard_encoder_writes_it(value: Any) -> None:
    assert _dump_json(value) == json.dumps(value, indent=2, ensure_ascii=False)


def test_indented_json_hands_other_values_to_the_encoder() -> None:
    for value in ({1: "a", None: [2.5]}, ("a", 1), {"a": (True, {})}):
        assert _dump_json(value) == json.dumps(value, indent=2, ensure_ascii=False)


def test_indented_json_of_deep_and_circular_values_is_the_encoders() -> None:
    """``indented_text`` (``_core/_jsonenc.py``, which ``_dump_json`` is, and a judge's or
    structured column's schema in its prompt): past its depth, ``json.dumps`` writes the
    value, or raises its own error for a circular one."""
    deep: Any = "x"
    for _ in range(150):
        deep = {"a": [deep]}
    assert _dump_json(deep) == json.dumps(deep, indent=2, ensure_ascii=False)
    circular: list[Any] = []
    circular.append(circular)
    with pytest.raises(ValueError, match="Circular reference"):
        _dump_json(circular)


@given(st.integers(0, 2**32), st.lists(st.text(max_size=3), min_size=1, max_size=70))
def test_choose_draws_what_random_choice_draws(seed: int, seq: list[str]) -> None:
    ours, theirs = random.Random(seed), random.Random(seed)
    for _ in range(20):
        assert _choose(ours.getrandbits, seq) == theirs.choice(seq)
    assert ours.random() == theirs.random()  # and the streams stay in step


def _reference_formatted(fmt: object, rng: random.Random, words: list[str]) -> str | None:
    import uuid

    from trio_designer.simulator._content import _identifier, _pick_word

    word = _identifier(_pick_word(rng, words)).replace("_", "-")
    year, month, day = rng.randint(2000, 2030), rng.randint(1, 12), rng.randint(1, 28)
    clock = f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}"
    values = {
        "date-time": f"{year:04d}-{month:02d}-{day:02d}T{clock}Z",
        "date": f"{year:04d}-{month:02d}-{day:02d}",
        "time": f"{clock}Z",
        "email": f"{word}@example.com",
        "uri": f"https://example.com/{word}",
        "url": f"https://example.com/{word}",
        "hostname": f"{word}.example.com",
        "ipv4": ".".join(str(rng.randint(1, 254)) for _ in range(4)),
        "uuid": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
    }
    return values.get(fmt) if isinstance(fmt, str) else None


def test_formatted_strings_and_draws_as_before() -> None:
    formats = [None, 3, "date-time", "date", "time", "email", "uri", "url", "hostname"]
    formats += ["ipv4", "uuid", "other"]
    for seed in range(40):
        for fmt in formats:
            for words in ([], ["owl", "class", "9lives", "a-b"]):
                ours, theirs = random.Random(seed), random.Random(seed)
                assert _formatted(fmt, ours, words) == _reference_formatted(fmt, theirs, words)
                assert ours.random() == theirs.random()


_ANSWERS = st.builds(
    Answer,
    content=st.text(max_size=40),
    reasoning=st.none() | st.text(max_size=20),
    finish_reason=st.sampled_from(["stop", "length", "content_filter"]),
)


@settings(max_examples=300, deadline=None)
@given(_ANSWERS, st.text(max_size=10), st.integers(0, 10**6))
def test_chat_json_is_the_encoded_chat_body(answer: Answer, model: str, prompt: int) -> None:
    fixed = {"id": completion_id(), "created": 1_700_000_000}
    expected = json.dumps(chat_body(model, answer, prompt, **fixed), ensure_ascii=False)
    assert chat_json(model, answer, prompt, **fixed) == expected.encode()


def test_completion_ids_differ() -> None:
    ids = {completion_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(i) == len("chatcmpl-") + 32 for i in ids)


@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats()
        | st.text(max_size=5),
        lambda inner: st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=3), inner, max_size=3),
        max_leaves=12,
    ),
    st.booleans(),
    st.booleans(),
)
def test_indented_text_is_json_dumps_under_every_option(
    value: Any, ensure_ascii: bool, allow_nan: bool
) -> None:
    """The one indented writer (``_core/_jsonenc.indented_text``: the simulator's answers, a
    schema in a prompt, the run's record) against ``json.dumps`` with the same options: the
    same text, or the same kind of error (a non-finite float without ``allow_nan``)."""
    from trio_designer._core._jsonenc import indented_text

    try:
        expected = json.dumps(value, indent=2, ensure_ascii=ensure_ascii, allow_nan=allow_nan)
    except ValueError:
        with pytest.raises(ValueError, match="Out of range float values"):
            indented_text(value, ensure_ascii=ensure_ascii, allow_nan=allow_nan)
        return
    assert indented_text(value, ensure_ascii=ensure_ascii, allow_nan=allow_nan) == expected
