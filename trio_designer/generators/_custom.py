"""Custom columns: a user function fills a cell (or a whole row group).

::

    def shout(row):                         # sync: runs in a worker thread, may block
        return row["topic"].upper()

    async def lookup(row, ctx):             # async: runs on the event loop; may await
        await trio.sleep(0.1)
        return ctx.rng.randint(0, 9)        # randomness only from ctx.rng (determinism)

    CustomColumn(name="loud", function=shout)
    CustomColumn(name="n", function="my_pkg.lookups:lookup")   # import path "module:name"

An import path names one function (or generator class, see :class:`CustomGenerator`) defined in
that module, imported only from the installed environment or the pipeline's ``python_path``
(never from the config's or the current directory implicitly): the rules and their reasons are
in :mod:`trio_designer.config._code` and ``docs/security.md``.

The calling convention:

* **cell** strategy: ``fn(row)`` or ``fn(row, ctx)`` with a :class:`CellContext`; returns the
  cell's value.
* **full_column** strategy: ``fn(rows)`` or ``fn(rows, ctx)`` with a :class:`ColumnContext`;
  returns a list (or tuple) with one value per row, in order.

``ctx`` is passed when the function takes two or more positional parameters (or ``*args``),
counting those with defaults; with one it gets only the row(s). ``row``/``rows`` are shallow
copies of the engine's rows, so mutating them changes nothing.

A sync function runs in ``trio.to_thread.run_sync`` (it may block; cancellation waits for it to
return, so no thread is left behind); an ``async def`` function (or an object with an
``async def __call__``) is awaited directly. A sync function that returns a coroutine is
refused by trio with a ``TypeError``: declare the function ``async def`` instead. With
``llm_bound=True`` the engine hands the task over to the LLM-wait pool before calling the
function, so the task holds an LLM-wait slot rather than a submission slot while it runs.
With a ``dtype`` the result is cast as for expression columns (:func:`cast_value`).

Errors: exceptions raised by the function propagate unchanged (the engine treats a non-
trio_designer exception as non-retryable, and honours a raised
:class:`~trio_designer.RetryableGenerationError`). A full-column result of the wrong length or
type raises :class:`~trio_designer.NonRetryableGenerationError`. An import path that is refused
or does not resolve raises :class:`~trio_designer.ConfigError` when the generator is built.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Literal, final

import trio

from trio_designer._exceptions import ConfigError, NonRetryableGenerationError
from trio_designer.config._code import CodeSearch
from trio_designer.config._code import resolve_function as resolve_code

from ._base import CellContext, ColumnContext, ColumnGenerator
from ._expression import cast_value, dtype_arrow_type

if TYPE_CHECKING:
    from trio_designer.config import CustomColumn

__all__ = [
    "CustomCellGenerator",
    "CustomColumnGenerator",
    "CustomGenerator",
    "custom_generator",
    "resolve_function",
]


def resolve_function(
    function: Callable[..., Any] | str, *, column: str, search: CodeSearch | None = None
) -> Any:
    """The callable a custom column names: ``function`` itself, or what its import path names.

    Args:
      function: a callable, or ``"package.module:name"`` naming a function (or a generator
        class, see :class:`CustomGenerator`) *defined in* that module.
      column: the column's name, for messages.
      search: where the module may be imported from (the pipeline's
        :meth:`~trio_designer.PipelineConfig.code_search`); default: the installed
        environment only.

    Raises:
      ConfigError: the path's form is refused, the module is in none of the allowed places or
        fails to import, or the name is not a function or class defined there (see
        :mod:`trio_designer.config._code`).
    """
    if not isinstance(function, str):
        if callable(function):
            return function
        raise ConfigError(
            f"column {column!r}: function must be a callable or an import path "
            f"'module:function'; got {type(function).__name__}."
        )
    return resolve_code(function, search or CodeSearch(), where=f"column {column!r}")


def _wants_context(fn: Callable[..., Any], *, column: str) -> bool:
    """Whether ``fn`` takes a second positional parameter (the context)."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # some builtins have no signature: pass the row only
        return False
    positional = 0
    for parameter in signature.parameters.values():
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            return True
        if parameter.kind in (
            inspect.Parameter.POSITIONAL_ONLY,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
        ):
            positional += 1
    if positional == 0:
        raise ConfigError(
            f"column {column!r}: the custom function takes no positional parameter; it must "
            f"accept the row (cell strategy) or the rows (full_column), optionally followed by "
            f"the context."
        )
    return positional >= 2


def _is_async(fn: Callable[..., Any]) -> bool:
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(fn, "__call__", None)  # noqa: B004 - an object with an async __call__
    return call is not None and inspect.iscoroutinefunction(call)


