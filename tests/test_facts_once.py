"""One fact, one place: facts that used to be computed in several modules are computed once.

Each test scans the package source for the tell-tale of a second copy.
"""

from __future__ import annotations

import pathlib
import re

from trio_designer.config._models import endpoint_name

PACKAGE = pathlib.Path(__file__).parents[1] / "trio_designer"


def _modules_matching(pattern: str) -> list[str]:
    regex = re.compile(pattern)
    return sorted(
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if regex.search(path.read_text(encoding="utf-8"))
    )


def test_did_you_mean_is_computed_only_in_core_suggest() -> None:
    assert _modules_matching(r"\bdifflib\b") == ["_core/_suggest.py"]


def test_the_endpoint_display_name_is_built_only_by_endpoint_name() -> None:
    assert endpoint_name("simulator", "sim-gen") == "simulator:sim-gen"
    # an f-string that glues a provider and a model with ":" is a second copy of the rule
    assert _modules_matching(r"provider[^\"'\n]*\}:\{[^\"'\n]*model") == ["config/_models.py"]
