"""The dataset card: ``README.md`` in the output directory, what a user attaches when sharing.

Every finished ``create`` run writes one (:func:`write_dataset_card`); anyone holding an output
directory can write it again (after merging shards, say). It is built from what the directory
holds, nothing else: the run record (``metadata.json``: counts, schema, config, seed, usage)
and the parquet files, profiled **streaming**, one row group at a time with
``pyarrow.compute`` (memory: one row group plus bounded counters).

Sections: a YAML front matter the Hugging Face Hub reads (``configs`` pointing at
``parquet-files/*.parquet``, so the Hub's viewer and ``datasets.load_dataset`` find the data),
then counts (rows, dropped rows, per-column outcomes), what each processor did (rows in and
out, removed rows by reason), the schema with Arrow types, the models
with their token usage (and a cost column, filled when the caller passes ``costs``), a
per-column profile, and the config as YAML with its seed and the library version.

The profile, per leaf column (struct fields are profiled one by one, as ``product.price``):

* numbers: min / mean / max;
* strings with few distinct values (at most :data:`CATEGORICAL_MAX` distinct, and at most half
  the non-null values unless there are at most 10): the top :data:`TOP_K` values with counts;
  booleans always;
* other strings: the length in characters, min / mean / max;
* lists (embeddings included): the length, min / mean / max;
* dates and timestamps: min / max;
* every column: its nulls.

Secrets: the config in the run record never holds a key (the config refuses keys, and holds
only the *name* of the variable); the card shows nothing else of the environment
(``tests/test_secrets_canary.py`` scans it with every other file).
"""

from __future__ import annotations

import functools
import importlib.metadata
import math
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Final

import attrs
import pyarrow as pa
import pyarrow.compute as pc
import yaml

from ._atomic import write_atomically
from ._layout import CARD_FILE, DATASET_DIR, METADATA_FILE
from ._metadata import RunMetadata
from ._stored import iter_row_groups, read_metadata
from ._usage import add_sums, alias_sums, usage_from_sums

__all__ = ["CATEGORICAL_MAX", "TOP_K", "CardDraft", "dataset_card", "write_dataset_card"]

TOP_K: Final = 10
"""Values listed for a categorical column."""

CATEGORICAL_MAX: Final = 100
"""Most distinct values a string column may have to be profiled as categorical; beyond it the
counter is dropped (memory stays bounded) and the column is profiled as text."""

_SHOWN_CHARS: Final = 40

_IN_PYTHON: Final = 1024
"""Boolean and string columns of at most this many values are profiled from their Python
values (``_Stats.add_values``): the same statistics, without a compute call per statistic."""

_INT64_LOW: Final = -(1 << 63)
_INT64_HIGH: Final = (1 << 63) - 1

_DEFAULT_PROVIDER: Final = "simulator"
"""A model's provider when its config leaves it out (``config.SIMULATOR_PROVIDER``; the config
package sits at this package's level, so it is not imported)."""


def write_dataset_card(
    output_dir: str | Path, *, costs: Mapping[str, str] | None = None
) -> Path:
    """Write ``README.md`` (the dataset card) into ``output_dir``, atomically; see the module
    docstring for what it holds.

    Args:
      output_dir: a run's output directory (``metadata.json`` and ``parquet-files/``).
      costs: model alias → cost text shown in the usage table (``"$0.42"``); aliases missing
        from it show "not computed". Default: the cost of every alias with a ``price``, over
        the whole dataset, from the provenance records (:func:`~._usage.model_usage_summary`).

    Returns:
      The card's path.

    Raises:
      SinkError: the directory holds no readable run.
      OSError: the card cannot be written.
    """
    root = Path(output_dir)
    text = dataset_card(root, costs=costs)
    path = root / CARD_FILE
    write_atomically(path, text.encode("utf-8"))
    return path


def dataset_card(output_dir: str | Path, *, costs: Mapping[str, str] | None = None) -> str:
    """The dataset card of ``output_dir`` as Markdown text (what :func:`write_dataset_card`
    writes)."""
    root = Path(output_dir)
    meta = read_metadata(root)
    if costs is None:
        costs = recorded_costs(root, meta)
    profiles = _as_recorded(_profile(root, meta), meta.schema)
    return _card_text(root, meta, costs, profiles, _config(meta))


