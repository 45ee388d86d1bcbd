"""Custom columns: a user function fills a cell (or a whole row group).

::

    def shout(row):                         # sync: runs in a worker thread, may block
        return row["topic"].upper()

    async def lookup(row, ctx):             # async: runs on the event loop; may await
        await trio.sleep(0.1)
        return ctx.rng.randint(0, 9)        # randomness only from ctx.rng (determinism)

    CustomColumn(name="loud", function=shout)
    CustomColumn(name="n", function="my_pkg.lookups:lookup")   # import path "module:attr"

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
type raises :class:`~trio_designer.NonRetryableGenerationError`. An import path that does not
resolve to a callable raises :class:`~trio_designer.ConfigError` when the generator is built.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Literal, final

import trio

from trio_designer._exceptions import ConfigError, NonRetryableGenerationError

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


def resolve_function(function: Callable[..., Any] | str, *, column: str) -> Callable[..., Any]:
    """The callable a custom column names: ``function`` itself, or the object at an import path.

    Args:
      function: a callable, or ``"package.module:attr"`` (``attr`` may be dotted, e.g.
        ``"pkg.mod:Class.method"``).
      column: the column's name, for messages.

    Raises:
      ConfigError: the path is malformed, its module does not import, the attribute is
        missing, or the object is not callable.
    """
    if callable(function):
        return function
    if not isinstance(function, str):
        raise ConfigError(
            f"column {column!r}: function must be a callable or an import path "
            f"'module:function'; got {type(function).__name__}."
        )
    module_name, sep, attr_path = function.partition(":")
    if not sep or not module_name or not attr_path:
        raise ConfigError(
            f"column {column!r}: function {function!r} is not an import path; write it as "
            f"'package.module:function'."
        )
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as exc:  # any import-time failure of user code is a config problem
        raise ConfigError(
            f"column {column!r}: cannot import module {module_name!r} for function "
            f"{function!r} ({type(exc).__name__}: {exc}); check the path and that the module "
            f"is installed."
        ) from exc
    for attr in attr_path.split("."):
        try:
            target = getattr(target, attr)
        except AttributeError as exc:
            raise ConfigError(
                f"column {column!r}: {function!r} does not resolve: {exc}; check the name."
            ) from exc
    if not callable(target):
        raise ConfigError(
            f"column {column!r}: {function!r} is a {type(target).__name__}, not a callable."
        )
    resolved: Callable[..., Any] = target
    return resolved


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
    """

    def __init__(self, config: CustomColumn) -> None:
        self.name = config.name
        self._function = resolve_function(config.function, column=self.name)
        self._is_async = _is_async(self._function)
        self._wants_context = _wants_context(self._function, column=self.name)
        self._dtype = config.dtype

    async def _call(self, argument: Any, ctx: CellContext | ColumnContext) -> Any:
        # No checkpoint before the user function: the engine has already handed an LLM-bound
        # task over to the LLM-wait pool, and a full-column task must start with exactly the
        # rows it was given (a checkpoint here would let a sibling drop one of them first).
        args = (argument, ctx) if self._wants_context else (argument,)
        if self._is_async:
            return await self._function(*args)
        return await trio.to_thread.run_sync(functools.partial(self._function, *args))

    def arrow_type(self) -> Any:
        return dtype_arrow_type(self._dtype)


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


def custom_generator(config: CustomColumn) -> CustomGenerator:
    """Build the generator of a custom column.

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
    return cls(config)
