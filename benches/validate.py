"""Bench 8: ``trio-designer validate`` on wide configs, and hostile inputs refused.

``validate`` of a chain of N expression columns (``c0`` a sampler, ``c{i}`` reading
``c{i-1}``), each phase timed in one process: reading the YAML (libyaml, then the bounds walk),
structuring, the graph (template facts and edges), the generators. Plus the whole command in a
fresh process (``python -m trio_designer validate``, interpreter and imports included), and how
long the refusal of a billion-laughs YAML and of a 10,000-level JSON takes.

Issue 12 measured the whole command at 16.5 s for N = 10,000 before the template facts replaced
compiling every template in ``validate``.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import attrs

from . import _common as c


@attrs.frozen(kw_only=True)
class Params:
    columns: tuple[int, ...] = (1_000, 10_000)
    repeats: int = 3


PROFILES = {
    "full": Params(),
    "quick": Params(columns=(10_000,), repeats=1),
    "smoke": Params(columns=(200,), repeats=1),
}

LAUGHS = (
    "a: &a [x,x,x,x,x,x,x,x,x,x]\n"
    + "".join(
        f"{n}: &{n} [" + ",".join([f"*{p}"] * 10) + "]\n"
        for p, n in zip("abcdefgh", "bcdefghi", strict=True)
    )
    + "columns: *i\n"
)


def chain(n: int) -> str:
    lines = ["columns:", "  - {name: c0, kind: sampler, sampler: category, values: [a, b]}"]
    lines += [
        f'  - {{name: c{i}, kind: expression, expr: "{{{{ c{i - 1} }}}}"}}' for i in range(1, n)
    ]
    return "\n".join(lines) + "\n"


def phases(path: Path) -> dict[str, float]:
    """Seconds per phase of validate, in this process (the modules are imported already)."""
    from trio_designer.cli._validate import check
    from trio_designer.config._bounded import measure_yaml
    from trio_designer.config._converter import _Loader
    from trio_designer.config._pipeline import _assemble
    from trio_designer.config._templates import template_facts

    template_facts.cache_clear()
    times: dict[str, float] = {}
    start = time.perf_counter()
    loader = _Loader(path.read_text())
    node = loader.get_single_node()
    times["yaml compose"] = time.perf_counter() - start
    start = time.perf_counter()
    measure_yaml(node)
    times["bounds walk"] = time.perf_counter() - start
    start = time.perf_counter()
    data = loader.construct_document(node)
    loader.dispose()
    times["yaml construct"] = time.perf_counter() - start
    start = time.perf_counter()
    config = _assemble(data)
    times["structure"] = time.perf_counter() - start
    start = time.perf_counter()
    check(config)
    times["graph + generators"] = time.perf_counter() - start
    return times


def command(path: Path) -> float:
    env = dict(os.environ, PYTHONPATH=str(c.ROOT))
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "trio_designer", "validate", str(path)],
        env=env,
        capture_output=True,
        check=False,
        timeout=120,
    )
    return time.perf_counter() - start


def refusal(text: str, suffix: str) -> float:
    from trio_designer import ConfigError, PipelineConfig

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder, f"hostile{suffix}")
        path.write_text(text)
        start = time.perf_counter()
        with contextlib.suppress(ConfigError):
            PipelineConfig.from_file(path)
        return time.perf_counter() - start


def run(profile: str = "full", *, results_dir: Path, img_dir: Path | None) -> dict[str, Any]:
    p = PROFILES[profile]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for n in p.columns:
            path = Path(folder, f"chain{n}.yaml")
            path.write_text(chain(n))
            best = min((phases(path) for _ in range(p.repeats)), key=lambda t: sum(t.values()))
            wall = c.median([command(path) for _ in range(p.repeats)])
            rows.append({"columns": n, "phases_s": best, "command_s": wall})
    hostile = {
        "billion laughs (YAML)": refusal(LAUGHS, ".yaml"),
        "10,000-level JSON": refusal("[" * 10_000 + "]" * 10_000, ".json"),
    }
    print("\nvalidate of a chain of expression columns (best of the repeats, seconds)")
    names = list(rows[0]["phases_s"])
    print(
        c.table(
            ["columns", *names, "whole command"],
            [
                [
                    r["columns"],
                    *(round(r["phases_s"][k], 3) for k in names),
                    round(r["command_s"], 2),
                ]
                for r in rows
            ],
        )
    )
    print("\nhostile configs refused (seconds)")
    print(c.table(["input", "refused after"], [[k, round(v, 4)] for k, v in hostile.items()]))
    payload = {"profile": profile, "runs": rows, "hostile_s": hostile}
    c.write_result("validate", payload, results_dir)
    return payload