def _card_text(
    root: Path,
    meta: RunMetadata,
    costs: Mapping[str, str],
    profiles: Mapping[str, _Stats],
    config: str,
    front: str | None = None,
) -> str:
    parts = [
        _front_matter(root) if front is None else front,
        _heading(root, meta),
        _counts(meta),
        _processors(meta),
        _schema(meta),
        _usage(meta, costs or {}),
        _profile_section(profiles),
        config,
    ]
    return "\n".join(part for part in parts if part)


class CardDraft:
    """The dataset card of a run being written, built as it goes: what the card would read
    back from the directory at the end is observed while the sink writes it.

    A finished run's card took a pass over every written row group and provenance file (and a
    YAML dump of the config) after the last answer, before ``create()`` returned — 10-20 ms
    of a small run's makespan (``benches/small_runs.py``). The sink instead calls
    :meth:`observe` with each row group it stores (in its worker thread, with the table it
    just serialised: the profile's counters and the provenance sums), and :meth:`render`
    with the final record. The text is the one :func:`dataset_card` reads back from the
    directory (``tests/test_dataset_card.py::test_a_finished_run_writes_its_card``): every
    statistic merges in any order (sums through ``math.fsum``).

    :meth:`render` returns ``None`` when the draft did not see exactly the row groups of the
    final record (a resumed run's earlier row groups, a row group observed but never
    recorded, or one observed twice): the caller then builds the card from the directory.
    Thread-safe (row groups are stored from several worker threads at once).
    """

    def __init__(self, root: Path) -> None:
        self._root = root
        self._lock = threading.Lock()
        self._stats: dict[str, _Stats] = {}
        self._sums: dict[str, dict[str, float]] = {}  # alias -> provenance sums (costs)
        self._called = False  # any provenance row at all (else no costs, as read back)
        self._seen: set[int] = set()
        self._valid = True
        # The parts that depend only on the run's config (YAML dumps, ~1.5-3 ms of CPU),
        # made by prepare() ahead of render(): (config object, row group size, fingerprint,
        # the configuration section) and the front matter.
        self._config_section: tuple[object, int, str, str] | None = None
        self._front: str | None = None
        # The config prepare() saw, when none of its models has a price: the card then shows
        # no cost, so observe() skips the provenance sums (~17 compute calls a row group).
        self._unpriced: object | None = None
        self._sums_skipped = False

    def prepare(self, meta: RunMetadata) -> None:
        """Build the card's parts that depend only on the run's config — the front matter
        and the configuration section, two YAML dumps — ahead of :meth:`render`, which then
        only checks that ``meta`` still has the same config (the same object), row group
        size and fingerprint. The parquet sink calls it from its preparation, once the first
        requests are out, so that these dumps are not on the path from the last answer to
        ``create()`` returning."""
        section = _config(meta)
        front = _front_matter(self._root)
        models = meta.config.get("models") or ()
        priced = any(isinstance(m, Mapping) and _priced(m) for m in models)
        with self._lock:
            self._config_section = (meta.config, meta.row_group_size, meta.fingerprint, section)
            self._front = front
            self._unpriced = None if priced else meta.config

    def observe(self, row_group: int, table: pa.Table | None, cells: pa.Table | None) -> None:
        """A row group was stored: its data (``None``: no rows) and its provenance table."""
        with self._lock:
            if row_group in self._seen:  # stored again (a failed commit retried): not merged twice
                self._valid = False
            self._seen.add(row_group)
            if cells is not None and cells.num_rows:
                self._called = True
                if self._unpriced is None:
                    add_sums(self._sums, alias_sums(cells))
                else:
                    self._sums_skipped = True
            if table is not None and table.num_rows:
                _observe_table(self._stats, table)

    def render(self, meta: RunMetadata, costs: Mapping[str, str] | None = None) -> str | None:
        """The card of the run whose final record is ``meta``, or ``None`` when the draft saw
        other row groups than ``meta`` records (build it from the directory then)."""
        with self._lock:
            if not self._valid or self._seen != set(meta.row_groups):
                return None
            if costs is None:
                if self._sums_skipped and meta.config is not self._unpriced:
                    return None  # another config than prepared, maybe priced: no sums kept
                # Skipped sums: no model of the config has a price, so there is no cost.
                costs = _costs_of(self._sums, meta) if self._called else {}
            profiles = _as_recorded(self._stats, meta.schema)
            known = self._config_section
            if (
                known is not None
                and known[0] is meta.config
                and known[1:3] == (meta.row_group_size, meta.fingerprint)
            ):
                section = known[3]
            else:
                section = _config(meta)
            return _card_text(self._root, meta, costs, profiles, section, self._front)


