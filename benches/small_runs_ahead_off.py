"""``python -m benches.small_runs_ahead_off [--quick]``: ``small_runs`` with the first wave's
connects ahead switched off (``models/_registry.ConnectionsAhead.start`` opens none, so each
provider gets the two connections of ``ModelRegistry.warm_up``, as before branch
``firstwave``); everything else as in this tree (httptools answers included). For A/B runs of
that one lever in one tree: take turns with ``python -m benches small_runs``. Writes
``small_runs_ahead_off.json`` to ``benches/results/`` (or ``--results DIR``), never
``small_runs.json``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from trio_designer.models._registry import ConnectionsAhead

from . import _common as c
from . import small_runs


def _none(cls: type[ConnectionsAhead], *args: object) -> ConnectionsAhead:
    return cls()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="2 records, 10 ms: does it run")
    parser.add_argument("--results", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    ConnectionsAhead.start = classmethod(_none)  # type: ignore[method-assign,assignment]
    with tempfile.TemporaryDirectory() as scratch:
        profile = "smoke" if args.smoke else "quick" if args.quick else "full"
        payload = small_runs.run(profile, results_dir=Path(scratch), img_dir=None)
    c.write_result("small_runs_ahead_off", payload, args.results)


if __name__ == "__main__":
    main()
