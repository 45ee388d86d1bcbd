"""How a public module presents the names it re-exports from private modules.

Implementation lives in ``_private`` modules; each public module (``trio_designer``,
``trio_designer.config``, ``.generators``, ``.models``, ``.simulator``, ``.aio``) imports what
users need and lists it in a sorted ``__all__``. :func:`present_as` then rewrites each exported
class's and function's ``__module__`` to that public module, so reprs, tracebacks and
``help()`` show the name a user can import (``trio_designer.ConfigError``, not
``trio_designer._exceptions.ConfigError``) and pickling finds it there. A name re-exported by
the top level from a sub-package is presented under the top level, which runs last.

``docs/api.md`` lists every exported name; ``tests/test_exports.py`` checks the two agree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

__all__ = ["present_as"]


def present_as(module: str, namespace: Mapping[str, object], names: Iterable[str]) -> None:
    """Set ``__module__`` of each class or function ``names`` picks from ``namespace``.

    Only objects defined inside trio_designer are touched; type aliases and constants are
    left alone (they have no ``__module__`` of their own to rewrite).

    Args:
      module: the public module's dotted name (``"trio_designer.models"``).
      namespace: the public module's ``globals()``.
      names: its ``__all__``.
    """
    for name in names:
        obj = namespace[name]
        if not isinstance(obj, type) and not callable(obj):
            continue
        own = getattr(obj, "__module__", None)
        if isinstance(own, str) and own.startswith("trio_designer.") and own != module:
            try:
                obj.__module__ = module
            except (AttributeError, TypeError):  # e.g. a typing alias: nothing to present
                continue