def _as_recorded(stats: Mapping[str, _Stats], schema: pa.Schema | None) -> dict[str, _Stats]:
    """``stats`` with the types of the recorded schema, as the card's schema section shows
    them (a list's item field is named ``element`` in a parquet file read back, ``item`` in
    the run's schema and in memory)."""
    if schema is None:
        return dict(stats)
    recorded = {
        name: str(kind) for field in schema for name, kind in _type_leaves(field.name, field.type)
    }
    return {  # shared when the type is the same: the result is only read
        name: entry if (kind := recorded.get(name, entry.type)) == entry.type
        else attrs.evolve(entry, type=kind)
        for name, entry in stats.items()
    }


def _front_matter(root: Path) -> str:
    data = {
        "pretty_name": root.name,
        "tags": ["synthetic", "trio-designer"],
        "configs": [
            {
                "config_name": "default",
                "data_files": [{"split": "train", "path": f"{DATASET_DIR}/*.parquet"}],
            }
        ],
    }
    return "---\n" + _yaml(data) + "---\n"


def _heading(root: Path, meta: RunMetadata) -> str:
    when = meta.finished_at or meta.updated_at
    return (
        f"# {root.name}\n\n"
        f"A synthetic dataset generated by trio_designer {_version()} (run status "
        f"`{meta.status}`, finished {when}). The data is in `{DATASET_DIR}/` (one parquet file "
        f"per row group); the run record, with the exact Arrow schema, in `{METADATA_FILE}`.\n"
    )


