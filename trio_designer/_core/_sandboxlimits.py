"""The numbers that bound one template render, shared by the two places that enforce them.

The renderer's sandbox (:mod:`trio_designer.generators._sandbox`) enforces them while a template
renders; the config checks (:mod:`trio_designer.config._templates`) refuse, before any request,
a template whose *constant* parts already exceed them (``range(10**9)``, ``'a' * 10**9``).
Plain numbers: no jinja2, no trio.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "MAX_LOOP_STEPS",
    "MAX_OUTPUT_CHARS",
    "MAX_POWER_BITS",
    "MAX_VALUE_CHARS",
    "MAX_WORK_CHARS",
]

MAX_VALUE_CHARS: Final = 4_000_000
"""Characters or items of each string or list one render builds."""

MAX_OUTPUT_CHARS: Final = 4_000_000
"""Characters of the rendered text."""

MAX_WORK_CHARS: Final = 40_000_000
"""Characters or items of all strings and lists one render builds."""

MAX_LOOP_STEPS: Final = 1_000_000
"""Iterations of all ``{% for %}`` loops of one render, and items of every ``range()``."""

MAX_POWER_BITS: Final = 100_000
"""Bits of the result of ``**``."""
