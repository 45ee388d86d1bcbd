"""Hypothesis profiles for the property suite.

``dev`` (default) and ``thorough`` (``make soak``: ten times the examples) are derived from the
built-in ``ci`` profile when ``CI`` is set, so CI runs stay derandomized (style.md §5.1).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_base = settings.get_profile("ci") if os.environ.get("CI") else settings.get_profile("default")
for _name in ("dev", "thorough"):
    settings.register_profile(
        _name,
        _base,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        print_blob=True,
    )
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))
