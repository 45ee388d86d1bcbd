"""``python -m benches <name> [--quick]``: run a bench, print its table, write its JSON.

Names: seed, bound, scale, adaptivity, overhead, memory, client_cpu, small_runs, validate,
endpoints, cache, seed_memory, embeddings, plugins, processors, scaleout, all. Results go to
``benches/results/<name>.json`` and plots to
``docs/img/`` (see docs/benchmarks.md for what each bench measures and how long it takes).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from . import _common as c

BENCHES = (
    "seed",
    "bound",
    "scale",
    "adaptivity",
    "overhead",
    "memory",
    "client_cpu",
    "small_runs",
    "validate",
    "endpoints",
    "cache",
    "seed_memory",
    "embeddings",
    "plugins",
    "processors",
    "scaleout",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benches", description="Run trio_designer's benchmarks."
    )
    parser.add_argument("name", choices=(*BENCHES, "all"), help="which bench to run")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="smaller sizes (a few minutes in all)")
    size.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)  # CI's tiny sizes
    size.add_argument(
        "--huge",
        action="store_true",
        help=(
            "scale: 100,000 records, static limiter, sync and async (about an hour); cache: "
            "the warm figure alone, a 100,000-record fill then the warm run"
        ),
    )
    parser.add_argument(
        "--results-dir", type=Path, default=c.RESULTS_DIR, help="where the JSON results go"
    )
    parser.add_argument("--img-dir", type=Path, default=c.IMG_DIR, help="where the PNG plots go")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    return parser


def run_bench(name: str, profile: str, results_dir: Path, img_dir: Path | None) -> None:
    module = importlib.import_module(f"benches.{name}")
    print(f"=== bench {name} ({profile}) ===", flush=True)
    start = time.perf_counter()
    module.run(profile, results_dir=results_dir, img_dir=img_dir)
    print(f"=== bench {name} took {time.perf_counter() - start:.1f} s ===\n", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # The benches measure the engine, which the response cache (docs/cache.md) would
    # short-circuit on a second run: it is off unless a bench asks for it (benches/cache.py).
    os.environ.setdefault("TRIO_DESIGNER_CACHE", "off")
    if args.huge and args.name not in ("scale", "cache"):
        build_parser().error("--huge applies to the scale and cache benches only")
    profile = (
        "smoke" if args.smoke else "quick" if args.quick else "huge" if args.huge else "full"
    )
    img_dir = None if args.no_plots else args.img_dir
    names = BENCHES if args.name == "all" else (args.name,)
    for name in names:
        run_bench(name, profile, args.results_dir, img_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
