"""Example budgets: ``scaled(n)`` is ``n`` normally and ``10 * n`` under the thorough profile."""

from __future__ import annotations

import os

SCALE = 10 if os.environ.get("HYPOTHESIS_PROFILE") == "thorough" else 1


def scaled(n: int) -> int:
    return n * SCALE
