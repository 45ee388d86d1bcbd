"""The one "did you mean" rule (trio_designer/_core/_suggest.py) and that every message uses it."""

from __future__ import annotations

from trio_designer._core._suggest import closest, did_you_mean


def test_the_closest_similar_candidate_is_suggested() -> None:
    assert closest("promt", ["model", "prompt", "kind"]) == "prompt"
    assert did_you_mean("gne", ["judge", "gen"], otherwise="declare it") == "did you mean 'gen'?"


def test_nothing_similar_gives_the_fallback_hint() -> None:
    assert closest("xyz", ["model", "prompt"]) is None
    assert did_you_mean("xyz", ["prompt"], otherwise="expected 'prompt'") == "expected 'prompt'"
    assert did_you_mean("xyz", [], otherwise="nothing declared") == "nothing declared"


def test_the_suggestion_does_not_depend_on_declaration_order() -> None:
    # "cat" is equally close to "bat" and "car"; the tie must not follow the input order.
    assert closest("cat", ["car", "bat"]) == closest("cat", ["bat", "car"])
