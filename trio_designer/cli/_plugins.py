"""``plugins``: every installed plugin, whether it loads, and why not.

Loads every plugin (imports its module, from the installed environment only) and checks it as a
config that uses it would (:func:`trio_designer.plugins.list_plugins`). Exit 0 when every plugin
works (or none is installed), 1 when one is broken: a broken plugin does not stop runs that do
not use it, but it is worth knowing before one does.
"""

from __future__ import annotations

import argparse
import json

import attrs

from ..config._plugins import GROUPS, NO_PLUGINS_ENV, discovery_enabled
from ..plugins import PluginInfo, list_plugins
from ._format import Redactor, table

EXIT_OK = 0
EXIT_BROKEN = 1


def cmd_plugins(args: argparse.Namespace) -> int:
    """``trio-designer plugins``."""
    if not discovery_enabled():
        print(
            f"plugins are turned off (--no-plugins or {NO_PLUGINS_ENV}); only built-in kinds "
            "are available"
        )
        return EXIT_OK
    infos = list_plugins()
    redact = Redactor()
    if getattr(args, "json", False):
        print(redact(json.dumps([attrs.asdict(info) for info in infos], indent=2)))
    else:
        print(redact(plugins_text(infos)))
    return EXIT_BROKEN if any(not info.ok for info in infos) else EXIT_OK


def plugins_text(infos: tuple[PluginInfo, ...]) -> str:
    """The table of ``plugins``, then one line per broken plugin saying why."""
    if not infos:
        groups = ", ".join(GROUPS)
        return f"no plugins installed (entry-point groups searched: {groups})"
    rows = [
        (
            info.group.removeprefix("trio_designer."),
            _kind(info),
            info.distribution,
            info.version,
            "ok" if info.ok else "broken",
        )
        for info in infos
    ]
    lines = [table(("group", "kind", "package", "version", "status"), rows, align="lllll")]
    lines.extend(
        f"{info.name} ({info.distribution} {info.version}, {info.value}): {info.reason}"
        for info in infos
        if not info.ok
    )
    broken = sum(not info.ok for info in infos)
    lines.append(f"{len(infos)} plugin{'s' if len(infos) != 1 else ''}, {broken} broken")
    return "\n".join(lines)


def _kind(info: PluginInfo) -> str:
    """How a config names the plugin's kind."""
    if info.group == "trio_designer.samplers":
        return f"sampler: {info.name}"
    return info.name
