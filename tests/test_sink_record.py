"""metadata.json's bytes: ``RecordEncoder`` writes what ``json.dumps(indent=2)`` writes."""

from __future__ import annotations

import json

import attrs
import pyarrow as pa
import pytest

from trio_designer._sink._metadata import RecordEncoder, RowGroupEntry, RunMetadata


def _old_bytes(meta: RunMetadata) -> bytes:
    return json.dumps(meta.to_json_dict(), indent=2, allow_nan=False).encode() + b"\n"


def _record(**changes: object) -> RunMetadata:
    config = {
        "columns": [{"name": "a\nb", "prompt": 'Say "hi" \u2028 é {{ x }}', "empty": {}}],
        "models": [],
        "run": {"seed": 0, "ratio": 0.5, "flags": [True, None]},
    }
    meta = RunMetadata(
        fingerprint="f" * 64,
        config=config,
        num_records=20,
        row_group_size=10,
        status="running",
        started_at="2026-12-07T00:00:00+00:00",
        updated_at="2026-12-07T00:00:00+00:00",
        schema=pa.schema([("a", pa.string()), ("b", pa.list_(pa.int64()))]),
        row_groups={0: RowGroupEntry(file="parquet-files/x.parquet", rows=10, requested_rows=10)},
        summary={"counts": {"a": 10}, "nested": [[1, 2], []]},
        fingerprint_basis={"config": config, "files": {"code.py": "abc"}, "code": []},
    )
    return attrs.evolve(meta, **changes)


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"config": {}, "fingerprint_basis": None},
        {"schema": None, "row_groups": {}, "summary": {}},
        {"forced_resumes": ({"at": "t", "from": "x"},)},
    ],
)
def test_the_record_encoder_writes_what_json_dumps_writes(changes: dict[str, object]) -> None:
    meta = _record(**changes)
    assert RecordEncoder().encode(meta) == _old_bytes(meta)


def test_the_record_encoder_reuses_members_only_while_they_are_the_same_object() -> None:
    """Later records of a run (same config object) reuse the encoded members; a record with
    another config (an equal-looking but different object, or new content) is encoded anew."""
    encoder = RecordEncoder()
    first = _record()
    assert encoder.encode(first) == _old_bytes(first)
    later = attrs.evolve(first, status="complete", summary={"rows": 20})
    assert encoder.encode(later) == _old_bytes(later)
    changed = attrs.evolve(later, config={"columns": [], "run": {"seed": 1}})
    assert encoder.encode(changed) == _old_bytes(changed)
    basis = attrs.evolve(changed, fingerprint_basis={"config": {}, "files": {}})
    assert encoder.encode(basis) == _old_bytes(basis)
    odd = attrs.evolve(basis, config={"x": float("nan"), "t": (1, 2)})  # null, a list
    assert encoder.encode(odd) == _old_bytes(odd)


def test_json_value_copies_as_its_path_spelling_version_and_says_where_it_fails() -> None:
    """``json_value`` copies without formatting each value's path (the summary at the end of
    every run); the copy is the path-spelling version's, and a refused value or key still
    gets its path in the message."""
    import datetime as dt
    import math

    from trio_designer._sink._metadata import _json_value, json_value

    value = {
        "a": (1, 2.5, math.nan, -math.inf, True, None),
        3: [dt.date(2020, 1, 2), dt.datetime(2020, 1, 2, 3, 4, tzinfo=dt.UTC)],
        "nested": {"b": {"c": [{"d": "é"}]}, "e": ()},
    }
    assert json_value(value, "summary") == _json_value(value, "summary")
    assert json.dumps(json_value(value, "summary")) == json.dumps(_json_value(value, "summary"))
    with pytest.raises(TypeError, match=r"^summary\['nested'\]\['b'\]\[1\]: a object cannot"):
        json_value({"nested": {"b": [1, object()]}}, "summary")
    with pytest.raises(TypeError, match=r"^summary\['k'\]: the key True is not a string"):
        json_value({"k": {True: 1}}, "summary")


def test_indented_json_is_the_text_of_json_dumps_indent_2() -> None:
    """The record's encoder writes ``json.dumps(value, indent=2, allow_nan=False)``'s text for
    every JSON value, nested or empty, escaped or not; what it does not expect goes through
    ``json.dumps`` (its text, or its error)."""
    import enum
    import random
    from collections import OrderedDict

    from trio_designer._sink._metadata import indented_json

    class Small(enum.IntEnum):
        ONE = 1

    rng = random.Random(3)
    text = "é\n\"q\"\t\u2028\x00/"
    leaves = ["", "a", text, "🦉", 0, -7, 2**70, 0.1, -1.5e-300, 1e22, True, False, None]

    def value(depth: int) -> object:
        kind = rng.randrange(4 if depth < 4 else 1)
        if kind == 0:
            return rng.choice(leaves)
        if kind == 1:
            return [value(depth + 1) for _ in range(rng.randrange(4))]
        if kind == 2:
            return tuple(value(depth + 1) for _ in range(rng.randrange(3)))
        return {f"k{i}é": value(depth + 1) for i in range(rng.randrange(4))}

    samples = [value(0) for _ in range(300)]
    samples += [{}, [], {"a": {}, "b": [[]]}, Small.ONE, OrderedDict(z=1, a=2), {1: "int key"}]
    for sample in samples:
        assert indented_json(sample) == json.dumps(sample, indent=2, allow_nan=False)
    for bad in (float("nan"), {"x": [float("inf")]}, {"x": object()}):
        with pytest.raises((ValueError, TypeError)):
            indented_json(bad)
