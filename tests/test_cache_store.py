"""The response cache's store and keys: what a key covers, checksums, maintenance, processes.

The store is synchronous SQLite (``trio_designer/_cache/``); the slow tests start real Python
processes: one killed with SIGKILL in the middle of a batch's transaction (the store keeps
exactly the batches committed before, all readable), and two writing one store at once.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_designer import ConfigError
from trio_designer._cache import (
    KEY_VERSION,
    CacheStore,
    CellKey,
    RawAnswer,
    StoredAnswer,
    cache_key,
    decode_answer,
    encode_answer,
)
from trio_designer._cache._key import decode_fields, encode_fields
from trio_designer._cache._location import default_cache_dir, resolve_cache_dir
from trio_designer._cache._store import checksum
from trio_designer.cli import main
from trio_designer.models._cached import ResponseCache, _hit_response
from trio_designer.models._client import (
    ChatBodies,
    ChatResponse,
    Usage,
    _chat_body,
    encode_chat_body,
)

ROOT = Path(__file__).resolve().parents[1]


class _Message(Mapping[str, Any]):
    """A message that is a mapping but not a dict (the client copies it into one)."""

    def __init__(self, **fields: Any) -> None:
        self._fields = fields

    def __getitem__(self, name: str) -> Any:
        return self._fields[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)


REQUEST = {
    "model": "m",
    "messages": [{"role": "user", "content": "Tell me about jazz."}],
    "temperature": 0.7,
    "seed": 12,
}
CELL = CellKey(7, 3, "summary", 12)


def answer(text: str = "Jazz is a music.") -> RawAnswer:
    return RawAnswer(
        content=text,
        reasoning=None,
        input_tokens=5,
        output_tokens=4,
        reasoning_tokens=0,
        finish_reason="stop",
        model="m",
    )


def entry(n: int, *, seed: int = 7, column: str = "summary") -> StoredAnswer:
    key = hashlib.sha256(f"{seed}-{column}-{n}".encode()).digest()
    return StoredAnswer(key, seed, n, column, encode_answer(answer(f"answer {n}")))


# -- keys ---------------------------------------------------------------------------------


def body(request: dict[str, Any]) -> bytes:
    return encode_chat_body(
        request["model"],
        request["messages"],
        request.get("temperature"),
        None,
        None,
        request.get("response_format"),
        {k: v for k, v in request.items() if k not in ("model", "messages", "temperature")},
    )


def test_a_key_changes_with_everything_that_determines_the_answer() -> None:
    base = cache_key("http://x/v1", body(REQUEST), CELL)
    assert len(base) == 32
    assert cache_key("http://x/v1", body(REQUEST), CELL) == base
    variants = [
        cache_key("http://y/v1", body(REQUEST), CELL),
        cache_key("http://x/v1", body({**REQUEST, "temperature": 0.8}), CELL),
        cache_key("http://x/v1", body({**REQUEST, "model": "n"}), CELL),
        cache_key(
            "http://x/v1", body({**REQUEST, "response_format": {"type": "json_object"}}), CELL
        ),
        cache_key("http://x/v1", body({**REQUEST, "tools": [{"type": "function"}]}), CELL),
        cache_key(
            "http://x/v1",
            body({**REQUEST, "messages": [{"role": "user", "content": "Jazz?"}]}),
            CELL,
        ),
        cache_key("http://x/v1", body(REQUEST), CellKey(8, 3, "summary", 12)),  # run seed
        cache_key("http://x/v1", body(REQUEST), CellKey(7, 4, "summary", 12)),  # another row
        cache_key("http://x/v1", body(REQUEST), CellKey(7, 3, "trivia", 12)),  # another column
        cache_key("http://x/v1", body(REQUEST), CellKey(7, 3, "summary", 13)),  # another attempt
        cache_key("http://x/v1", body(REQUEST), CellKey(7, 3, "summary", None)),  # no seed drawn
    ]
    assert len({base, *variants}) == len(variants) + 1


def test_a_key_is_the_sha256_of_the_cell_line_and_the_body_sent() -> None:
    """The documented definition (``_cache/_key.py``, ``docs/cache.md``), version 2."""
    sent = body(REQUEST)
    line = '[2,"http://x/v1",7,3,"summary",12]'
    assert KEY_VERSION == 2
    assert (
        cache_key("http://x/v1", sent, CELL)
        == hashlib.sha256(line.encode() + b"\n" + sent).digest()
    )
    assert (  # the second time by the kept quoted names: the same key
        cache_key("http://x/v1", sent, CELL)
        == hashlib.sha256(line.encode() + b"\n" + sent).digest()
    )


@settings(max_examples=300, deadline=None)
@given(
    endpoint=st.text(max_size=20),
    column=st.text(max_size=20),
    run_seed=st.integers(0, 2**64) | st.booleans(),
    row=st.integers(0, 10**12),
    seed=st.none() | st.integers(0, 2**31 - 1) | st.booleans(),
)
def test_a_key_is_the_canonical_line_for_any_cell(
    endpoint: str, column: str, run_seed: int, row: int, seed: int | None
) -> None:
    """The hand-written cell line (names quoted once, ints as their repr) is the canonical
    JSON line, for any names (unicode, quotes, control characters, lone surrogates) and
    values, on the first call (the canonical encoder) and on later ones (the names kept)."""
    line = json.dumps(
        [KEY_VERSION, endpoint, run_seed, row, column, seed],
        ensure_ascii=False,
        separators=(",", ":"),
        sort_keys=True,
    )
    try:
        expected: bytes | type[Exception] = hashlib.sha256(
            line.encode() + b"\n" + b"{}"
        ).digest()
    except UnicodeEncodeError:
        expected = UnicodeEncodeError
    cell = CellKey(run_seed, row, column, seed)
    for _ in range(2):
        try:
            got: bytes | type[Exception] = cache_key(endpoint, b"{}", cell)
        except UnicodeEncodeError:
            got = UnicodeEncodeError
        assert got == expected


FORMAT = {"type": "json_schema", "json_schema": {"name": "n", "schema": {"b": 1, "a": [2]}}}


@pytest.mark.parametrize(
    ("model", "messages", "temperature", "top_p", "max_tokens", "response_format", "extra"),
    [
        ("m", [{"role": "user", "content": "Tell me."}], None, None, None, None, None),
        ("m", [{"role": "user", "content": 'é " \\ \n ✓ \u2028'}], 0.7, 0.5, 9, None, {"seed": 3}),
        (
            "m",
            ({"role": "system", "content": "s"}, {"role": "user", "content": "u"}),
            1,
            None,
            None,
            FORMAT,
            {"seed": 1, "tools": [{"type": "function"}]},
        ),
        ("m", [], 0.25, None, None, {"type": "json_object"}, {}),
        (
            "m",
            [{"role": "user", "content": [{"type": "text", "text": "x"}]}],
            None,
            None,
            4,
            FORMAT,
            {"zzz": {"y": 1.5, "x": None}, "aaa": True, 1: "a"},
        ),
        (
            "m",
            [{"role": "user", "content": "x"}],
            0.1,
            None,
            None,
            FORMAT,
            {"temperature": 0.9, "seed": 2},
        ),  # extra_body overrides a field: its place is kept
        (
            "m",
            [{"role": "user", "content": "x"}],
            None,
            None,
            None,
            None,
            {"response_format": {"type": "text"}},
        ),
        (
            "m",
            [_Message(role="user", content="a mapping, not a dict")],
            None,
            None,
            None,
            None,
            None,
        ),
        ("m", [{"role": "user", "content": "nan"}], float("nan"), None, None, None, None),
    ],
)
def test_chat_bodies_are_the_bytes_of_the_body(
    model: str,
    messages: Any,
    temperature: Any,
    top_p: Any,
    max_tokens: Any,
    response_format: Any,
    extra: Any,
) -> None:
    """The one-pass body (fields written in order, response formats' text kept) is byte for
    byte compact JSON of the body's dictionary, also the second time a format is seen."""
    expected = json.dumps(
        _chat_body(model, messages, temperature, top_p, max_tokens, response_format, extra),
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode()
    bodies = ChatBodies()
    for _ in range(2):
        got = bodies.encode(model, messages, temperature, top_p, max_tokens, response_format, extra)
        assert got == expected
    assert (
        encode_chat_body(model, messages, temperature, top_p, max_tokens, response_format, extra)
        == expected
    )


_TEXT = st.text(st.characters(codec=None, categories=None), max_size=40) | st.sampled_from(
    ['"', "\\", "\n\t\x00\x1f\x7f", "\u2028\u2029", "\ud800", "a\udfffb", "é ✓ 😀"]
)
_EXTRA = st.one_of(
    st.none(),
    st.just({}),
    st.just({"seed": 5}),
    st.just({"tools": [{"type": "function"}], "stop": ["\n"]}),
    st.just({"temperature": 0.9}),  # overrides a field: no template, the general path
)


def _full_body(
    bodies: ChatBodies, messages: Any, seed: int | None, extra: Any, fmt: Any, *, seeded: bool
) -> bytes | type[Exception]:
    """What the registry encoded before templates: ``_with_seed`` then ``ChatBodies.encode``
    (an exception type where it raises)."""
    merged = dict(extra or {})
    if seeded and seed is not None:
        merged.setdefault("seed", seed)
    try:
        return bodies.encode("m\u00e9", messages, 0.5, None, 64, fmt, merged or None)
    except (TypeError, ValueError) as exc:
        return type(exc)


@settings(max_examples=300, deadline=None)
@given(
    system=st.none() | _TEXT,
    prompt=_TEXT,
    seed=st.none() | st.integers(0, 2**31 - 1),
    extra=_EXTRA,
    with_format=st.booleans(),
    seeded=st.booleans(),
)
def test_a_body_template_gives_the_full_encodings_bytes(
    system: str | None,
    prompt: str,
    seed: int | None,
    extra: Any,
    with_format: bool,
    seeded: bool,
) -> None:
    """A column's body template (fixed text once, the messages and seed per request) gives
    byte for byte the body of the full encoding — the cache key hashes it — for arbitrary
    prompt text: unicode, quotes, backslashes, control characters; a lone surrogate (which
    UTF-8 cannot encode) is left to the full encoding, which raises."""
    bodies = ChatBodies()
    fmt = FORMAT if with_format else None
    messages: list[dict[str, Any]] = []
    if system is not None:
        messages.append({"role": "system", "content": system})
    messages.append({"role": "user", "content": prompt})
    expected = _full_body(bodies, messages, seed, extra, fmt, seeded=seeded)
    template = bodies.template("m\u00e9", 0.5, None, 64, fmt, extra, seeded=seeded)
    if (extra is not None and "temperature" in extra) or (seeded and extra and "seed" in extra):
        assert template is None
        return
    assert template is not None
    got = template.body(messages, seed)
    if got is None:  # not covered: the caller encodes in full (same bytes, or its error)
        assert isinstance(expected, type) or (seeded and seed is None)
    else:
        assert got == expected


def test_a_body_template_leaves_unusual_messages_to_the_full_encoding() -> None:
    template = ChatBodies().template("m", None, None, None, None, None, seeded=True)
    assert template is not None
    assert template.body([_Message(role="user", content="x")], 1) is None
    assert template.body([{"role": "user", "content": object()}], 1) is None
    assert template.body([{"role": "user", "content": "x"}], True) is None  # not an int
    assert template.body([{"role": "user", "content": "a\ud800"}], 1) is None  # not UTF-8
    assert template.body(({"role": "user", "content": "x"},), 7) == (
        b'{"model":"m","messages":[{"role":"user","content":"x"}],"seed":7}'
    )


def test_a_hits_response_equals_the_keyword_built_one() -> None:
    """``_hit_response`` sets ChatResponse's slots directly: it must give the object the
    keyword ``__init__`` gives, every field included (a field added later is set to its
    default, which must be a plain value: a factory would be shared by every hit)."""
    usage = Usage(input_tokens=3, output_tokens=4, reasoning_tokens=1)
    built = _hit_response("c", "r", usage, "stop", "m")
    expected = ChatResponse(
        content="c", reasoning="r", usage=usage, finish_reason="stop", model="m", cached=True
    )
    assert built == expected
    assert attrs.asdict(built) == attrs.asdict(expected)
    for field in attrs.fields(ChatResponse):
        assert not isinstance(field.default, attrs.Factory), field.name
    refused = ChatResponse(
        content="", reasoning=None, usage=usage, finish_reason="stop", model="m"
    )
    assert (refused.refusal, refused.tool_calls) == (None, 0)  # what a hit carries


def test_chat_bodies_refuse_what_json_refuses() -> None:
    with pytest.raises(TypeError):
        ChatBodies().encode(
            "m", [{"role": "user", "content": object()}], None, None, None, None, None
        )


def test_an_answer_round_trips_and_garbage_is_refused() -> None:
    raw = RawAnswer(
        content="ü ✓",
        reasoning="because",
        input_tokens=1,
        output_tokens=2,
        reasoning_tokens=1,
        finish_reason=None,
        model="m",
    )
    assert decode_answer(encode_answer(raw)) == raw
    for bad in (b"[]", b'{"content": "x"}', b'["x", null, 1, 2, 3, "stop"]', b"\xff"):
        with pytest.raises(ValueError):  # noqa: PT011 (json's own errors are ValueErrors too)
            decode_answer(bad)


@settings(max_examples=300, deadline=None)
@given(
    content=_TEXT,
    reasoning=st.none() | _TEXT,
    counts=st.tuples(st.integers(0, 2**40), st.integers(0, 2**40), st.integers(0, 2**40))
    | st.just((True, 0, False)),
    finish=st.none() | _TEXT,
    model=_TEXT,
)
def test_a_stored_answer_is_the_json_encoders_text(
    content: str,
    reasoning: str | None,
    counts: tuple[int, int, int],
    finish: str | None,
    model: str,
) -> None:
    """The stored value written by hand is byte for byte the compact JSON of the fields'
    list (any text: quotes, control characters, unicode; a lone surrogate raises as the
    encoder's text does; bools go the encoder's way), and decodes to the same fields."""
    fields = [content, reasoning, *counts, finish, model]
    try:
        expected: bytes | type[Exception] = json.dumps(
            fields, ensure_ascii=False, separators=(",", ":")
        ).encode("utf-8")
    except UnicodeEncodeError:
        expected = UnicodeEncodeError
    try:
        got: bytes | type[Exception] = encode_fields(content, reasoning, *counts, finish, model)
    except UnicodeEncodeError:
        got = UnicodeEncodeError
    assert got == expected
    if isinstance(got, bytes) and type(counts[0]) is int:
        assert decode_fields(got) == (content, reasoning, *counts, finish, model)


def test_put_many_stores_blobs_read_back_as_bytes_with_their_checksum(tmp_path: Path) -> None:
    """Blobs are bound as bytearrays (no adapter protocol): what is read back is the same
    bytes, as BLOBs, with a checksum equal to ``checksum`` (blake2b of key + value) — what
    every release verifies."""
    with CacheStore(tmp_path) as store:
        rows = [(b"k" * 32, 7, 0, "summary", b'["a",null,1,2,0,"stop","m"]')]
        assert store.put_many(rows, now=5.0) == 1
        assert store.put_many([entry(1)], now=5.0) == 1  # a StoredAnswer, too
        assert store.get(b"k" * 32) == rows[0][4]
        assert store.get(entry(1).key) == entry(1).value
    with sqlite3.connect(tmp_path / "responses.sqlite3") as db:
        stored = db.execute(
            "SELECT typeof(key), typeof(value), typeof(checksum), key, value, checksum "
            "FROM answers ORDER BY row"
        ).fetchall()
    db.close()
    assert stored[0][:3] == ("blob", "blob", "blob")
    key, value, check = stored[0][3:]
    assert (type(key), type(value)) == (bytes, bytes)
    assert check == checksum(key, value) == hashlib.blake2b(key + value, digest_size=16).digest()


@pytest.mark.parametrize("size", [1, 2, 3, 7, 63, 64, 65, 100, 128, 129, 513])
def test_put_many_writes_every_row_of_a_batch_of_any_size(tmp_path: Path, size: int) -> None:
    """A batch is written in multi-row statements of 64, 32, ... 1 rows: every row of any
    size lands once, a key repeated in the batch or already stored is left alone (the first
    answer kept), and the count returned is the rows that were new."""
    with CacheStore(tmp_path) as store:
        assert store.put_many([entry(n) for n in range(0, size, 2)], now=1.0) == len(
            range(0, size, 2)
        )
        batch: list[Any] = [entry(n) for n in range(size)]
        batch += [(e.key, e.run_seed, e.row, e.column, b"a later answer") for e in batch[:3]]
        assert store.put_many(batch, now=2.0) == size - len(range(0, size, 2))
        loaded = store.load_rows(7, 0, size, ["summary"]).values
        assert loaded == {entry(n).key: entry(n).value for n in range(size)}
        assert store.put_many([], now=3.0) == 0


def test_the_default_directory_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "trio_designer"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == Path.home() / ".cache" / "trio_designer"
    assert resolve_cache_dir("~/x") == Path.home() / "x"


# -- the store ----------------------------------------------------------------------------


def test_stored_answers_are_found_by_row_range_and_column(tmp_path: Path) -> None:
    with CacheStore(tmp_path) as store:
        assert store.put_many([entry(n) for n in range(10)]) == 10
        assert store.put_many([entry(n) for n in range(5, 12)]) == 2  # the first answer stays
        store.put_many([entry(3, seed=8), entry(4, column="trivia")])
        loaded = store.load_rows(7, 2, 6, ["summary"])
        assert sorted(decode_answer(v).content for v in loaded.values.values()) == [
            f"answer {n}" for n in range(2, 6)
        ]
        assert len(store.load_rows(7, 0, 100, ["summary", "trivia"]).values) == 13
        assert store.load_rows(7, 0, 100, []).values == {}
        assert store.get(entry(1).key) == entry(1).value
        assert store.get(b"\0" * 32) is None
        assert store.stats().entries == 14


def test_a_value_that_does_not_match_its_checksum_is_never_served(tmp_path: Path) -> None:
    with CacheStore(tmp_path) as store:
        store.put_many([entry(n) for n in range(3)])
    with sqlite3.connect(tmp_path / "responses.sqlite3") as db:
        db.execute("UPDATE answers SET value = ? WHERE row = 1", (b'["forged"]',))
    with CacheStore(tmp_path) as store:
        loaded = store.load_rows(7, 0, 3, ["summary"])
        assert loaded.corrupt == 1
        assert entry(1).key not in loaded.values
        assert len(loaded.values) == 2
        assert store.get(entry(1).key) is None


def test_prune_and_clear(tmp_path: Path) -> None:
    with CacheStore(tmp_path) as store:
        store.put_many([entry(n) for n in range(4)], now=1000.0)
        store.put_many([entry(n) for n in range(4, 6)], now=5000.0)
        stats = store.stats()
        assert (stats.entries, stats.oldest, stats.newest) == (6, 1000.0, 5000.0)
        assert store.prune(2000.0, now=5100.0) == 4
        assert store.stats().entries == 2
        assert store.clear() == 2
        assert store.stats().entries == 0


SCHEMA_1 = (
    "CREATE TABLE IF NOT EXISTS answers (key BLOB PRIMARY KEY, run_seed INTEGER NOT NULL, "
    "row INTEGER NOT "
    "NULL, col TEXT NOT NULL, value BLOB NOT NULL, checksum BLOB NOT NULL, created REAL NOT "
    "NULL) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS answers_by_cell ON answers (run_seed, row)",
    "CREATE INDEX IF NOT EXISTS answers_by_age ON answers (created)",
)
"""What a release before schema 2 creates (and runs again at every open)."""

OLD_INSERT = (
    "INSERT OR IGNORE INTO answers (key, run_seed, row, col, value, checksum, created) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)


def old_release_writes(path: Path, entries: list[StoredAnswer], created: float) -> None:
    """Open ``path`` and insert ``entries`` as a release before schema 2 does."""
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA journal_mode = WAL")
        for statement in SCHEMA_1:
            db.execute(statement)
        db.execute("PRAGMA user_version = 1")
        db.executemany(
            OLD_INSERT,
            [
                (e.key, e.run_seed, e.row, e.column, e.value, checksum(e.key, e.value), created)
                for e in entries
            ],
        )
    db.close()


def test_a_schema_1_store_is_migrated_and_its_entries_are_never_loaded(tmp_path: Path) -> None:
    """A store written by a release before schema 2 (version-1 keys) opens: its entries are
    kept as key version 1 (counted as stale, pruned by age as before), never loaded by a run;
    that release can still write to and read the migrated store."""
    path = tmp_path / "responses.sqlite3"
    old_release_writes(path, [entry(n) for n in range(5)], created=1000.0)
    with CacheStore(tmp_path) as store:
        assert store.load_rows(7, 0, 10, ["summary"]).values == {}
        assert len(store.load_rows(7, 0, 10, ["summary"], key_version=1).values) == 5
        assert store.put_many([entry(n) for n in range(3)], now=2000.0) == 3  # now version 2
        assert len(store.load_rows(7, 0, 10, ["summary"]).values) == 3
        stats = store.stats()
        assert (stats.entries, stats.stale, stats.oldest) == (8, 5, 1000.0)
    # The old release again: its CREATE INDEX and INSERT work on the new table.
    old_release_writes(path, [entry(n) for n in range(5, 7)], created=3000.0)
    with CacheStore(tmp_path) as store:
        assert len(store.load_rows(7, 0, 10, ["summary"]).values) == 3
        assert len(store.load_rows(7, 0, 10, ["summary"], key_version=1).values) == 7
        assert store.prune(1500.0, now=3100.0) == 5  # the first old entries (age 2,100 s)
        assert (store.stats().entries, store.stats().stale) == (5, 2)
    with sqlite3.connect(path) as db:
        names = {r[0] for r in db.execute("SELECT name FROM sqlite_schema")}
        assert names == {"answers", "answers_by_age"}  # the old index dropped again
        assert db.execute("PRAGMA user_version").fetchone() == (2,)
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    db.close()


def test_a_row_groups_lookup_reads_one_range_of_the_primary_key(tmp_path: Path) -> None:
    """The query plan of :meth:`CacheStore.load_rows`: a search of the primary key on key
    version, run seed and row range. Entries of other key versions or run seeds are outside
    the range: never read, however many there are."""
    with CacheStore(tmp_path) as store:
        store.put_many([entry(n) for n in range(3)])
        store.put_many([entry(n) for n in range(3)], key_version=1)
        plan = store._db.execute(
            "EXPLAIN QUERY PLAN SELECT key, value, checksum FROM answers WHERE key_version = ? "
            "AND run_seed = ? AND row >= ? AND row < ? AND col IN (?, ?)",
            (KEY_VERSION, 7, 0, 10, "a", "b"),
        ).fetchall()
        details = " ".join(row[-1] for row in plan)
        search = (
            "SEARCH answers USING PRIMARY KEY (key_version=? AND run_seed=? AND row>? AND row<?)"
        )
        assert search in details
        assert "SCAN" not in details
        loaded = store.load_rows(7, 0, 10, ["summary"])
        assert len(loaded.values) == 3
        assert store.stats().stale == 3


def test_stores_opened_at_once_migrate_once(tmp_path: Path) -> None:
    """Four stores (connections) opening one schema-1 file at the same time: one migrates, the
    others wait for its transaction and find the work done; no entry is lost or doubled."""
    import threading

    old_release_writes(tmp_path / "responses.sqlite3", [entry(n) for n in range(50)], 1.0)
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def open_store() -> None:
        try:
            start.wait(timeout=10)
            with CacheStore(tmp_path) as store:
                store.put_many([entry(n, column="trivia") for n in range(10)])
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    with CacheStore(tmp_path) as store:
        stats = store.stats()
        assert (stats.entries, stats.stale) == (60, 50)


def test_an_unusable_directory_is_a_config_error_naming_the_remedies(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError) as info:
        CacheStore(blocker / "cache")
    assert "cache_dir=" in str(info.value)  # the CLI says --cache-dir (tests/test_messages.py)
    assert "cache=False" in str(info.value)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "responses.sqlite3").write_bytes(b"this is not a database" * 100)
    with pytest.raises(ConfigError):
        CacheStore(tmp_path / "bad")


# -- the run's view -------------------------------------------------------------------------


def response(text: str) -> ChatResponse:
    return ChatResponse(
        content=text, reasoning=None, usage=Usage(input_tokens=1), finish_reason="stop", model="m"
    )


async def test_queued_answers_are_written_when_the_cache_closes(tmp_path: Path) -> None:
    async with ResponseCache.open(tmp_path) as cache:
        await cache.prefetch(0, 7, 0, 10, ["summary"])
        assert not cache.may_hit(0)
        for row in range(3):
            cache.put(bytes([row]) * 32, CellKey(7, row, "summary", 1), response(f"r{row}"))
        hit = cache.get(bytes([1]) * 32)  # kept for a retry of the same cell
        assert hit is not None
        assert (hit.content, hit.cached) == ("r1", True)
        cache.forget_group(0)
        assert cache.get(bytes([1]) * 32) is None
    with CacheStore(tmp_path) as store:
        assert store.stats().entries == 3
    async with ResponseCache.open(tmp_path) as cache:
        await cache.prefetch(0, 7, 0, 10, ["summary"])
        assert cache.may_hit(0)
        assert cache.statistics().loaded == 3


async def test_a_store_that_cannot_write_never_fails_the_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: Any, **kwargs: Any) -> int:
        raise sqlite3.OperationalError("database or disk is full")

    async with ResponseCache.open(tmp_path) as cache:
        cache._store.put_many = broken  # type: ignore[method-assign]
        for row in range(3):
            cache.put(bytes([row]) * 32, CellKey(7, row, "summary", 1), response("x"))
        await cache.flush()
        cache.put(b"\x09" * 32, CellKey(7, 9, "summary", 1), response("x"))
    assert cache.statistics().write_errors == 4
    assert len([r for r in caplog.records if "could not store" in r.message]) == 1


# -- the command line -------------------------------------------------------------------------


def test_cache_stats_prune_and_clear(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with CacheStore(tmp_path) as store:
        store.put_many([entry(n) for n in range(3)], now=1.0)
        store.put_many([entry(n) for n in range(3, 5)])
    assert main(["cache", "stats", "--cache-dir", str(tmp_path)]) == 0
    assert "entries: 5" in capsys.readouterr().out
    assert main(["cache", "--cache-dir", str(tmp_path), "prune", "--older-than", "30d"]) == 0
    assert "deleted 3 entries" in capsys.readouterr().out
    assert (
        main(["cache", "prune", "--older-than", "3 fortnights", "--cache-dir", str(tmp_path)]) == 2
    )
    assert "is not a duration" in capsys.readouterr().err
    assert main(["cache", "clear", "--cache-dir", str(tmp_path)]) == 0
    assert "deleted 2 entries" in capsys.readouterr().out


def test_cache_stats_counts_entries_of_older_key_versions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with CacheStore(tmp_path) as store:
        store.put_many([entry(n) for n in range(3)])
    assert main(["cache", "stats", "--cache-dir", str(tmp_path)]) == 0
    assert "stale:" not in capsys.readouterr().out
    with CacheStore(tmp_path) as store:
        store.put_many([entry(n) for n in range(2)], key_version=KEY_VERSION - 1)
    assert main(["cache", "stats", "--cache-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "entries: 5" in out
    assert "stale:   2 entries stored under older keys" in out


# -- processes --------------------------------------------------------------------------------

WRITER = textwrap.dedent(
    """
    import hashlib, sys, time
    from trio_designer._cache import CacheStore, StoredAnswer

    directory, name, batches, size, stall = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:])
    store = CacheStore(directory)

    def batch(n):
        for i in range(size):
            key = hashlib.sha256(f"{n}-{i}".encode()).digest()
            yield StoredAnswer(key, 0, n * size + i, name, b'["' + b"x" * 2000 + b'"]')

    for n in range(batches):
        if n == stall:
            calls = []
            def mid_transaction():
                # Inside this batch's transaction, some INSERTs done: tell the parent, wait.
                if store._db.in_transaction:
                    calls.append(1)
                    if len(calls) == 5:
                        print("mid", flush=True)
                        time.sleep(60)
                return 0
            store._db.set_progress_handler(mid_transaction, 100)
        store.put_many(list(batch(n)))
    print("done", flush=True)
    """
)


def writer(
    directory: Path, name: str, batches: int, size: int, stall: int = -1
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(directory), name, str(batches), str(size), str(stall)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


@pytest.mark.slow
def test_a_writer_killed_in_the_middle_of_a_batch_leaves_no_torn_answer(tmp_path: Path) -> None:
    """SIGKILL lands inside the third batch's transaction (the writer says when it is there):
    the store then holds exactly the first two batches, every value matching its checksum,
    and takes new writes."""
    with writer(tmp_path, "c", batches=5, size=300, stall=2) as process:
        try:
            assert process.stdout is not None
            assert process.stdout.readline().strip() == "mid"
            process.send_signal(signal.SIGKILL)
        finally:
            process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    with CacheStore(tmp_path) as store:
        loaded = store.load_rows(0, 0, 10_000, ["c"])
        assert (len(loaded.values), loaded.corrupt) == (600, 0)
        assert store.put_many([entry(1)]) == 1
    with sqlite3.connect(tmp_path / "responses.sqlite3") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


@pytest.mark.slow
def test_two_processes_share_one_store(tmp_path: Path) -> None:
    """Two processes write overlapping answers at once: neither fails on the other's lock,
    every answer is stored once, all readable."""
    with writer(tmp_path, "c", batches=40, size=50) as a, writer(tmp_path, "c", 40, 50) as b:
        outputs = [p.communicate(timeout=120)[0] for p in (a, b)]
    assert [a.returncode, b.returncode] == [0, 0]
    assert outputs == ["done\n", "done\n"]
    with CacheStore(tmp_path) as store:
        loaded = store.load_rows(0, 0, 10_000, ["c"])
    assert (len(loaded.values), loaded.corrupt) == (2000, 0)


@pytest.mark.slow
@pytest.mark.deadline(120)
async def test_two_concurrent_cli_runs_share_one_cache(tmp_path: Path) -> None:
    """Two ``trio-designer run`` processes at once on one cache directory (the built-in
    simulator in each); a third run then finds every answer: it sends nothing."""
    from trio_designer import PipelineConfig, TrioDesigner

    deep = ROOT / "examples" / "deep.yaml"
    cache = tmp_path / "cache"
    command = [sys.executable, "-m", "trio_designer", "run", str(deep), "-n", "30"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    async def run(name: str) -> None:
        argv = [*command, "-o", str(tmp_path / name), "--cache-dir", str(cache)]
        await trio.run_process([*argv, "--progress", "none"], env=env)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run, "a")
        nursery.start_soon(run, "b")
    with CacheStore(cache) as store:
        assert store.stats().entries == 30 * 5
    config = PipelineConfig.from_file(deep)
    result = await TrioDesigner(cache_dir=cache).create(
        config, num_records=30, output_dir=tmp_path / "c"
    )
    assert result.cache["misses"] == 0
    assert result.cache["hits"] == 30 * 5
    assert result.table.equals(_table(tmp_path / "a"))


def _table(output_dir: Path) -> Any:
    import pyarrow.dataset as ds

    return ds.dataset(str(output_dir / "parquet-files"), format="parquet").to_table()


async def test_answers_queued_after_a_flush_are_written_by_the_writers_timer(
    tmp_path: Path, autojump_clock: Any
) -> None:
    """``put`` wakes the writer only when the queue was empty (``ResponseCache.put``'s
    invariant): answers queued before, between and after flushes are all written by the
    writer's own cadence, without waiting for the cache to close."""
    from trio_designer.models import _cached

    def stored() -> int:
        with CacheStore(tmp_path) as store:
            return store.stats().entries

    async with ResponseCache.open(tmp_path) as cache:
        await cache.prefetch(0, 7, 0, 10, ["summary"])
        for row in range(3):  # the first wakes the writer, the others find it awake
            cache.put(bytes([row]) * 32, CellKey(7, row, "summary", 1), response("a"))
        await trio.sleep(_cached.FLUSH_INTERVAL + 0.5)
        assert stored() == 3
        cache.put(b"\x03" * 32, CellKey(7, 3, "summary", 1), response("b"))
        await cache.flush()  # a flush by the engine (a row group's checkpoint)
        for row in range(4, 6):  # queued after it: the writer must be woken again
            cache.put(bytes([row]) * 32, CellKey(7, row, "summary", 1), response("c"))
        await trio.sleep(_cached.FLUSH_INTERVAL + 0.5)
        assert stored() == 6
        cache.put(b"\x06" * 32, CellKey(7, 6, "summary", 1), response("d"))
        await trio.sleep(_cached.FLUSH_INTERVAL + 0.5)
        assert stored() == 7
        assert cache.get(b"\x05" * 32) is not None  # kept for a retry of its cell


def test_a_new_store_has_no_age_index_and_an_earlier_ones_is_kept(tmp_path: Path) -> None:
    """New stores are made without the index on ``created`` (every insert paid for it; it
    served ``prune`` alone); a store that has it (made by an earlier release, or given it back
    by a schema-2 release's ``CREATE INDEX IF NOT EXISTS``) is used as it is, no rewrite at
    open, and ``prune`` works the same on both."""

    def names(path: Path) -> set[str]:
        with sqlite3.connect(path / "responses.sqlite3") as db:
            found = {r[0] for r in db.execute("SELECT name FROM sqlite_schema")}
        db.close()
        return found

    for index in (False, True):
        directory = tmp_path / str(index)
        with CacheStore(directory) as store:
            store.put_many([entry(n) for n in range(3)], now=1000.0)
        assert names(directory) == {"answers"}
        if index:  # what a schema-2 release does when it opens this store
            with sqlite3.connect(directory / "responses.sqlite3") as db:
                db.execute("CREATE INDEX IF NOT EXISTS answers_by_age ON answers (created)")
            db.close()
        with CacheStore(directory) as store:
            store.put_many([entry(n) for n in range(3, 5)], now=3000.0)
            assert store.prune(1500.0, now=3100.0) == 3
            assert store.stats().entries == 2
        assert names(directory) == ({"answers", "answers_by_age"} if index else {"answers"})
