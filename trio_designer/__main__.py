"""``python -m trio_designer``: the command line (see :mod:`trio_designer.cli`)."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m trio_designer"))
