"""Seed datasets (issue 14): every source format, sampling and selection mode, drops, types,
the resume fingerprint, and each bad input as a config error before any request."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_designer import ConfigError, PipelineConfig, SinkError, TrioDesigner
from trio_designer._core._seedorder import SeedOrder, partition_range
from trio_designer.config import config_fingerprint

QUESTIONS = [f"question {i}" for i in range(10)]
LEVELS = [i % 3 for i in range(10)]


def _table() -> pa.Table:
    return pa.table({"question": QUESTIONS, "level": pa.array(LEVELS, pa.int64())})


def _write(folder: Path, fmt: str) -> str:
    """The seed in format ``fmt`` under ``folder``; returns its path relative to it."""
    table = _table()
    if fmt == "parquet":
        pq.write_table(table, folder / "seed.parquet", row_group_size=3)
        return "seed.parquet"
    if fmt == "parquet_dir":
        (folder / "seed_dir").mkdir()
        pq.write_table(table.slice(0, 4), folder / "seed_dir" / "part-0.parquet", row_group_size=3)
        pq.write_table(table.slice(4), folder / "seed_dir" / "part-1.parquet", row_group_size=2)
        (folder / "seed_dir" / "_SUCCESS").write_text("")
        return "seed_dir"
    if fmt == "csv":
        lines = ["question,level", *(f"{q},{n}" for q, n in zip(QUESTIONS, LEVELS, strict=True))]
        (folder / "seed.csv").write_text("\n".join(lines) + "\n")
        return "seed.csv"
    assert fmt == "jsonl"
    rows = (json.dumps({"question": q, "level": n}) for q, n in zip(QUESTIONS, LEVELS, strict=True))
    (folder / "seed.jsonl").write_text("\n".join(rows) + "\n")
    return "seed.jsonl"


def _config(folder: Path, seed: dict[str, Any], *, row_group_size: int = 4) -> PipelineConfig:
    data = {
        "seed": seed,
        "run": {"row_group_size": row_group_size, "seed": 7},
        "columns": [
            {"name": "shout", "kind": "expression", "expr": "{{ question | upper }}/{{ level }}"}
        ],
    }
    path = folder / "pipeline.json"
    path.write_text(json.dumps(data))
    return PipelineConfig.from_file(path)


async def _rows(config: PipelineConfig, n: int) -> list[dict[str, Any]]:
    result = await TrioDesigner(progress=False).preview(config, num_records=n)
    rows: list[dict[str, Any]] = result.table.to_pylist()
    for row in rows:
        del row["_row_id"]  # the row id every dataset carries (issue 13's provenance)
    return rows


# -- formats -----------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["parquet", "parquet_dir", "csv", "jsonl"])
async def test_each_format_feeds_its_rows_in_order(tmp_path: Path, fmt: str) -> None:
    config = _config(tmp_path, {"path": _write(tmp_path, fmt)})
    rows = await _rows(config, 10)
    assert [r["question"] for r in rows] == QUESTIONS
    assert [r["level"] for r in rows] == LEVELS
    assert rows[3]["shout"] == "QUESTION 3/0"


async def test_seed_types_are_kept_in_the_output(tmp_path: Path) -> None:
    table = _table().append_column("when", pa.array([i * 86_400 for i in range(10)],
                                                     pa.timestamp("s")))
    pq.write_table(table, tmp_path / "typed.parquet")
    config = _config(tmp_path, {"path": "typed.parquet"})
    result = await TrioDesigner(progress=False).preview(config, num_records=3)
    schema = result.table.schema
    assert schema.field("level").type == pa.int64()
    stored = pq.read_schema(tmp_path / "typed.parquet")  # parquet has no seconds unit
    assert schema.field("when").type == stored.field("when").type
    assert schema.names == ["_row_id", "question", "level", "when", "shout"]  # seed columns first


# -- sampling and selection --------------------------------------------------------------------


async def test_ordered_cycles_when_the_run_is_longer(tmp_path: Path) -> None:
    config = _config(tmp_path, {"path": _write(tmp_path, "csv")})
    rows = await _rows(config, 25)
    assert [r["question"] for r in rows] == (QUESTIONS * 3)[:25]


async def test_shuffle_is_a_fresh_permutation_each_pass(tmp_path: Path) -> None:
    config = _config(tmp_path, {"path": _write(tmp_path, "csv"), "sampling": "shuffle"})
    questions = [r["question"] for r in await _rows(config, 20)]
    first, second = questions[:10], questions[10:]
    assert sorted(first) == sorted(QUESTIONS) == sorted(second)
    assert first != QUESTIONS
    assert first != second


async def test_with_replacement_draws_seed_rows(tmp_path: Path) -> None:
    config = _config(tmp_path, {"path": _write(tmp_path, "csv"), "sampling": "with_replacement"})
    questions = [r["question"] for r in await _rows(config, 40)]
    assert set(questions) <= set(QUESTIONS)
    assert len(set(questions)) < 10 or questions[:10] != QUESTIONS  # not simply the order


@pytest.mark.parametrize("sampling", ["ordered", "shuffle", "with_replacement"])
async def test_sampling_does_not_depend_on_the_row_group_size(
    tmp_path: Path, sampling: str
) -> None:
    seed = {"path": _write(tmp_path, "parquet"), "sampling": sampling}
    small = await _rows(_config(tmp_path, seed, row_group_size=3), 23)
    large = await _rows(_config(tmp_path, seed, row_group_size=50), 23)
    assert small == large
    again = await _rows(_config(tmp_path, seed, row_group_size=3), 23)
    assert again == small


async def test_a_row_range_selection(tmp_path: Path) -> None:
    seed = {"path": _write(tmp_path, "jsonl"), "selection": {"start": 2, "stop": 5}}
    rows = await _rows(_config(tmp_path, seed), 7)
    assert [r["question"] for r in rows] == [QUESTIONS[i] for i in (2, 3, 4, 2, 3, 4, 2)]


async def test_partitions_read_disjoint_slices_that_tile_the_seed(tmp_path: Path) -> None:
    path = _write(tmp_path, "parquet_dir")
    seen: list[str] = []
    for index in range(3):
        seed = {"path": path, "selection": {"partition": {"index": index, "count": 3}}}
        lo, hi = partition_range(0, 10, index, 3)
        seen += [r["question"] for r in await _rows(_config(tmp_path, seed), hi - lo)]
    assert seen == QUESTIONS


@settings(max_examples=200, deadline=None)
@given(
    size=st.integers(1, 500),
    count=st.integers(1, 40),
    start=st.integers(0, 50),
)
def test_the_union_of_all_partitions_is_the_whole_selection_in_order(
    size: int, count: int, start: int
) -> None:
    start = min(start, size - 1)
    rows: list[int] = []
    for index in range(count):
        lo, hi = partition_range(start, size, index, count)
        if hi == lo:
            continue
        order = SeedOrder.of(size, start=start, partition=(index, count))
        rows += order.seed_rows(range(order.size))
    assert rows == list(range(start, size))


@settings(max_examples=100, deadline=None)
@given(size=st.integers(1, 300), seed=st.integers(0, 2**32), epochs=st.integers(1, 3))
def test_shuffle_visits_every_selected_row_once_per_pass(size: int, seed: int, epochs: int) -> None:
    order = SeedOrder.of(size, sampling="shuffle", seed=seed)
    for epoch in range(epochs):
        rows = order.seed_rows(range(epoch * size, (epoch + 1) * size))
        assert sorted(rows) == list(range(size))


def test_order_is_a_pure_function_of_its_inputs() -> None:
    a = SeedOrder.of(1000, sampling="shuffle", seed=3, start=10, stop=900)
    b = SeedOrder.of(1000, sampling="shuffle", seed=3, start=10, stop=900)
    assert a.seed_rows(range(0, 5000, 7)) == b.seed_rows(range(0, 5000, 7))
    c = SeedOrder.of(1000, sampling="shuffle", seed=4, start=10, stop=900)
    assert a.seed_rows(range(50)) != c.seed_rows(range(50))
    replace = SeedOrder.of(1000, sampling="with_replacement", seed=3, start=10, stop=20)
    assert set(replace.seed_rows(range(500))) == set(range(10, 20))


# -- output and drops --------------------------------------------------------------------------


async def test_seed_columns_are_written_unless_dropped(tmp_path: Path) -> None:
    path = _write(tmp_path, "csv")
    rows = await _rows(_config(tmp_path, {"path": path}), 2)
    assert set(rows[0]) == {"question", "level", "shout"}
    rows = await _rows(_config(tmp_path, {"path": path, "drop": ["level"]}), 2)
    assert set(rows[0]) == {"question", "shout"}
    assert rows[1]["shout"] == "QUESTION 1/1"  # dropped, yet read by the template
    config = PipelineConfig.from_dict(
        {
            "seed": {"path": str(tmp_path / path), "columns": ["question"]},
            "columns": [
                {"name": "question", "kind": "seed", "drop": True},
                {"name": "n", "kind": "expression", "expr": "{{ question | length }}",
                 "dtype": "int"},
            ],
        }
    )
    rows = await _rows(config, 2)
    assert rows == [{"n": 10}, {"n": 10}]


async def test_custom_functions_and_skip_when_read_seed_columns(tmp_path: Path) -> None:
    path = _write(tmp_path, "csv")
    config = PipelineConfig.from_dict(
        {
            "seed": {"path": str(tmp_path / path)},
            "columns": [
                {"name": "twice", "kind": "custom", "function": _twice, "depends_on": ["level"]},
                {"name": "hard", "kind": "expression", "expr": "yes",
                 "skip_when": "{{ level < 2 }}"},
            ],
        }
    )
    rows = await _rows(config, 3)
    assert [r["twice"] for r in rows] == [0, 2, 4]
    assert [r["hard"] for r in rows] == [None, None, "yes"]


def _twice(row: dict[str, Any]) -> int:
    return int(row["level"]) * 2


# -- fingerprint -------------------------------------------------------------------------------


def test_the_fingerprint_covers_the_seed_content(tmp_path: Path) -> None:
    path = _write(tmp_path, "csv")
    config = _config(tmp_path, {"path": path})
    before = config_fingerprint(config)
    (tmp_path / path).write_text((tmp_path / path).read_text().replace("question 3", "q3"))
    assert config_fingerprint(config) != before


@pytest.mark.deadline(30)
async def test_a_resume_over_a_changed_seed_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, "parquet_dir")
    config = _config(tmp_path, {"path": path})
    out = tmp_path / "out"
    await TrioDesigner(progress=False).create(config, num_records=8, output_dir=out)
    await TrioDesigner(progress=False).create(config, num_records=10, output_dir=out, resume=True)
    table = pq.read_table(out / "parquet-files")
    assert sorted(table.column("question").to_pylist()) == sorted(QUESTIONS)
    pq.write_table(_table().slice(0, 4), tmp_path / path / "part-0.parquet", row_group_size=2)
    with pytest.raises(SinkError, match=r"input file seed\.path/part-0\.parquet changed"):
        await TrioDesigner(progress=False).create(
            config, num_records=12, output_dir=out, resume=True
        )


# -- Hugging Face ------------------------------------------------------------------------------


@pytest.fixture
def offline_hf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    datasets = pytest.importorskip("datasets")  # the `hf` extra; the Makefile installs it
    # Both libraries read the variables when first imported, maybe by an earlier test.
    import huggingface_hub.constants

    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-home" / "datasets")
    return tmp_path


@pytest.mark.deadline(60)
async def test_a_local_hub_dataset_offline(offline_hf: Path) -> None:
    repo = offline_hf / "repo" / "data"
    repo.mkdir(parents=True)
    pq.write_table(_table(), repo / "train-00000-of-00001.parquet")
    config = _config(offline_hf, {"hf": "repo", "split": "train", "sampling": "shuffle"})
    rows = await _rows(config, 10)
    assert sorted(r["question"] for r in rows) == sorted(QUESTIONS)


@pytest.mark.deadline(60)
async def test_a_saved_dataset_folder(offline_hf: Path) -> None:
    import datasets

    datasets.Dataset.from_dict({"question": QUESTIONS, "level": LEVELS}).save_to_disk(
        str(offline_hf / "saved")
    )
    config = _config(offline_hf, {"hf": "saved"})
    rows = await _rows(config, 4)
    assert [r["question"] for r in rows] == QUESTIONS[:4]


@pytest.mark.deadline(60)
async def test_a_hub_dataset_missing_from_the_offline_cache(offline_hf: Path) -> None:
    config = _config(offline_hf, {"hf": "td-nobody/no-such-dataset", "revision": "main"})
    with pytest.raises(ConfigError, match=r"seed\.hf: cannot load .*offline"):
        await _rows(config, 2)


# -- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setup", "seed", "match"),
    [
        (None, {"path": "nope.parquet"}, r"seed\.path: no file or folder 'nope\.parquet'"),
        ("garbage.parquet", {"path": "garbage.parquet"}, r"not a readable parquet file"),
        ("seed.txt", {"path": "seed.txt"}, r"cannot tell the format"),
        ("empty.csv", {"path": "empty.csv"}, r"holds no rows"),
        ("csv", {"path": "seed.csv", "drop": ["levle"]}, r"seed\.drop\[0\].*did you mean 'level'"),
        ("csv", {"path": "seed.csv", "selection": {"start": 20}}, r"seed\.selection: .*outside"),
    ],
)
async def test_bad_seeds_are_config_errors(
    tmp_path: Path, setup: str | None, seed: dict[str, Any], match: str
) -> None:
    if setup == "csv":
        _write(tmp_path, "csv")
    elif setup == "empty.csv":
        (tmp_path / "empty.csv").write_text("question,level\n")
    elif setup is not None:
        (tmp_path / setup).write_bytes(b"PAR1 but not really")
    with pytest.raises(ConfigError, match=match):
        await _rows(_config(tmp_path, seed), 2)


async def test_a_template_naming_a_column_the_seed_lacks(tmp_path: Path) -> None:
    path = _write(tmp_path, "csv")
    config = PipelineConfig.from_dict(
        {
            "seed": {"path": str(tmp_path / path)},
            "columns": [{"name": "a", "kind": "expression", "expr": "{{ questoin }}"}],
        }
    )
    with pytest.raises(ConfigError, match=r"'questoin', which is not a column; did you mean 'q"):
        await _rows(config, 1)


async def test_a_declared_column_clashing_with_a_seed_column(tmp_path: Path) -> None:
    path = _write(tmp_path, "csv")
    config = PipelineConfig.from_dict(
        {
            "seed": {"path": str(tmp_path / path)},
            "columns": [{"name": "level", "kind": "expression", "expr": "x"}],
        }
    )
    with pytest.raises(ConfigError, match=r"the seed has a column 'level' too"):
        await _rows(config, 1)


async def test_a_seed_column_named_like_a_jinja_global(tmp_path: Path) -> None:
    (tmp_path / "r.csv").write_text("range,question\n1,a\n")
    config = _config(tmp_path, {"path": "r.csv"})
    with pytest.raises(ConfigError, match=r"column 'range' cannot be a pipeline column.*seed\.col"):
        await _rows(config, 1)
    config = PipelineConfig.from_dict(
        {
            "seed": {"path": str(tmp_path / "r.csv"), "columns": ["question"]},
            "columns": [{"name": "shout", "kind": "expression", "expr": "{{ question | upper }}"}],
        }
    )
    assert await _rows(config, 1) == [{"question": "a", "shout": "A"}]


async def test_a_seed_folder_whose_files_disagree(tmp_path: Path) -> None:
    (tmp_path / "rows").mkdir()
    pq.write_table(_table(), tmp_path / "rows" / "a.parquet")
    pq.write_table(pa.table({"question": [1, 2]}), tmp_path / "rows" / "b.parquet")
    with pytest.raises(ConfigError, match=r"b\.parquet has another schema than a\.parquet"):
        await _rows(_config(tmp_path, {"path": "rows"}), 1)


async def test_a_seed_column_with_an_overlong_name(tmp_path: Path) -> None:
    long = "q" * 5_000
    (tmp_path / "l.csv").write_text(f"{long},question,level\n1,a,2\n")
    config = _config(tmp_path, {"path": "l.csv"})
    with pytest.raises(ConfigError, match=r"a name of 5,000 characters \(at most 128\).*seed\.col"):
        await _rows(config, 1)
    config = _config(tmp_path, {"path": "l.csv", "columns": ["question", "level"]})
    assert await _rows(config, 1) == [{"question": "a", "level": 2, "shout": "A/2"}]
