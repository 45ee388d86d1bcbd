"""Writing a plugin: what an installed package needs to add a column kind or a sampler.

A plugin is a distribution package that registers entry points in a ``trio_designer.*``
group (docs/plugins.md)::

    [project.entry-points."trio_designer.columns"]
    reverse_text = "td_example_plugin:ReverseText"

The entry point names a config class (a frozen attrs subclass of :class:`PluginColumn`, or of
:class:`PluginSampler` in ``trio_designer.samplers``) whose ``generator_class`` is a
:class:`ColumnGenerator` subclass: the same protocol as every built-in generator (sync or
async; per cell with a :class:`~trio_designer.generators.CellContext`, or per row group with
a :class:`~trio_designer.generators.ColumnContext`; :class:`CellOutput` for side columns).
:func:`render_template` renders a template field in the same sandbox as built-in columns.
:func:`list_plugins` says what is installed and whether it loads; a broken plugin raises
:class:`~trio_designer.PluginError` (a ``ConfigError``) when a config uses it.

Processors (``trio_designer.processors``: a ``trio_designer.config.ProcessorBase`` subclass
with its ``processor_class``) and validators (``trio_designer.validators``: a class with
``batched`` and ``async def validate``) plug in the same way (docs/plugins.md).
"""

from __future__ import annotations

from .. import _public
from ..config._columns import PluginColumn as PluginColumn
from ..config._columns import PluginSampler as PluginSampler
from ..generators._base import CellOutput as CellOutput
from ..generators._base import ColumnGenerator as ColumnGenerator
from ..generators._templates import render as render_template
from ._listing import PluginInfo as PluginInfo
from ._listing import list_plugins as list_plugins

__all__ = [
    "CellOutput",
    "ColumnGenerator",
    "PluginColumn",
    "PluginInfo",
    "PluginSampler",
    "list_plugins",
    "render_template",
]

_public.present_as(__name__, globals(), __all__)