class CustomGenerator(ColumnGenerator):
    """Calls a user function; see the module docstring for the calling convention.

    Build one with :func:`custom_generator`, which picks the subclass matching the column's
    ``strategy`` and ``llm_bound`` (both are class attributes of a generator).

    A *generator class* (a class named by the import path) is a plugin: it is instantiated
    once, without arguments, and its ``agenerate(ctx)`` / ``generate(ctx)`` (cell strategy) or
    ``agenerate_column(ctx)`` / ``generate_column(ctx)`` (full column) fill the column with the
    engine's context, as a built-in generator would.
    """

    def __init__(self, config: CustomColumn, *, search: CodeSearch | None = None) -> None:
        self.name = config.name
        target = resolve_function(config.function, column=self.name, search=search)
        self._plugin: Any = None
        if inspect.isclass(target):
            self._plugin = _plugin(target, config)
            self._function: Callable[..., Any] = target
            self._is_async = False
            self._wants_context = True
        else:
            self._function = target
            self._is_async = _is_async(self._function)
            self._wants_context = _wants_context(self._function, column=self.name)
        self._dtype = config.dtype

    async def _call(self, argument: Any, ctx: CellContext | ColumnContext) -> Any:
        # No checkpoint before the user function: the engine has already handed an LLM-bound
        # task over to the LLM-wait pool, and a full-column task must start with exactly the
        # rows it was given (a checkpoint here would let a sibling drop one of them first).
        if self._plugin is not None:
            return await _call_plugin(self._plugin, ctx)
        args = (argument, ctx) if self._wants_context else (argument,)
        if self._is_async:
            return await self._function(*args)
        return await trio.to_thread.run_sync(functools.partial(self._function, *args))

    def arrow_type(self) -> Any:
        return dtype_arrow_type(self._dtype)


_PLUGIN_METHODS: dict[str, tuple[str, str]] = {
    "cell": ("agenerate", "generate"),
    "full_column": ("agenerate_column", "generate_column"),
}


def _plugin(cls: type[Any], config: CustomColumn) -> Any:
    """An instance of a generator class named by a custom column, checked to fit its strategy.

    Raises:
      ConfigError: it has no method for the column's strategy, or it cannot be instantiated.
    """
    methods = _PLUGIN_METHODS[config.strategy]
    if not any(callable(getattr(cls, method, None)) for method in methods):
        raise ConfigError(
            f"column {config.name!r}: the class {cls.__qualname__!r} has neither "
            f"{methods[0]}(ctx) nor {methods[1]}(ctx), which strategy {config.strategy!r} "
            "calls; implement one, or name a function"
        )
    try:
        return cls()
    except Exception as exc:
        raise ConfigError(
            f"column {config.name!r}: creating the generator {cls.__qualname__!r} failed "
            f"({type(exc).__name__}: {exc}); it must be constructible without arguments"
        ) from exc


async def _call_plugin(plugin: Any, ctx: CellContext | ColumnContext) -> Any:
    async_name, sync_name = _PLUGIN_METHODS[
        "full_column" if isinstance(ctx, ColumnContext) else "cell"
    ]
    method = getattr(plugin, async_name, None)
    if callable(method) and inspect.iscoroutinefunction(method):
        return await method(ctx)
    return await trio.to_thread.run_sync(getattr(plugin, sync_name), ctx)


class CustomCellGenerator(CustomGenerator):
    """Cell strategy: ``fn(row)`` / ``fn(row, ctx)`` for each row."""

    strategy: ClassVar[Literal["cell", "full_column"]] = "cell"

    async def agenerate(self, ctx: CellContext) -> Any:
        """Call the function with a copy of ``ctx.row``; cast the result to the dtype."""
        value = await self._call(dict(ctx.row), ctx)
        return cast_value(value, self._dtype, column=self.name, row=ctx.row_index)


class CustomColumnGenerator(CustomGenerator):
    """Full-column strategy: ``fn(rows)`` / ``fn(rows, ctx)`` once per row group."""

    strategy: ClassVar[Literal["cell", "full_column"]] = "full_column"

    async def agenerate_column(self, ctx: ColumnContext) -> list[Any]:
        """Call the function with copies of ``ctx.rows``; check and cast its list of values.

        Raises:
          NonRetryableGenerationError: the result is not a list/tuple of ``len(ctx.rows)``
            values, or a value does not cast to the dtype.
        """
        values = await self._call([dict(row) for row in ctx.rows], ctx)
        if not isinstance(values, list | tuple):
            raise NonRetryableGenerationError(
                f"column {self.name!r}: the full-column function returned a "
                f"{type(values).__name__}; return a list with one value per row "
                f"({len(ctx.rows)} rows in row group {ctx.row_group}).",
                column=self.name,
            )
        if len(values) != len(ctx.rows):
            raise NonRetryableGenerationError(
                f"column {self.name!r}: the full-column function returned {len(values)} values "
                f"for {len(ctx.rows)} rows in row group {ctx.row_group}; return exactly one "
                f"value per row, in order.",
                column=self.name,
            )
        return [
            cast_value(value, self._dtype, column=self.name, row=row_index)
            for value, row_index in zip(values, ctx.row_indices, strict=True)
        ]


@final
class _LLMBoundCustomCellGenerator(CustomCellGenerator):
    llm_bound: ClassVar[bool] = True


@final
class _LLMBoundCustomColumnGenerator(CustomColumnGenerator):
    llm_bound: ClassVar[bool] = True


_CLASSES: dict[tuple[str, bool], type[CustomGenerator]] = {
    ("cell", False): CustomCellGenerator,
    ("cell", True): _LLMBoundCustomCellGenerator,
    ("full_column", False): CustomColumnGenerator,
    ("full_column", True): _LLMBoundCustomColumnGenerator,
}


def custom_generator(config: CustomColumn, *, search: CodeSearch | None = None) -> CustomGenerator:
    """Build the generator of a custom column.

    Args:
      config: the column.
      search: where an import path's module may come from (default: the installed
        environment only).

    Raises:
      ConfigError: an unresolvable function, or a function that takes no positional
        parameter (or an unknown strategy, which the config class already rejects).
    """
    cls = _CLASSES.get((config.strategy, bool(config.llm_bound)))
    if cls is None:
        raise ConfigError(
            f"column {config.name!r}: strategy must be 'cell' or 'full_column'; "
            f"got {config.strategy!r}."
        )
    return cls(config, search=search)
