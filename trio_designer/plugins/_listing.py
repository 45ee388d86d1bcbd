"""``list_plugins``: every installed plugin of every group, loaded and checked.

For ``trio-designer plugins`` and for plugin authors' tests. Loading a plugin imports its
module (only the installed environment is searched, see :mod:`trio_designer.config._plugins`);
a column or sampler plugin is also checked against the generator protocol, as building its
generator would (:mod:`trio_designer.generators._plugin`).
"""

from __future__ import annotations

import attrs

from ..config import _plugin_processors  # noqa: F401  (registers the processor and validator groups)
from ..config._plugins import COLUMNS, GROUPS, SAMPLERS, PluginStatus, group_statuses
from ..generators._plugin import generator_problem

__all__ = ["PluginInfo", "list_plugins"]


@attrs.frozen
class PluginInfo:
    """One installed plugin (one entry point).

    Attributes:
      group: the entry-point group (``"trio_designer.columns"``).
      name: the kind it adds (``"reverse_text"``; for samplers, the ``sampler:`` name).
      value: the entry point's target, ``"module:attribute"``.
      distribution: the distribution package that registers it.
      version: that package's version.
      ok: it loads and passes every check.
      reason: why it is broken (``None`` when ``ok``).
    """

    group: str
    name: str
    value: str
    distribution: str
    version: str
    ok: bool
    reason: str | None = None


def list_plugins() -> tuple[PluginInfo, ...]:
    """Every plugin of every group trio_designer knows, in group order, then by name.

    Imports each plugin's module. Empty when plugins are turned off
    (``TRIO_DESIGNER_NO_PLUGINS=1``).
    """
    infos: list[PluginInfo] = []
    for group in GROUPS:
        infos.extend(_info(status) for status in group_statuses(group))
    return tuple(infos)


def _info(status: PluginStatus) -> PluginInfo:
    source = status.source
    reason = status.error.reason if status.error is not None else None
    if reason is None and source.group in (COLUMNS, SAMPLERS):
        reason = generator_problem(status.value)
    return PluginInfo(
        group=source.group,
        name=source.name,
        value=source.value,
        distribution=source.distribution,
        version=source.version,
        ok=reason is None,
        reason=reason,
    )
