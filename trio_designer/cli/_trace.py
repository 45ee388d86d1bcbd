"""``trace``: turn a recorded ``trace.json`` into something to look at.

The export and plotting live in ``trio_designer._observe``:
``export_chrome_trace(output_dir, dest)`` and ``plot_timeline(output_dirs, dest)``, which
stacks several runs on one time axis (``--compare`` passes ``[OUTPUT_DIR, OTHER]``, top to
bottom). This module only checks the inputs, calls them, and says where the results are. The
module is imported lazily, and plotting needs matplotlib, an optional extra
(``pip install 'trio_designer[plot]'``).
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from .._exceptions import TrioDesignerError
from .._sink import CHROME_TRACE_FILE, TIMELINE_FILE, TRACE_FILE
from ._errors import CommandError, in_flags

PLOT_SUFFIXES = (".png", ".svg")


def cmd_trace(args: argparse.Namespace) -> int:
    """``trio-designer trace OUTPUT_DIR [--chrome PATH] [--plot PATH] [--compare OTHER]``."""
    output_dir = Path(args.output_dir)
    compare = Path(args.compare) if args.compare else None
    for folder in (output_dir, compare):
        if folder is not None:
            require_trace(folder)
    wants_plot = bool(args.plot or compare)
    if args.plot and Path(args.plot).suffix.lower() not in PLOT_SUFFIXES:
        raise CommandError(f"--plot {args.plot}: give a .png or .svg file name")
    export = _trace_export_module()
    if args.chrome or not wants_plot:
        dest = Path(args.chrome) if args.chrome else output_dir / CHROME_TRACE_FILE
        path = _checked(lambda: export.export_chrome_trace(output_dir, dest), output_dir)
        print(f"chrome trace: {path}")
        print(
            "open it in Perfetto: https://ui.perfetto.dev -> 'Open trace file' -> choose "
            f"{path} (chrome://tracing -> 'Load' works too)"
        )
    if wants_plot:
        dest = Path(args.plot) if args.plot else output_dir / TIMELINE_FILE
        dirs = [output_dir] if compare is None else [output_dir, compare]
        path = _checked(lambda: export.plot_timeline(dirs, dest), output_dir)
        print(f"timeline: {path}")
    return 0


def require_trace(output_dir: Path) -> None:
    """Raise :class:`CommandError` unless ``output_dir`` holds a ``trace.json``."""
    if not (output_dir / TRACE_FILE).is_file():
        raise CommandError(
            f"{output_dir} has no {TRACE_FILE}; record one with 'run ... --trace' (or "
            "run: {trace: true} in the config)"
        )


def _trace_export_module() -> ModuleType:
    try:
        return importlib.import_module("trio_designer._observe")
    except ImportError as exc:
        raise CommandError(
            f"trace export is not available in this installation ({exc}); update trio_designer"
        ) from exc


def _checked(action: Callable[[], Any], output_dir: Path) -> Path:
    """Run an export, turning a missing plotting library or a bad trace into a message."""
    try:
        path = action()
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] == "matplotlib":
            raise CommandError(
                "plotting needs matplotlib, an optional extra: pip install 'trio_designer[plot]'"
            ) from exc
        raise
    except TrioDesignerError as exc:  # TraceExportError: its message says what to do
        raise CommandError(in_flags(str(exc))) from exc
    except (OSError, ValueError, KeyError) as exc:
        raise CommandError(f"cannot export the trace of {output_dir}: {exc}") from exc
    return Path(path)
