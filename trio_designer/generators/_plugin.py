"""The generator of a plugin column: its class checked against the generator protocol, built.

A plugin's config class names its generator (``generator_class``, see
:class:`~trio_designer.plugins.PluginColumn`); the generator is a :class:`ColumnGenerator`
subclass like every built-in one, so the engine schedules, retries, traces and resumes it the
same way. What the config side could not check (it does not import the engine) is checked
here, once per class, when the generator is first built: before any request, by ``validate``
and at the start of a run.
"""

from __future__ import annotations

from .._exceptions import ConfigError
from ..config._columns import PluginColumn
from ..config._plugins import source_of
from ._base import ColumnGenerator

__all__ = ["build_plugin_generator", "generator_problem"]

_METHODS: dict[str, tuple[str, str]] = {
    "cell": ("agenerate", "generate"),
    "full_column": ("agenerate_column", "generate_column"),
}


def generator_problem(config_class: type[PluginColumn]) -> str | None:
    """What is wrong with ``config_class.generator_class`` as a generator, or ``None``."""
    cls = getattr(config_class, "generator_class", None)
    if not isinstance(cls, type) or not issubclass(cls, ColumnGenerator):
        return (
            f"{config_class.__qualname__}.generator_class must be a subclass of "
            f"trio_designer.plugins.ColumnGenerator, got {cls!r}"
        )
    methods = _METHODS.get(cls.strategy)
    if methods is None:
        return f"{cls.__qualname__}.strategy must be 'cell' or 'full_column': {cls.strategy!r}"
    own = [name for name in methods if getattr(cls, name) is not getattr(ColumnGenerator, name)]
    if not own:
        return (
            f"{cls.__qualname__} implements neither {methods[0]}(ctx) nor {methods[1]}(ctx), "
            f"which strategy {cls.strategy!r} calls"
        )
    return None


def build_plugin_generator(column: PluginColumn) -> ColumnGenerator:
    """``column.generator_class(column)``, after checking the class.

    Raises:
      PluginError: the plugin's generator class breaks the protocol, or building it raised
        something other than a ``ConfigError`` (when the class came from an entry point;
        otherwise a ``ConfigError`` naming the class).
      ConfigError: the generator refused the column's config.
    """
    config_class = type(column)
    problem = generator_problem(config_class)  # cheap: a few attribute reads
    if problem is None:
        try:
            generator = config_class.generator_class(column)
        except ConfigError:
            raise
        except Exception as exc:
            problem = f"building its generator failed: {type(exc).__name__}: {exc}"
        else:
            if isinstance(generator, ColumnGenerator):
                return generator
            problem = f"{config_class.generator_class.__qualname__}(config) is not a generator"
    raise _error(column, problem)


def _error(column: PluginColumn, problem: str) -> ConfigError:
    source = source_of(type(column))
    if source is not None:
        return source.error(problem)
    return ConfigError(f"column {column.name!r} (kind {column.kind!r}): {problem}")
