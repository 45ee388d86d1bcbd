"""Validation columns (``kind: validation``): a struct ``{is_valid, messages}`` per row.

The generator runs per cell: the row's target values go to the column's validator
(:mod:`._validators`). A *batched* validator (``callable``, ``remote``) gets many rows at once:
the cells of the column meet in a :class:`_Batcher`, which hands their rows over together, up
to ``batch_size`` (a remote validator's first row waits at most :data:`LINGER` seconds for
more to arrive; an in-process one only lets the cells ready at that moment join).

With ``drop_invalid: true`` an invalid row raises :class:`~trio_designer.ValidationFailedError`:
the row is dropped through the usual cascade (nothing downstream of it runs) and recorded in
``failures.jsonl`` with the validator's messages; it does not count as an error towards early
shutdown.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import attrs
import pyarrow as pa
import trio

from .._core._retry import RetryPolicy
from .._exceptions import (
    ConfigError,
    NonRetryableGenerationError,
    ProviderError,
    RetryableGenerationError,
    ValidationFailedError,
)
from ..config._code import CodeSearch
from ..config._plugin_processors import validator_plugin
from ..config._plugins import VALIDATORS as VALIDATOR_PLUGINS
from ..config._plugins import plugin_names
from ._base import CellContext, ColumnGenerator
from ._validators import VALIDATORS, ValidationResult, Validator

if TYPE_CHECKING:
    from ..config import ValidationColumn

__all__ = ["LINGER", "VALIDATION_TYPE", "YIELDS", "ValidationGenerator", "validation_generator"]

#: How long the first row of a remote validator's batch waits for more rows.
LINGER = 0.005

#: How many scheduler passes the first row of an in-process validator's batch lets go by.
YIELDS = 3

#: The Arrow type of a validation column.
VALIDATION_TYPE = pa.struct([("is_valid", pa.bool_()), ("messages", pa.list_(pa.string()))])


@attrs.define(eq=False)
class _Item:
    values: Mapping[str, Any]
    done: trio.Event = attrs.field(factory=trio.Event)
    result: ValidationResult | None = None
    error: str | None = None
    retryable: bool = False
    fatal: BaseException | None = None


class _Batcher:
    """Collects the rows of concurrent cells into batches (see the module docstring).

    The first cell to arrive leads: it waits up to :data:`LINGER` (or until a batch is full),
    validates batches until none is pending, and hands each cell its result. The leader's
    work is shielded, so a leader whose own row is dropped meanwhile still finishes the
    others' batches (each bounded by the column's ``timeout``).
    """

    def __init__(
        self, validator: Validator, name: str, batch_size: int, timeout: float, linger: float
    ) -> None:
        self.validator = validator
        self.linger = linger
        self.name = name
        self.batch_size = batch_size
        self.timeout = timeout
        self.pending: list[_Item] = []
        self.full = trio.Event()
        self.leading = False

    async def submit(self, values: Mapping[str, Any], ctx: CellContext) -> ValidationResult:
        item = _Item(values)
        self.pending.append(item)
        if len(self.pending) >= self.batch_size:
            self.full.set()
        if not self.leading:
            self.leading = True
            try:
                with trio.CancelScope(shield=True):
                    await self._lead(ctx)
            finally:
                self.leading = False
        await item.done.wait()
        if item.fatal is not None:
            raise item.fatal  # a provider that cannot work at all: the run stops
        if item.error is not None:
            if item.retryable:
                raise RetryableGenerationError(item.error, column=self.name, row=ctx.row_index)
            raise NonRetryableGenerationError(item.error, column=self.name, row=ctx.row_index)
        assert item.result is not None
        return item.result

    async def _lead(self, ctx: CellContext) -> None:
        while self.pending:
            if len(self.pending) < self.batch_size:
                await self._gather()
            batch = self.pending[: self.batch_size]
            self.pending = self.pending[self.batch_size :]
            self.full = trio.Event()
            if len(self.pending) >= self.batch_size:
                self.full.set()
            await self._run(batch, ctx)

    async def _gather(self) -> None:
        """Let more rows arrive: a remote validator waits up to :data:`LINGER` (a request per
        batch is worth a few milliseconds); an in-process one only lets the cells that are
        ready right now run first (:data:`YIELDS` passes of the scheduler), so a batch never
        waits on a clock."""
        if self.linger > 0:
            with trio.move_on_after(self.linger):
                await self.full.wait()
            return
        for _ in range(YIELDS):
            if self.full.is_set():
                return
            await trio.lowlevel.cancel_shielded_checkpoint()

    async def _run(self, batch: list[_Item], ctx: CellContext) -> None:
        error: str | None = None
        retryable = False
        fatal: BaseException | None = None
        results: list[ValidationResult] = []
        with trio.move_on_after(self.timeout) as scope:
            try:
                results = await self.validator.validate([i.values for i in batch], ctx)
            except ProviderError as exc:
                fatal = exc
            except Exception as exc:  # every cell of the batch fails with it
                retryable = RetryPolicy.is_retryable(exc)  # a 503: the cells are retried
                error = f"column {self.name!r}: the validator failed: {type(exc).__name__}: {exc}"
        if scope.cancelled_caught:
            error = f"column {self.name!r}: the validator did not answer within {self.timeout:g} s"
            retryable = True
        for index, item in enumerate(batch):
            if fatal is not None:
                item.fatal = fatal
            elif error is None and index < len(results):
                item.result = results[index]
            else:
                item.error = error or f"column {self.name!r}: no result for this row"
                item.retryable = retryable
            item.done.set()


class ValidationGenerator(ColumnGenerator):
    """Fills a validation column (see the module docstring)."""

    strategy: ClassVar[Any] = "cell"

    def __init__(self, config: ValidationColumn, *, search: CodeSearch | None = None) -> None:
        builder = VALIDATORS.get(config.validator) or validator_plugin(config.validator)
        if builder is None:
            known = ", ".join(sorted({*VALIDATORS, *plugin_names(VALIDATOR_PLUGINS)}))
            raise ConfigError(
                f"column {config.name!r}: unknown validator {config.validator!r}; use one of "
                f"{known} (or install the plugin that provides it)"
            )
        self.name = config.name
        self.targets = config.target
        self.drop_invalid = config.drop_invalid
        self.validator = builder(config, search or CodeSearch())
        self.batcher = (
            _Batcher(
                self.validator,
                config.name,
                config.batch_size,
                config.timeout,
                LINGER if config.validator == "remote" else 0.0,
            )
            if self.validator.batched
            else None
        )

    async def agenerate(self, ctx: CellContext) -> Any:
        values = {target: ctx.row.get(target) for target in self.targets}
        if self.batcher is not None:
            outcome = await self.batcher.submit(values, ctx)
        else:
            [outcome] = await self.validator.validate([values], ctx)
        if self.drop_invalid and not outcome["is_valid"]:
            listed = "; ".join(outcome["messages"]) or "no message"
            raise ValidationFailedError(
                f"column {self.name!r}: the row is invalid: {listed[:400]}",
                column=self.name,
                row=ctx.row_index,
            )
        return dict(outcome)

    def arrow_type(self) -> Any:
        return VALIDATION_TYPE


class _RemoteValidationGenerator(ValidationGenerator):
    """A remote validator waits on an endpoint: the engine hands its task to the LLM-wait pool
    before calling it, as for a model call."""

    llm_bound: ClassVar[bool] = True


def validation_generator(
    config: ValidationColumn, *, search: CodeSearch | None = None
) -> ValidationGenerator:
    """Build the generator of a validation column.

    Raises:
      ConfigError: an unknown validator kind, or one that cannot be built (a missing
        function, a missing optional package).
    """
    if config.validator == "remote":
        return _RemoteValidationGenerator(config, search=search)
    return ValidationGenerator(config, search=search)
