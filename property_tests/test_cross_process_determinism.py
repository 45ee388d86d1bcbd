"""Invariant 16: the same config and seed give byte-identical parquet in another process.

Python randomises ``hash()`` of strings per process (``PYTHONHASHSEED``), and with it the
iteration order of sets of strings. Anything in the engine, the samplers, the seeding of a
cell's ``random.Random`` (``rng_for``) or the sink that leans on either would make two runs of
one config differ — and no test inside one process can see it. So this test runs the same
random pipelines in two processes with different hash seeds and compares the files byte for
byte.

The pipelines (built from a seed by ``CHILD`` below, the same in both processes) mix every
sampler, Jinja expressions, custom cell and full-column columns that draw from ``ctx.rng``
and fail on a fixed schedule (retryable once, or for good: rows are dropped), and an LLM
column served by the embedded simulator, over several row groups. They run on the real
clock, in whatever order trio schedules the cells: the output may depend on the seed and
the config only.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PIPELINES = 6

CHILD = '''
import hashlib
import random
import sys
from collections import Counter
from pathlib import Path

import pytest

from trio_designer import (
    BernoulliSampler, CategorySampler, CustomColumn, DatetimeSampler, ExpressionColumn,
    GaussianSampler, LLMTextColumn, ModelConfig, NonRetryableGenerationError, PipelineConfig,
    PoissonSampler, RetryableGenerationError, RunConfig, SubcategorySampler, TrioDesigner,
    UniformSampler, UUIDSampler,
)
from trio_designer.simulator import Latency, SimulatedModel

CALLS = Counter()


def unit(*parts):
    digest = hashlib.blake2b("\\x00".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def scripted_cell(column, ups):
    def cell(row, ctx):
        CALLS[(column, ctx.row_index)] += 1
        draw = unit(column, ctx.row_index)
        if draw < 0.05:
            raise NonRetryableGenerationError(f"{column}[{ctx.row_index}] fails for good")
        if draw < 0.2 and CALLS[(column, ctx.row_index)] == 1:
            raise RetryableGenerationError(f"{column}[{ctx.row_index}] fails once")
        return f"{column}:{ctx.rng.random()}:" + "|".join(str(row[u]) for u in ups)
    return cell


def scripted_full(column, ups):
    async def full(rows, ctx):
        return [
            f"{column}:{ctx.rng_for(i).randint(0, 10**9)}:" + "|".join(str(r[u]) for u in ups)
            for i, r in zip(ctx.row_indices, rows)
        ]
    return full


def pipeline(seed):
    rng = random.Random(seed)
    columns = [
        CategorySampler(name="cat", values=("a", "b", "c"), weights=(1.0, 2.0, 3.0)),
        SubcategorySampler(
            name="sub", category="cat", values={"a": ("a1", "a2"), "b": ("b1",), "c": ("c1",)}
        ),
        UniformSampler(name="uni", low=-2.0, high=5.0),
        GaussianSampler(name="gauss", mean=10.0, stddev=3.0, decimal_places=3),
        BernoulliSampler(name="coin", p=0.3),
        PoissonSampler(name="pois", mean=4.0),
        UUIDSampler(name="id"),
        DatetimeSampler(name="when", start="2024-01-01", end="2024-12-31", unit="m"),
    ]
    names = [c.name for c in columns]
    for i in range(rng.randint(2, 6)):
        name = f"d{i}"
        ups = sorted(rng.sample(names, rng.randint(1, 3)))
        kind = rng.choice(["expr", "cell", "full", "llm"])
        refs = [f"{{{{ {u} }}}}" for u in ups]
        if kind == "expr":
            columns.append(ExpressionColumn(name=name, expr=" ~ ".join(refs)))
        elif kind == "cell":
            columns.append(CustomColumn(
                name=name, function=scripted_cell(name, ups), depends_on=tuple(ups), dtype="str"
            ))
        elif kind == "full":
            columns.append(CustomColumn(
                name=name, function=scripted_full(name, ups), depends_on=tuple(ups),
                strategy="full_column", dtype="str",
            ))
        else:
            prompt = "Write about " + " and ".join(refs)
            columns.append(LLMTextColumn(name=name, model="gen", prompt=prompt))
        names.append(name)
    run = RunConfig(
        row_group_size=rng.randint(3, 10), seed=rng.randint(0, 10**6),
        salvage_max_rounds=1, shutdown_error_rate=1.0,
    )
    models = (ModelConfig(alias="gen", model="sim-gen", max_parallel_requests=8),)
    return PipelineConfig(columns=tuple(columns), models=models, run=run), rng.randint(10, 40)


out = Path(sys.argv[1])
designer = TrioDesigner(
    simulator_models=[SimulatedModel(name="sim-gen", latency=Latency(median=0.001))]
)
for seed in range(int(sys.argv[2])):
    config, rows = pipeline(seed)
    designer.create_sync(config, num_records=rows, output_dir=out / f"pipeline-{seed}")
'''


def parquet_files(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.glob("pipeline-*/parquet-files/*.parquet"))
    }


@pytest.mark.slow
def test_same_config_and_seed_give_identical_parquet_in_another_process(tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(CHILD, encoding="utf-8")
    runs = {}
    for hash_seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        out = tmp_path / f"hash-seed-{hash_seed}"
        runs[hash_seed] = (
            out,
            subprocess.Popen(
                [sys.executable, str(script), str(out), str(PIPELINES)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            ),
        )
    files = {}
    for hash_seed, (out, process) in runs.items():
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr
        files[hash_seed] = parquet_files(out)
    first, second = files["1"], files["2"]
    assert len({name.split("/")[0] for name in first}) == PIPELINES  # every pipeline wrote
    assert sorted(first) == sorted(second)
    differing = [name for name in first if first[name] != second[name]]
    assert differing == [], f"{len(differing)} of {len(first)} files differ, e.g. {differing[0]}"
