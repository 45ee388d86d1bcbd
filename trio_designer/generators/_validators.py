"""Validators: what a validation column (``kind: validation``) runs, by kind name.

A validator checks the target values of rows and returns one result per row::

    class Validator(Protocol):
        batched: bool       # True: the column hands it many rows at once (batch_size)
        async def validate(self, rows, ctx) -> list[ValidationResult]: ...

``rows`` is a list of ``{target column: value}`` dicts; ``ctx`` the
:class:`~._base.CellContext` of the (first) cell asking, for ``ctx.models`` and ``ctx.rng``.
A result is ``{"is_valid": bool, "messages": [str, ...]}`` (:func:`result`). A validator that
does CPU-heavy work or runs subprocesses does it off the event loop, through its
``trio.CapacityLimiter`` (``concurrency``), so model traffic never waits for it.

:data:`VALIDATORS` maps a kind (``validator: code``) to a builder
``build(config, search) -> Validator``; a plugin adds one with :func:`register_validator`,
and ``validator: <its kind>`` is then accepted by ``validate`` and runs (its own settings go
in the column's ``options``).
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypedDict

import trio

from .._core._jsonschema import SchemaChecker
from .._exceptions import ConfigError, NonRetryableGenerationError
from ..config._code import CodeSearch
from ..config._code import resolve_function as resolve_code
from ._base import CellContext
from ._validate_code import (
    execution_problems,
    find_ruff,
    json_problems,
    python_syntax,
    ruff_problems,
    sql_problems,
)

if TYPE_CHECKING:
    from ..config import ValidationColumn

__all__ = [
    "VALIDATORS",
    "CallableValidator",
    "CodeValidator",
    "RemoteValidator",
    "ValidationResult",
    "Validator",
    "register_validator",
    "result",
]


class ValidationResult(TypedDict):
    is_valid: bool
    messages: list[str]


def result(is_valid: bool, messages: Sequence[str] = ()) -> ValidationResult:
    """A validation result."""
    return {"is_valid": bool(is_valid), "messages": [str(m) for m in messages]}


class Validator(Protocol):
    """What a validation column calls (see the module docstring)."""

    batched: bool

    async def validate(
        self, rows: Sequence[Mapping[str, Any]], ctx: CellContext
    ) -> list[ValidationResult]: ...


#: ``build(config, search)``: the validator of a validation column.
Builder = Callable[["ValidationColumn", CodeSearch], Validator]


def _limiter(config: ValidationColumn) -> trio.CapacityLimiter:
    return trio.CapacityLimiter(config.concurrency or os.cpu_count() or 2)


class CodeValidator:
    """``validator: code``: Python, SQL or JSON in each target value.

    Checks done in-process (``ast``, ``sqlglot``, a JSON schema) are batched: the rows of
    concurrent cells go to one worker-thread call (one thread hop per batch, not per row).
    With ``ruff`` or ``execute`` each row runs its own subprocess, so it is not batched.
    """

    batched = True

    def __init__(self, config: ValidationColumn, search: CodeSearch) -> None:
        self.config = config
        self.limiter = _limiter(config)
        self.ruff = find_ruff() if config.lint and config.language == "python" else None
        self.batched = self.ruff is None and not (config.execute and config.language == "python")
        self.checker = (
            SchemaChecker(config.schema)
            if config.language == "json" and config.schema is not None
            else None
        )
        if config.language == "sql":
            try:
                import sqlglot  # noqa: F401
            except ImportError:
                raise ConfigError(
                    f"column {config.name!r}: language 'sql' needs the 'sqlglot' package; "
                    "install it with pip install 'trio_designer[sql]'"
                ) from None

    async def validate(
        self, rows: Sequence[Mapping[str, Any]], ctx: CellContext
    ) -> list[ValidationResult]:
        if self.batched:
            work = functools.partial(self._check_in_process, rows)
            return await trio.to_thread.run_sync(work, limiter=self.limiter)
        results = []
        for row in rows:
            messages: list[str] = []
            for target, value in row.items():
                prefix = f"{target}: " if len(row) > 1 else ""
                if value is None:
                    messages.append(f"{prefix}no value to check")
                    continue
                text = value if isinstance(value, str) else str(value)
                checked = value if self.config.language == "json" else text
                messages.extend(prefix + m for m in await self._check(checked))
            results.append(result(not messages, messages))
        return results

    def _check_in_process(self, rows: Sequence[Mapping[str, Any]]) -> list[ValidationResult]:
        """The in-process checks of a batch of rows (runs in a worker thread)."""
        config = self.config
        results = []
        for row in rows:
            messages: list[str] = []
            for target, value in row.items():
                prefix = f"{target}: " if len(row) > 1 else ""
                if value is None:
                    messages.append(f"{prefix}no value to check")
                elif config.language == "sql":
                    messages.extend(prefix + m for m in sql_problems(str(value), config.dialect))
                elif config.language == "json":
                    messages.extend(prefix + m for m in json_problems(value, self.checker))
                else:
                    messages.extend(prefix + m for m in python_syntax(str(value)))
            results.append(result(not messages, messages))
        return results

    async def _check(self, value: Any) -> list[str]:
        config = self.config
        if config.language == "sql":
            work = functools.partial(sql_problems, value, config.dialect)
            return await trio.to_thread.run_sync(work, limiter=self.limiter)
        if config.language == "json":
            work = functools.partial(json_problems, value, self.checker)
            return await trio.to_thread.run_sync(work, limiter=self.limiter)
        problems = await trio.to_thread.run_sync(python_syntax, value, limiter=self.limiter)
        if problems:
            return problems
        if self.ruff is not None:
            async with self.limiter:
                problems = await ruff_problems(value, ruff=self.ruff, timeout=config.timeout)
            if problems:
                return problems
        if config.execute:
            async with self.limiter:
                problems = await execution_problems(
                    value, timeout=config.timeout, memory_mb=config.memory_mb
                )
        return problems


class CallableValidator:
    """``validator: callable``: your function over a batch of rows.

    ``fn(rows)`` (sync: in a worker thread, through the column's limiter; or ``async def``)
    gets a list of ``{target: value}`` dicts and returns one result per row: a ``bool``, or a
    mapping with ``is_valid`` (and optionally ``messages``).
    """

    batched = True

    def __init__(self, config: ValidationColumn, search: CodeSearch) -> None:
        self.name = config.name
        function = config.function
        if isinstance(function, str):
            self.function: Any = resolve_code(function, search, where=f"column {config.name!r}")
        elif callable(function):
            self.function = function
        else:
            raise ConfigError(f"column {config.name!r}: validator 'callable' needs a 'function'")
        self.is_async = inspect.iscoroutinefunction(self.function)
        self.limiter = _limiter(config)
        self.timeout = config.timeout

    async def validate(
        self, rows: Sequence[Mapping[str, Any]], ctx: CellContext
    ) -> list[ValidationResult]:
        batch = [dict(row) for row in rows]
        if self.is_async:
            values = await self.function(batch)
        else:
            values = await trio.to_thread.run_sync(
                self.function, batch, limiter=self.limiter, abandon_on_cancel=True
            )
        if not isinstance(values, list | tuple) or len(values) != len(batch):
            got = len(values) if isinstance(values, list | tuple) else type(values).__name__
            raise NonRetryableGenerationError(
                f"column {self.name!r}: the validator function must return one result per row "
                f"({len(batch)}), got {got}",
                column=self.name,
            )
        return [_as_result(value, self.name) for value in values]


class RemoteValidator:
    """``validator: remote``: POST batches to the endpoint of the column's ``model``.

    The request goes through that alias's client, error mapping and limiter (it waits for a
    slot like a chat request, a 429 slows the endpoint down, a dead provider stops the run):
    ``POST <base_url><path>`` with ``{"model": <model id>, "records": [{target: value}, ...]}``,
    answered by ``{"results": [<bool or {"is_valid", "messages"}>, ...]}`` in order (the
    built-in simulator serves ``/validate``).
    """

    batched = True

    def __init__(self, config: ValidationColumn, search: CodeSearch) -> None:
        assert config.model is not None  # the config class requires it
        self.name = config.name
        self.alias = config.model
        self.path = config.path if config.path.startswith("/") else "/" + config.path

    async def validate(
        self, rows: Sequence[Mapping[str, Any]], ctx: CellContext
    ) -> list[ValidationResult]:
        if ctx.models is None:
            raise ConfigError(f"column {self.name!r}: validator 'remote' needs a model")
        handle = ctx.models.model(self.alias)
        answer = await handle.post(
            self.path, {"model": handle.model, "records": [dict(row) for row in rows]}
        )
        results = answer.get("results") if isinstance(answer, Mapping) else None
        if not isinstance(results, list) or len(results) != len(rows):
            raise NonRetryableGenerationError(
                f"column {self.name!r}: the endpoint's answer to {self.path} must be "
                f'{{"results": [...]}} with one result per record ({len(rows)})',
                column=self.name,
            )
        return [_as_result(value, self.name) for value in results]


def _as_result(value: Any, column: str) -> ValidationResult:
    if isinstance(value, bool):
        return result(value)
    if isinstance(value, Mapping) and isinstance(value.get("is_valid"), bool):
        messages = value.get("messages") or []
        if isinstance(messages, str):
            messages = [messages]
        return result(value["is_valid"], list(messages))
    raise NonRetryableGenerationError(
        f"column {column!r}: a validation result must be true/false or a mapping with "
        f"'is_valid' (and 'messages'); got {type(value).__name__}",
        column=column,
    )


VALIDATORS: dict[str, Builder] = {
    "code": CodeValidator,
    "callable": CallableValidator,
    "remote": RemoteValidator,
}


def register_validator(kind: str, builder: Builder) -> None:
    """Make ``validator: <kind>`` usable in validation columns.

    Raises:
      ConfigError: ``kind`` is already registered to another builder.
    """
    taken = VALIDATORS.get(kind)
    if taken is not None and taken is not builder:
        raise ConfigError(f"validator kind {kind!r} is already registered; choose another name")
    VALIDATORS[kind] = builder
