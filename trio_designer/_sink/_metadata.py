"""The run record: what ``metadata.json`` holds, and its JSON form (both directions).

A row group *is written* when its entry is in the run record: the sinks rename a row group's
file into place first and commit its :class:`RowGroupEntry` second, so the record only ever
lists files that exist (field by field in ``docs/output-layout.md``).

The record is rewritten whole (atomically) once per row group: O(row groups) bytes per write,
fine for thousands of row groups. XX: batch commits if runs with 10⁵ row groups appear.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import math
from collections.abc import Mapping
from typing import Any, Final

import attrs
import pyarrow as pa
import pyarrow.ipc

from .._core._jsonenc import indented_text
from .._exceptions import OUTPUT_DIR_ARGUMENT, SinkError
from ._layout import METADATA_FILE

__all__ = [
    "FORMAT_VERSION",
    "RecordEncoder",
    "RowGroupEntry",
    "RunMetadata",
    "json_value",
    "utc_now",
]

FORMAT_VERSION: Final = 1
"""Version of the ``metadata.json`` layout; bumped on any incompatible change."""


@attrs.frozen(kw_only=True)
class RowGroupEntry:
    """One written row group in the run record.

    Attributes:
      file: path of its parquet file relative to the output directory, or ``None`` when every
        row of the row group was dropped (no file is written for an empty row group).
      rows: rows stored (the row group's surviving rows).
      requested_rows: rows the row group was asked to produce; ``requested_rows - rows`` were
        dropped.
      cells: path of its provenance file (one record per cell), or ``None`` (none was written:
        a record from before provenance, or a sink given no cell log). Left out of the JSON
        when ``None``.
      partial: the row group was cut short by an early shutdown (the error-rate gate): only
        the rows complete in every column when the run stopped are stored. A resume generates
        it again whole and replaces the entry and its files. Left out of the JSON when false.
    """

    file: str | None
    rows: int
    requested_rows: int
    cells: str | None = None
    partial: bool = False

    def to_json_dict(self) -> dict[str, Any]:
        data = attrs.asdict(self)
        if self.cells is None:
            del data["cells"]
        if not self.partial:
            del data["partial"]
        return data

    @property
    def files(self) -> tuple[str, ...]:
        """Every file the entry names (data and provenance)."""
        return tuple(f for f in (self.file, self.cells) if f is not None)


#: The key of a run summary (``RunMetadata.summary``) that counts the row groups a resumed run
#: found already written and so did not generate: equal to ``num_row_groups`` when a resume
#: had nothing left to do (its counts are then all zero, and ``inspect`` says why).
SUMMARY_ROW_GROUPS_FOUND = "row_groups_found_on_disk"


@attrs.frozen(kw_only=True)
class RunMetadata:
    """The run record: the content of ``metadata.json`` (field by field in
    ``docs/output-layout.md``).

    ``config`` and ``summary`` hold dicts, so instances compare by value but are not hashable.
    """

    fingerprint: str
    config: Mapping[str, Any]
    num_records: int
    row_group_size: int
    status: str
    started_at: str
    updated_at: str
    finished_at: str | None = None
    schema: pa.Schema | None = None
    row_groups: Mapping[int, RowGroupEntry] = attrs.field(factory=dict)
    summary: Mapping[str, Any] = attrs.field(factory=dict)
    fingerprint_basis: Mapping[str, Any] | None = None
    """What ``fingerprint`` is the hash of (config, code digests, input files); ``None`` in
    records written before it was kept."""
    forced_resumes: tuple[Mapping[str, Any], ...] = ()
    """One entry per resume forced past a changed fingerprint: when, from which fingerprint,
    and what had changed."""

    @property
    def rows_written(self) -> int:
        """Rows stored over every written row group."""
        return sum(entry.rows for entry in self.row_groups.values())

    @property
    def num_row_groups(self) -> int:
        """How many row groups the run has in total (the last one may be short)."""
        return -(-self.num_records // self.row_group_size)

    def with_entry(
        self, row_group: int, entry: RowGroupEntry, *, schema: pa.Schema | None, now: str
    ) -> RunMetadata:
        """A copy with one more written row group (and the run's schema, once known)."""
        row_groups = {**self.row_groups, row_group: entry}
        return attrs.evolve(self, row_groups=row_groups, schema=schema, updated_at=now)

    def to_json_dict(self) -> dict[str, Any]:
        """The JSON document (derived counts included, big ``config`` last)."""
        data = self._json_head()
        data["fingerprint_basis"] = json_value(self.fingerprint_basis, "fingerprint_basis")
        data["config"] = json_value(self.config, "config")
        return data

    def _json_head(self) -> dict[str, Any]:
        """The document without its two last members, ``fingerprint_basis`` and ``config``
        (which do not change while a run writes; :class:`RecordEncoder` encodes them once)."""
        return {
            "format_version": FORMAT_VERSION,
            "fingerprint": self.fingerprint,
            "status": self.status,
            "num_records": self.num_records,
            "row_group_size": self.row_group_size,
            "num_row_groups": self.num_row_groups,
            "rows_written": self.rows_written,
            "started_at": self.started_at,
            "updated_at": self.updated_at,
            "finished_at": self.finished_at,
            "schema": None if self.schema is None else _schema_to_json(self.schema),
            "row_groups": {
                str(rg): self.row_groups[rg].to_json_dict() for rg in sorted(self.row_groups)
            },
            "summary": json_value(self.summary, "summary"),
            "forced_resumes": json_value(list(self.forced_resumes), "forced_resumes"),
        }

    @classmethod
    def from_json_dict(cls, data: Any, *, where: str) -> RunMetadata:
        """Parse a ``metadata.json`` document.

        Raises:
          SinkError: the document is not a run record of this format version; ``where`` names
            the file in the message.
        """
        try:
            return _parse_metadata(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise SinkError(
                f"{where} is not a trio_designer run record ({exc}); pass another "
                f"{OUTPUT_DIR_ARGUMENT} or remove the directory."
            ) from exc


class RecordEncoder:
    """``metadata.json``'s bytes for a record: ``json.dumps(meta.to_json_dict(), indent=2,
    allow_nan=False)`` plus a newline, byte for byte (``tests/test_sink_record.py``), with the
    two members that stay the same through a run — ``fingerprint_basis`` and ``config``, two
    thirds of the document and of its encoding time — normalised and encoded once.

    The record is rewritten whole at every commit, and the last write (the final record) is
    on the path from a run's last answer to ``create()`` returning; with indentation, ``json``
    uses its pure-Python encoder. A member is reused while the record holds the *same object*
    (``is``): records are frozen values and their mappings are never changed in place, so an
    equal object is the only way a member changes (``attrs.evolve`` keeps the others).
    Not thread-safe: one encoder per sink, used by one write at a time.
    """

    def __init__(self) -> None:
        self._known: dict[str, tuple[object, str]] = {}

    def encode(self, meta: RunMetadata) -> bytes:
        head = indented_json(meta._json_head())
        tail = [
            self._member("fingerprint_basis", meta.fingerprint_basis),
            self._member("config", meta.config),
        ]
        # ``head`` ends with "\n}"; the members go before that, indented one level.
        return (head[:-2] + ",\n" + ",\n".join(tail) + "\n}\n").encode()

    def _member(self, key: str, value: object) -> str:
        known = self._known.get(key)
        if known is not None and known[0] is value:
            return known[1]
        text = indented_json(json_value(value, key))
        # Raw newlines only appear between tokens (a string's are escaped): re-indent safely.
        member = f"  {json.dumps(key)}: {text.replace(chr(10), chr(10) + '  ')}"
        self._known[key] = (value, member)
        return member


def indented_json(value: Any) -> str:
    """``json.dumps(value, indent=2, allow_nan=False)``, the same text, about twice as fast for
    a record (``json`` encodes indented documents with its pure-Python, generator-based
    encoder): :func:`~trio_designer._core._jsonenc.indented_text` with the record's options.
    Anything it does not expect (a non-string key, NaN, another type) goes through
    ``json.dumps``, for its text or its error."""
    return indented_text(value, ensure_ascii=True, allow_nan=False)


def _parse_metadata(data: Any) -> RunMetadata:
    if not isinstance(data, dict):
        raise TypeError("the document is not a JSON object")
    version = data["format_version"]
    if version != FORMAT_VERSION:
        raise ValueError(f"format_version is {version!r}, this version reads {FORMAT_VERSION}")
    finished_at = data.get("finished_at")
    return RunMetadata(
        fingerprint=_typed(data, "fingerprint", str),
        config=_typed(data, "config", dict),
        num_records=_typed(data, "num_records", int),
        row_group_size=_typed(data, "row_group_size", int),
        status=_typed(data, "status", str),
        started_at=_typed(data, "started_at", str),
        updated_at=_typed(data, "updated_at", str),
        finished_at=None if finished_at is None else str(finished_at),
        schema=None if data["schema"] is None else _schema_from_json(data["schema"]),
        row_groups={
            int(rg): RowGroupEntry(
                file=_optional_str(entry, "file"),
                rows=_typed(entry, "rows", int),
                requested_rows=_typed(entry, "requested_rows", int),
                cells=_optional_str(entry, "cells") if "cells" in entry else None,
                partial=bool(entry.get("partial", False)),
            )
            for rg, entry in _typed(data, "row_groups", dict).items()
        },
        summary=_typed(data, "summary", dict),
        fingerprint_basis=_optional_dict(data, "fingerprint_basis"),
        forced_resumes=tuple(data.get("forced_resumes") or ()),
    )


def _optional_dict(data: Mapping[str, Any], key: str) -> dict[str, Any] | None:
    value = data.get(key)
    if value is not None and not isinstance(value, dict):
        raise TypeError(f"field {key!r} should be an object or null, not {value!r}")
    return value


def _schema_to_json(schema: pa.Schema) -> dict[str, Any]:
    """The run's Arrow schema: readable column types, and the exact schema for resuming.

    Parquet cannot store every Arrow type as is (``timestamp[s]`` comes back as
    ``timestamp[ms]``), so the exact schema is kept here rather than re-read from a file.
    """
    return {
        "columns": [{"name": field.name, "type": str(field.type)} for field in schema],
        "arrow_ipc": base64.b64encode(schema.serialize().to_pybytes()).decode("ascii"),
    }


def _schema_from_json(data: Any) -> pa.Schema:
    if not isinstance(data, dict):
        raise TypeError(f"field 'schema' should be an object, not {data!r}")
    encoded = _typed(data, "arrow_ipc", str)
    try:
        return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(encoded, validate=True)))
    except (pa.ArrowException, binascii.Error) as exc:
        raise ValueError(f"field 'schema.arrow_ipc' does not hold an Arrow schema ({exc})") from exc


def _typed(data: Mapping[str, Any], key: str, kind: type[Any]) -> Any:
    value = data[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise TypeError(f"field {key!r} should be a {kind.__name__}, not {value!r}")
    return value


def _optional_str(data: Mapping[str, Any], key: str) -> str | None:
    value = data[key]
    if value is not None and not isinstance(value, str):
        raise TypeError(f"field {key!r} should be a string or null, not {value!r}")
    return value


def json_value(value: Any, where: str) -> Any:
    """A JSON-compatible copy of ``value``.

    Tuples become lists, ``datetime``/``date`` become ISO strings, and non-finite floats
    (NaN, ±inf, which JSON cannot spell) become ``None``; anything else non-JSON is refused.

    Raises:
      TypeError: a value of another type; the message gives its path (``summary['x'][2]``).
    """
    try:
        return _json_copy(value)
    except _NotJson:  # again, spelling out each value's path, to say where
        return _json_value(value, where)


class _NotJson(Exception):
    """A value or key :func:`json_value` refuses (found by :func:`_json_copy`)."""


def _json_copy(value: Any) -> Any:
    """:func:`json_value` without the paths of the values (each one an f-string, most of its
    cost; the run summary is converted at the end of every run, on the way to ``create()``
    returning): the same copy, or ``_NotJson``."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {
            key if isinstance(key, str) else _json_copy_key(key): _json_copy(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_json_copy(item) for item in value]
    if isinstance(value, dt.date):  # datetime is a date too
        return value.isoformat()
    raise _NotJson


def _json_copy_key(key: Any) -> str:
    if isinstance(key, int) and not isinstance(key, bool):
        return str(key)
    raise _NotJson


def _json_value(value: Any, where: str) -> Any:
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dt.date):  # datetime is a date too
        return value.isoformat()
    if isinstance(value, Mapping):
        return {_json_key(k, where): _json_value(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_value(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise TypeError(
        f"{where}: a {type(value).__name__} cannot be stored in {METADATA_FILE}; use JSON types "
        f"(dict, list, str, int, float, bool, None)."
    )


def _json_key(key: Any, where: str) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, int) and not isinstance(key, bool):
        return str(key)
    raise TypeError(f"{where}: the key {key!r} is not a string; {METADATA_FILE} keys are strings.")


def utc_now() -> str:
    """The current UTC time as the record spells it: ISO 8601 with milliseconds."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
