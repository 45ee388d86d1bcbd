"""``python -m trio_designer``: the command line (see :mod:`trio_designer.cli`).

``python -m`` puts the current directory first on ``sys.path`` (as ``''`` or its full path),
so a ``pandas.py`` lying in the directory a command is run from would shadow the real package
for every import the command makes. That entry is removed before anything else is imported:
code is imported from the installed environment and the ``python_path`` / ``--python-path``
directories only (see ``docs/security.md``).
"""

from __future__ import annotations

import os
import sys


def _drop_current_directory() -> None:
    if sys.flags.safe_path or not sys.path:
        return
    try:
        cwd = os.path.realpath(os.getcwd())
    except OSError:
        cwd = None
    first = sys.path[0]
    if first in ("", ".") or (cwd is not None and os.path.realpath(first) == cwd):
        del sys.path[0]


if __name__ == "__main__":
    _drop_current_directory()
    from trio_designer.cli import main

    sys.exit(main(prog="python -m trio_designer"))
