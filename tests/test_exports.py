"""The public face of the package is pinned (style.md §9 rule 1)."""

from __future__ import annotations

import trio_designer


def test_all_is_sorted_and_complete() -> None:
    public = {name for name in dir(trio_designer) if not name.startswith("_")}
    modules = {"config", "generators", "models", "simulator", "cli", "annotations"}
    assert sorted(trio_designer.__all__) == trio_designer.__all__
    assert set(trio_designer.__all__) == public - modules


def test_every_export_is_importable_and_unique() -> None:
    seen: dict[int, str] = {}
    for name in trio_designer.__all__:
        obj = getattr(trio_designer, name)
        assert id(obj) not in seen, f"{name} is exported twice (also as {seen[id(obj)]})"
        seen[id(obj)] = name


def test_exceptions_share_one_root() -> None:
    for name in trio_designer.__all__:
        obj = getattr(trio_designer, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, trio_designer.TrioDesignerError), name
