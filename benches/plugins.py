"""Bench: what a plugin kind costs, against a built-in kind doing the same work.

``examples/plugin``'s module is laid out as an installed distribution (a ``*.dist-info`` folder
with its entry points, as ``pip install --target`` leaves it) in a temporary folder put first on
``sys.path``, next to every distribution of the environment. Measured in this process:

* loading a config of built-in kinds only (the baseline: no entry point is ever read);
* the cold discovery of a group's entry points over every installed distribution;
* the first load of a config using the plugin kind (discovery, import of the plugin module,
  checks), then warm loads;
* the engine: ``preview`` of N rows of ``topic`` + ``reverse_text`` (the plugin: a sync inline
  cell generator rendering ``{{ topic }}!`` with ``render_template`` and reversing the string)
  against ``topic`` + the built-in expression column rendering the same template, cells per
  second: the same rendering work through the plugin path and the built-in path.
"""

from __future__ import annotations

import importlib.metadata
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import attrs
import trio

from . import _common as c


@attrs.frozen(kw_only=True)
class Params:
    rows: int = 20_000
    loads: int = 200
    scans: int = 20
    repeats: int = 3


PROFILES = {
    "full": Params(),
    "quick": Params(rows=5_000, loads=100, scans=10, repeats=2),
    "smoke": Params(rows=200, loads=5, scans=2, repeats=1),
}

BUILT_IN = """\
run: {row_group_size: 500, seed: 3}
columns:
  - {name: topic, kind: sampler, sampler: category, values: [jazz, tea, "Café au lait"]}
  - {name: shout, kind: expression, expr: "{{ topic }}!"}
"""
PLUGIN = BUILT_IN.replace(
    '{name: shout, kind: expression, expr: "{{ topic }}!"}',
    '{name: shout, kind: reverse_text, text: "{{ topic }}!"}',
)


def install(site: Path) -> None:
    """``examples/plugin`` as an installed distribution in ``site``."""
    shutil.copytree(
        c.ROOT / "examples" / "plugin" / "td_example_plugin", site / "td_example_plugin"
    )
    info = site / "td_example_plugin-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: td-example-plugin\nVersion: 0.1.0\n"
    )
    (info / "entry_points.txt").write_text(
        "[trio_designer.columns]\nreverse_text = td_example_plugin:ReverseText\n"
        "slugify = td_example_plugin:Slugify\n"
        "[trio_designer.samplers]\ndice = td_example_plugin:Dice\n"
    )


def per_call_ms(fn: Any, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e3


def cells_per_second(config: Any, rows: int) -> float:
    from trio_designer import TrioDesigner

    async def main() -> float:
        with trio.fail_after(600):
            start = time.perf_counter()
            result = await TrioDesigner().preview(config, num_records=rows)
            elapsed = time.perf_counter() - start
            assert result.num_records_written == rows
            return 2 * rows / elapsed

    return trio.run(main)


def run(profile: str = "full", *, results_dir: Path, img_dir: Path | None) -> dict[str, Any]:
    from trio_designer import PipelineConfig
    from trio_designer.config._plugins import COLUMNS, clear_plugin_cache, plugin_names

    p = PROFILES[profile]
    with tempfile.TemporaryDirectory() as folder:
        site = Path(folder)
        install(site)
        sys.path.insert(0, str(site))
        clear_plugin_cache()
        try:
            distributions = len(list(importlib.metadata.distributions()))
            built_in_ms = per_call_ms(lambda: PipelineConfig.from_yaml(BUILT_IN), p.loads)

            def cold() -> None:
                clear_plugin_cache()
                plugin_names(COLUMNS)

            scan_ms = per_call_ms(cold, p.scans)
            clear_plugin_cache()
            start = time.perf_counter()
            plugin_config = PipelineConfig.from_yaml(PLUGIN)
            first_ms = (time.perf_counter() - start) * 1e3
            warm_ms = per_call_ms(lambda: PipelineConfig.from_yaml(PLUGIN), p.loads)
            built_in_config = PipelineConfig.from_yaml(BUILT_IN)
            engine = {"built-in expression": 0.0, "plugin reverse_text": 0.0}
            for _ in range(p.repeats):
                engine["built-in expression"] = max(
                    engine["built-in expression"], cells_per_second(built_in_config, p.rows)
                )
                engine["plugin reverse_text"] = max(
                    engine["plugin reverse_text"], cells_per_second(plugin_config, p.rows)
                )
        finally:
            sys.path.remove(str(site))
            for module in [m for m in sys.modules if m.startswith("td_example_plugin")]:
                del sys.modules[module]
            clear_plugin_cache()
    loads = {
        "built-in kinds only": built_in_ms,
        "entry-point scan (cold)": scan_ms,
        "plugin kind, first load": first_ms,
        "plugin kind, warm load": warm_ms,
    }
    ratio = engine["plugin reverse_text"] / engine["built-in expression"]
    print(f"\nloading a config ({distributions} installed distributions; milliseconds)")
    print(c.table(["what", "ms"], [[k, round(v, 3)] for k, v in loads.items()]))
    print(f"\nthe engine: preview of {p.rows:,} rows, 2 columns (best of {p.repeats})")
    print(
        c.table(
            ["column", "cells/s"], [[k, round(v)] for k, v in engine.items()]
        )
    )
    print(f"plugin / built-in throughput: {ratio:.2f}")
    payload = {
        "profile": profile,
        "distributions": distributions,
        "load_ms": loads,
        "rows": p.rows,
        "cells_per_s": engine,
        "plugin_over_built_in": ratio,
    }
    c.write_result("plugins", payload, results_dir)
    return payload
