"""Bounded parsing: how big a config may be, checked before it can cost anything.

A config is data a user may have been handed. Reading it must take bounded time and memory,
whatever it holds, and a hostile one must be refused with a :class:`~trio_designer.ConfigError`
in well under a second, before anything else happens:

==========================  ================================  ===============================
limit                       value                             what it stops
==========================  ================================  ===============================
:data:`MAX_CONFIG_BYTES`    8 MiB of config text               a huge file read into memory
:data:`MAX_YAML_NODES`      1,000,000 YAML nodes, aliases      the "billion laughs": a few
                            expanded                           hundred bytes of nested
                                                               aliases that expand to 10^9
                                                               nodes when anything walks them
:data:`MAX_NESTING`         64 levels of lists and mappings    stack exhaustion in the loader
                                                               and every recursive walk after
:data:`MAX_TEMPLATE_CHARS`  100,000 characters per template    quadratic parsing, huge prompts
==========================  ================================  ===============================

A YAML alias that refers to a node containing it (``a: &a [*a]``) is refused too. The YAML
checks run on the composed node graph (:func:`measure_yaml`), where an alias is one shared
node: counting with a memo costs the size of the *file*, not of its expansion.

What one template *render* may produce is bounded separately, by the sandbox
(:mod:`trio_designer.generators._sandbox`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import yaml

__all__ = [
    "MAX_CONFIG_BYTES",
    "MAX_NESTING",
    "MAX_TEMPLATE_CHARS",
    "MAX_YAML_NODES",
    "LimitExceeded",
    "data_depth_problem",
    "measure_yaml",
]

MAX_CONFIG_BYTES: Final = 8 * 2**20
"""The largest config text read, in bytes (a 10,000-column config is about 1 MiB)."""

MAX_YAML_NODES: Final = 1_000_000
"""The most YAML nodes a config may hold once its aliases are expanded."""

MAX_NESTING: Final = 64
"""The deepest nesting of lists and mappings in a config (JSON schemas included)."""

MAX_TEMPLATE_CHARS: Final = 100_000
"""The longest template (prompt, system prompt, expression, skip condition), in characters."""

#: How deep the line map of a YAML file goes (``columns[3].schema.properties`` is depth 4).
_LINE_MAP_DEPTH: Final = 4


class LimitExceeded(Exception):
    """A config exceeds one of the limits; ``str(exc)`` says which and what to do."""


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [item for pair in node.value for item in pair]
    return []


def measure_yaml(root: yaml.Node) -> dict[str, int]:
    """Check a composed YAML document against the limits; map paths to line numbers.

    Iterative (no recursion, whatever the nesting), linear in the number of distinct nodes.

    Returns:
      ``{"columns[3].prompt": 12, ...}``: the 1-based line of each mapping key and sequence
      item down to a few levels, for messages.

    Raises:
      LimitExceeded: too many nodes once aliases are expanded, nesting too deep, or an alias
        that refers to a node containing it.
    """
    size: dict[int, int] = {}
    height: dict[int, int] = {}
    pending: dict[int, list[yaml.Node]] = {}  # children of the nodes being measured
    lines: dict[str, int] = {}
    scalar = yaml.ScalarNode
    stack: list[tuple[yaml.Node, int, str | None]] = [(root, 0, "")]
    while stack:
        node, depth, path = stack.pop()
        key = id(node)
        if depth < 0:  # the exit marker of a node whose children are all measured
            children = pending.pop(key)
            size[key] = 1 + sum(size[id(child)] for child in children)
            height[key] = 1 + max((height[id(child)] for child in children), default=0)
            if size[key] > MAX_YAML_NODES:
                raise LimitExceeded(
                    f"the YAML expands to more than {MAX_YAML_NODES:,} nodes once its aliases "
                    "(*name) are expanded; write the values out, or use fewer aliases"
                )
            continue
        if key in size:  # an alias of a node already measured
            if depth + height[key] > MAX_NESTING + 1:
                raise _too_deep()
            continue
        if key in pending:
            raise LimitExceeded(
                "a YAML alias refers to a node that contains it (a recursive structure); "
                "a config must be a tree"
            )
        if depth > MAX_NESTING:
            raise _too_deep()
        if isinstance(node, scalar):
            size[key] = height[key] = 1
            continue
        pending[key] = _children(node)
        stack.append((node, -1, None))
        stack.extend(_entries(node, depth, path, lines))
    return lines


def _entries(
    node: yaml.Node, depth: int, path: str | None, lines: dict[str, int]
) -> list[tuple[yaml.Node, int, str | None]]:
    """The children of ``node`` to visit, with their paths (recorded near the top only)."""
    track = path is not None and depth < _LINE_MAP_DEPTH
    entries: list[tuple[yaml.Node, int, str | None]] = []
    if isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            child = f"{path}[{index}]" if track else None
            if child is not None:
                lines.setdefault(child, item.start_mark.line + 1)
            entries.append((item, depth + 1, child))
    elif isinstance(node, yaml.MappingNode):
        for key_node, value in node.value:
            child = None
            if track and isinstance(key_node, yaml.ScalarNode):
                name = str(key_node.value)
                child = f"{path}.{name}" if path else name
                lines.setdefault(child, key_node.start_mark.line + 1)
            entries.append((key_node, depth + 1, None))
            entries.append((value, depth + 1, child))
    return entries


def _too_deep() -> LimitExceeded:
    return LimitExceeded(
        f"the config nests lists and mappings more than {MAX_NESTING} levels deep; flatten it"
    )


def data_depth_problem(data: Any) -> str | None:
    """Whether parsed data (from JSON) nests deeper than :data:`MAX_NESTING`; iterative."""
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_NESTING:
            return str(_too_deep())
        if isinstance(value, Mapping):
            stack.extend((item, depth + 1) for item in value.values())
        elif isinstance(value, list | tuple):
            stack.extend((item, depth + 1) for item in value)
    return None
