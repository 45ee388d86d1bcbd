"""``trio-designer export``: a run's dataset as JSONL, CSV, one parquet file or a Hugging Face
``datasets`` directory (optionally pushed to the Hub).

The token for ``--push-to-hub`` comes from the environment (``HF_TOKEN``, or the older
``HUGGING_FACE_HUB_TOKEN``): it is handed to ``huggingface_hub`` and never printed, logged or
written. Without one the command stops before exporting anything.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .._exceptions import MissingDependencyError
from .._sink._export import export_dataset, load_for_push
from ._errors import CommandError

__all__ = ["TOKEN_VARIABLES", "cmd_export"]

TOKEN_VARIABLES = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
"""Environment variables read, in order, for ``--push-to-hub``."""


def cmd_export(args: argparse.Namespace) -> int:
    output_dir = Path(args.output_dir)
    token = None
    if args.push_to_hub is not None:
        if args.format != "hf":
            raise CommandError(
                f"--push-to-hub needs --format hf (not {args.format}): the Hub receives a "
                f"datasets directory"
            )
        token = next((os.environ[v] for v in TOKEN_VARIABLES if os.environ.get(v)), None)
        if token is None:
            raise CommandError(
                "--push-to-hub needs a Hugging Face token in the environment: set HF_TOKEN "
                "(it is read from there only, and never stored or printed)"
            )
    try:
        target = export_dataset(output_dir, args.format, args.output, overwrite=args.overwrite)
    except MissingDependencyError as exc:
        raise CommandError(str(exc)) from exc
    print(f"wrote {target}", file=sys.stderr)
    if token is not None:
        load_for_push(target).push_to_hub(args.push_to_hub, token=token)
        print(f"pushed to https://huggingface.co/datasets/{args.push_to_hub}", file=sys.stderr)
    return 0
