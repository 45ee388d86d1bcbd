"""Fake installed plugin packages for tests: a ``*.dist-info`` folder and modules in a folder
put on ``sys.path``, as ``pip install --target`` would leave them (``importlib.metadata`` reads
the same files). :func:`installed` also forgets what plugin discovery cached before and after.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from trio_designer.config._plugins import clear_plugin_cache

#: A working column plugin (kind ``reverse_text``, a sync cell generator rendering a template)
#: and a sampler (``dice``, a full-column generator drawing from the seeded generator).
GOOD_MODULE = '''
from typing import Any, ClassVar

import attrs

from trio_designer.generators import CellContext, ColumnContext
from trio_designer.plugins import ColumnGenerator, PluginColumn, PluginSampler, render_template


class ReverseTextGenerator(ColumnGenerator):
    inline = True

    def __init__(self, config: "ReverseText") -> None:
        self.config = config

    def generate(self, ctx: CellContext) -> Any:
        text = render_template(self.config.text, ctx.row, column=ctx.column, field="text")
        return text[::-1].upper() if self.config.upper else text[::-1]


@attrs.frozen(kw_only=True)
class ReverseText(PluginColumn):
    kind: ClassVar[str] = "reverse_text"
    generator_class: ClassVar[type] = ReverseTextGenerator
    template_fields: ClassVar[tuple[str, ...]] = ("text",)

    text: str
    upper: bool = False


class DiceGenerator(ColumnGenerator):
    strategy = "full_column"
    inline = True

    def __init__(self, config: "Dice") -> None:
        self.sides = config.sides

    def generate_column(self, ctx: ColumnContext) -> list[Any]:
        return [ctx.rng_for(row).randint(1, self.sides) for row in ctx.row_indices]


@attrs.frozen(kw_only=True)
class Dice(PluginSampler):
    sampler: ClassVar[str] = "dice"
    generator_class: ClassVar[type] = DiceGenerator

    sides: int = attrs.field(default=6, validator=attrs.validators.ge(2))
'''


def write_distribution(
    site: Path,
    name: str,
    entry_points: Mapping[str, Mapping[str, str]],
    modules: Mapping[str, str],
    version: str = "0.1.0",
) -> None:
    """Write distribution ``name`` (its metadata and its modules) into folder ``site``."""
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = []
    for group, points in entry_points.items():
        lines.append(f"[{group}]")
        lines.extend(f"{key} = {value}" for key, value in points.items())
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    for module, source in modules.items():
        (site / f"{module}.py").write_text(textwrap.dedent(source))


@contextmanager
def installed(site: Path) -> Iterator[Path]:
    """``site`` on ``sys.path`` (first) for the block; plugin caches and the site's modules
    forgotten before and after."""
    before = set(sys.modules)
    sys.path.insert(0, str(site))
    clear_plugin_cache()
    try:
        yield site
    finally:
        sys.path.remove(str(site))
        for module in set(sys.modules) - before:
            file = getattr(sys.modules[module], "__file__", None) or ""
            if file.startswith(str(site)):
                del sys.modules[module]
        clear_plugin_cache()


GOOD_POINTS = {
    "trio_designer.columns": {"reverse_text": "td_good:ReverseText"},
    "trio_designer.samplers": {"dice": "td_good:Dice"},
}