def _counts(meta: RunMetadata) -> str:
    requested = sum(entry.requested_rows for entry in meta.row_groups.values())
    written = meta.rows_written
    lines = [
        "## Counts\n",
        "| rows written | rows requested | rows dropped | row groups written |",
        "|---:|---:|---:|---:|",
        f"| {written:,} | {meta.num_records:,} | {requested - written:,} | "
        f"{len(meta.row_groups):,} of {meta.num_row_groups:,} |",
    ]
    columns = meta.summary.get("columns") or {}
    if columns:
        lines += [
            "",
            "Cell outcomes per column (of the last session, for a resumed run):",
            "",
            "| column | ok | skipped | failed | retried | cancelled | truncated |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for name, counts in columns.items():
            row = [counts.get(key, 0) for key in _OUTCOMES]
            lines.append(f"| `{_cell(name)}` | " + " | ".join(f"{n:,}" for n in row) + " |")
    return "\n".join(lines) + "\n"


def _processors(meta: RunMetadata) -> str:
    """What each processor did: its stage, rows in and out, and why rows were removed."""
    reports: Mapping[str, Any] = meta.summary.get("processors") or {}
    if not reports:
        return ""
    lines = [
        "## Processors\n",
        "Applied in order; `row_group` processors shaped `parquet-files/`, `after_run` ones "
        "wrote `processed/`.\n",
        "| processor | kind | stage | rows in | rows out | removed (why) |",
        "|---|---|---|---:|---:|---|",
    ]
    for label, report in reports.items():
        if not isinstance(report, Mapping):
            continue
        removed = report.get("removed") or {}
        why = "; ".join(f"{int(n):,} {_short(str(reason))}" for reason, n in removed.items())
        cells = [
            f"`{_cell(str(label))}`",
            _cell(str(report.get("kind", ""))),
            _cell(str(report.get("stage", ""))),
            f"{int(report.get('rows_in', 0)):,}",
            f"{int(report.get('rows_out', 0)):,}",
            _cell(why) or "—",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


_REQUESTS: Final = ("requests_ok", "requests_failed", "requests_rate_limited")
_OUTCOMES: Final = ("ok", "skipped", "failed", "retried", "cancelled", "truncated")


def _schema(meta: RunMetadata) -> str:
    if meta.schema is None:
        return "## Schema\n\nNo row was written, so the run has no schema yet.\n"
    lines = ["## Schema\n", "| column | Arrow type |", "|---|---|"]
    lines += [f"| `{_cell(field.name)}` | `{_cell(str(field.type))}` |" for field in meta.schema]
    return "\n".join(lines) + "\n"


def _usage(meta: RunMetadata, costs: Mapping[str, str]) -> str:
    usage: Mapping[str, Any] = meta.summary.get("usage") or {}
    models = {
        str(m.get("alias")): m for m in meta.config.get("models") or () if isinstance(m, Mapping)
    }
    if not models and not usage:
        return ""
    lines = [
        "## Models and token usage\n",
        "Requests and tokens as the endpoints reported them (of the last session, for a "
        "resumed run).\n",
        "| alias | model | provider | requests | input tokens | output tokens | "
        "reasoning tokens | cost |",
        "|---|---|---|---:|---:|---:|---:|---|",
    ]
    for alias in sorted({*models, *map(str, usage)}):
        model = models.get(alias) or {}
        counts = usage.get(alias) or {}
        requests = sum(int(counts.get(key, 0)) for key in _REQUESTS)
        cells = [
            f"`{_cell(str(alias))}`",
            _cell(str(model.get("model", ""))),
            _cell(str(model.get("provider", _DEFAULT_PROVIDER if model else ""))),
            f"{requests:,}",
            f"{int(counts.get('input_tokens', 0)):,}",
            f"{int(counts.get('output_tokens', 0)):,}",
            f"{int(counts.get('reasoning_tokens', 0)):,}",
            _cell(costs.get(str(alias), "not computed")),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _config(meta: RunMetadata) -> str:
    run = meta.config.get("run") or {}
    seed = run.get("seed") if isinstance(run, Mapping) else None
    text = _yaml(dict(meta.config), allow_unicode=True)
    return (
        "## Configuration\n\n"
        f"Seed: `{seed}` · row group size: {meta.row_group_size:,} · library: trio_designer "
        f"{_version()} · fingerprint: `{meta.fingerprint}`\n\n"
        f"```yaml\n{text}```\n"
    )


def _yaml(data: Any, **options: Any) -> str:
    """``yaml.safe_dump`` with libyaml's emitter when PyYAML has it (the same text, a tenth of
    the CPU: ~0.4 ms for a config instead of ~4 ms, at the end of every run)."""
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    text: str = yaml.dump(data, Dumper=dumper, sort_keys=False, **options)
    return text


@functools.cache
def _version() -> str:
    try:
        return importlib.metadata.version("trio_designer")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - a source checkout
        return "(unknown version)"


# -- the profile ---------------------------------------------------------------------------------


@attrs.define
class _Stats:
    """Streaming statistics of one leaf column."""

    type: str
    count: int = 0
    nulls: int = 0
    low: Any = None
    high: Any = None
    sums: list[float] = attrs.field(factory=list)  # per array: fsum merges them in any order
    valued: int = 0
    counts: dict[Any, int] | None = attrs.field(factory=dict)
    length_low: int | None = None
    length_high: int | None = None
    length_total: int = 0
    kind: str = "other"

    def add_range(self, array: Any) -> None:
        if len(array) - array.null_count == 0:
            return
        bounds = pc.min_max(array)
        low, high = bounds["min"].as_py(), bounds["max"].as_py()
        if low is None:
            return
        self.low = low if self.low is None else min(self.low, low)
        self.high = high if self.high is None else max(self.high, high)

    def add_lengths(self, lengths: Any) -> None:
        present = len(lengths) - lengths.null_count
        if not present:
            return
        bounds = pc.min_max(lengths)
        low, high = int(bounds["min"].as_py()), int(bounds["max"].as_py())
        self.length_low = low if self.length_low is None else min(self.length_low, low)
        self.length_high = high if self.length_high is None else max(self.length_high, high)
        self.length_total += int(pc.sum(lengths).as_py() or 0)

    def add_values(self, values: list[Any], *, lengths: bool) -> None:
        """:meth:`add_counts` (and, with ``lengths``, :meth:`add_lengths` of the strings'
        lengths in characters) from the array's values as Python objects: the same
        statistics, without a compute call each (cheaper for small arrays)."""
        present = [value for value in values if value is not None]
        if self.counts is not None:
            counts = self.counts
            for value in present:
                counts[value] = counts.get(value, 0) + 1
            if len(counts) > CATEGORICAL_MAX:
                self.counts = None
        if lengths and present:
            sizes = [len(value) for value in present]
            low, high = min(sizes), max(sizes)
            self.length_low = low if self.length_low is None else min(self.length_low, low)
            self.length_high = high if self.length_high is None else max(self.length_high, high)
            self.length_total += sum(sizes)

    def add_integers(self, array: Any) -> bool:
        """:meth:`add_range` and the sum of an integer array from its Python values: the
        same statistics, without the two compute calls. ``False`` (nothing added) when the
        sum leaves int64, where ``pc.sum`` wraps around: the caller then uses them."""
        values = [value for value in array.to_pylist() if value is not None]
        if not values:
            return True
        total = sum(values)
        if not _INT64_LOW <= total <= _INT64_HIGH:
            return False
        low, high = min(values), max(values)
        self.low = low if self.low is None else min(self.low, low)
        self.high = high if self.high is None else max(self.high, high)
        self.sums.append(float(total))
        self.valued += len(values)
        return True

    def add_counts(self, array: Any) -> None:
        if self.counts is None:
            return
        for item in pc.value_counts(array.drop_null()).to_pylist():
            key = item["values"]
            self.counts[key] = self.counts.get(key, 0) + int(item["counts"])
        if len(self.counts) > CATEGORICAL_MAX:
            self.counts = None


def _leaves(name: str, array: Any) -> Iterator[tuple[str, Any]]:
    """(dotted name, array) of every non-struct column inside ``array``. A struct's fields
    come from one ``flatten()`` (each field null where the struct is, as
    ``pc.struct_field`` gives them), not a compute call per field."""
    if pa.types.is_struct(array.type):
        for field, child in zip(array.type, array.flatten(), strict=True):
            yield from _leaves(f"{name}.{field.name}", child)
    else:
        yield name, array


def _type_leaves(name: str, kind: pa.DataType) -> Iterator[tuple[str, pa.DataType]]:
    """(dotted name, type) of every non-struct field inside a field of type ``kind``: the
    names and types :func:`_leaves` gives for a column of that type."""
    if pa.types.is_struct(kind):
        for field in kind:
            yield from _type_leaves(f"{name}.{field.name}", field.type)
    else:
        yield name, kind


def _priced(model: Mapping[str, Any]) -> bool:
    """A model entry of the config with a price (``_usage.usage_from_sums`` gives it a cost)."""
    return isinstance(model.get("price"), Mapping)


def _profile(root: Path, meta: RunMetadata) -> dict[str, _Stats]:
    stats: dict[str, _Stats] = {}
    for table in iter_row_groups(root, meta):
        _observe_table(stats, table)
    return stats


def _observe_table(stats: dict[str, _Stats], table: pa.Table) -> None:
    for column_name, column in zip(table.column_names, table.columns, strict=True):
        for name, array in _leaves(column_name, column):
            entry = stats.setdefault(name, _Stats(type=str(array.type)))
            _observe(entry, array)


def _observe(entry: _Stats, array: Any) -> None:
    kind = array.type
    entry.count += len(array)
    entry.nulls += array.null_count
    present = len(array) - array.null_count
    if pa.types.is_integer(kind) and len(array) <= _IN_PYTHON and entry.add_integers(array):
        entry.kind = "number"
    elif pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        entry.kind = "number"
        entry.add_range(array)
        if present:
            entry.sums.append(float(pc.sum(array).as_py() or 0.0))
            entry.valued += present
    elif pa.types.is_boolean(kind):
        entry.kind = "boolean"
        if len(array) <= _IN_PYTHON:
            entry.add_values(array.to_pylist(), lengths=False)
        else:
            entry.add_counts(array)
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
        entry.kind = "string"
        entry.valued += present
        if len(array) <= _IN_PYTHON:
            entry.add_values(array.to_pylist(), lengths=True)
        else:
            entry.add_counts(array)
            entry.add_lengths(pc.utf8_length(array))
    elif _is_list(kind):
        entry.kind = "list"
        entry.valued += present
        entry.add_lengths(pc.list_value_length(array))
    elif pa.types.is_temporal(kind):
        entry.kind = "time"
        entry.add_range(array)


def _is_list(kind: pa.DataType) -> bool:
    return bool(
        pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)
    )


def _profile_section(stats: Mapping[str, _Stats]) -> str:
    if not stats:
        return ""
    lines = [
        "## Column profile\n",
        f"Over every stored row. Categorical: the top {TOP_K} values with counts; numbers: "
        "min / mean / max; text and lists: length min / mean / max.\n",
        "| column | type | nulls | profile |",
        "|---|---|---:|---|",
    ]
    for name, entry in stats.items():
        lines.append(
            f"| `{_cell(name)}` | `{_cell(entry.type)}` | {entry.nulls:,} | "
            f"{_describe(entry)} |"
        )
    return "\n".join(lines) + "\n"


def _describe(entry: _Stats) -> str:
    if entry.kind == "number" and entry.valued:
        mean = math.fsum(entry.sums) / entry.valued
        return f"min {_num(entry.low)} · mean {_num(mean)} · max {_num(entry.high)}"
    if entry.kind in ("boolean", "string") and _categorical(entry):
        assert entry.counts is not None
        present = sum(entry.counts.values())
        top = sorted(entry.counts.items(), key=lambda item: (-item[1], str(item[0])))[:TOP_K]
        shown = ", ".join(
            f"{_cell(_short(str(value)))}: {count:,} ({100 * count / present:.0f}%)"
            for value, count in top
        )
        more = len(entry.counts) - len(top)
        tail = f", … {more} more" if more > 0 else ""
        return f"categorical, {len(entry.counts)} values: {shown}{tail}"
    if entry.kind in ("string", "list") and entry.length_low is not None and entry.valued:
        what = "length (characters)" if entry.kind == "string" else "length (items)"
        mean = entry.length_total / entry.valued
        return (
            f"{what}: min {entry.length_low:,} · mean {mean:,.1f} · max {entry.length_high:,}"
        )
    if entry.kind == "time" and entry.low is not None:
        return f"min {entry.low} · max {entry.high}"
    return "—"


def _categorical(entry: _Stats) -> bool:
    if entry.counts is None or not entry.counts:
        return False
    if entry.kind == "boolean":
        return True
    distinct, present = len(entry.counts), sum(entry.counts.values())
    return distinct <= 10 or 2 * distinct <= present


def _num(value: Any) -> str:
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1e6 else f"{value:.4g}"
    return str(value)


def _short(text: str) -> str:
    """``text`` with its whitespace runs made single spaces, cut to :data:`_SHOWN_CHARS`.

    A long text is normalised from a prefix: the normalised prefix is a prefix of the
    normalised text (only its last word may be cut short), so once it is longer than the cut
    it gives the same result (a card lists up to :data:`TOP_K` values of each column, long
    LLM answers among them, at the end of every run)."""
    if len(text) > _PREFIX_CHARS:
        head = " ".join(text[:_PREFIX_CHARS].split())
        if len(head) > _SHOWN_CHARS:
            return head[: _SHOWN_CHARS - 1] + "…"
    text = " ".join(text.split())
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 1] + "…"


_PREFIX_CHARS: Final = 4 * _SHOWN_CHARS


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|").replace("`", "'")


def recorded_costs(root: Path, meta: RunMetadata) -> dict[str, str]:
    """Alias → the cost of the written dataset (every session), for the aliases with a price
    whose cells have provenance records; empty for a run from before those records."""
    from ._provenance import read_cells

    return _costs(read_cells(root), meta)


def _costs(cells: pa.Table | None, meta: RunMetadata) -> dict[str, str]:
    if cells is None or cells.num_rows == 0:
        return {}
    return _costs_of(alias_sums(cells), meta)


def _costs_of(sums: Mapping[str, Mapping[str, float]], meta: RunMetadata) -> dict[str, str]:
    models = meta.config.get("models") or []
    summary = usage_from_sums(sums, [m for m in models if isinstance(m, Mapping)])
    return {
        alias: f"{entry['cost']:.4f} (whole dataset)"
        for alias, entry in summary.items()
        if entry["cost"] is not None
    }
