"""Expression columns: a Jinja template rendered per row, optionally cast to a dtype.

::

    ExpressionColumn(name="n_words", expr="{{ summary.split() | length }}", dtype="int")

renders ``expr`` with the row's upstream values (see :mod:`._templates`) and casts the text:

=======  =====================================================  ============
dtype    accepted text (surrounding whitespace ignored)         arrow type
=======  =====================================================  ============
None     anything; the value is the rendered text                (inferred)
``str``  anything; the value is the rendered text                string
``int``  an integer, or a float with no fractional part         int64
         (``"3"``, ``"3.0"``, ``"-1e3"``)
``float`` anything ``float()`` parses (``"2.5"``, ``"1e-3"``)      float64
``bool`` ``true/false``, ``yes/no``, ``1/0`` (any case)           bool
``json`` any JSON document (``json.loads``)                     (inferred)
=======  =====================================================  ============

A rendering or casting failure raises :class:`~trio_designer.NonRetryableGenerationError`
naming the column, the row, the value and the dtype: the same row renders the same way every
time, so retrying would not help.

:func:`cast_value` also accepts non-text values (custom columns use it for their ``dtype``).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, ClassVar, Literal, final

import pyarrow as pa

from trio_designer._exceptions import NonRetryableGenerationError

from ._base import CellContext, ColumnGenerator
from ._templates import check_template, render

if TYPE_CHECKING:
    from trio_designer.config import ExpressionColumn

__all__ = ["ExpressionGenerator", "cast_value", "dtype_arrow_type"]

_TRUE_TEXTS = frozenset({"true", "1", "yes"})
_FALSE_TEXTS = frozenset({"false", "0", "no"})
_SHOWN_CHARS = 80


def dtype_arrow_type(dtype: str | None) -> Any:
    """The pyarrow type of a dtype; ``None`` (let the sink infer) for no dtype and ``json``."""
    if dtype == "str":
        return pa.string()
    if dtype == "int":
        return pa.int64()
    if dtype == "float":
        return pa.float64()
    if dtype == "bool":
        return pa.bool_()
    return None


def cast_value(value: Any, dtype: str | None, *, column: str, row: int | None) -> Any:
    """Convert ``value`` to ``dtype``.

    Text is parsed as in the module table. Other values: ``None`` stays ``None``; ``str``
    formats with ``str()``; ``int`` takes ints, bools and integral floats; ``float`` takes ints,
    floats and bools; ``bool`` takes bools and the ints 0/1; ``json`` keeps any non-text value.

    Raises:
      NonRetryableGenerationError: the value cannot be converted; the message names the
        column, the row, the value and the dtype.
    """
    if dtype is None or value is None:
        return value
    try:
        if isinstance(value, str):
            return _cast_text(value, dtype)
        return _cast_object(value, dtype)
    except (ValueError, TypeError, OverflowError) as exc:
        shown = repr(value)
        if len(shown) > _SHOWN_CHARS:
            shown = shown[: _SHOWN_CHARS - 3] + "..."
        in_row = f" in row {row}" if row is not None else ""
        raise NonRetryableGenerationError(
            f"column {column!r}: cannot cast {shown}{in_row} to dtype {dtype!r} ({exc}); "
            f"change the template/function or the dtype.",
            column=column,
            row=row,
        ) from exc


def _cast_text(text: str, dtype: str) -> Any:
    if dtype == "str":
        return text
    if dtype == "int":
        return _text_to_int(text)
    if dtype == "float":
        return float(text.strip())
    if dtype == "bool":
        return _text_to_bool(text)
    if dtype == "json":
        return json.loads(text)
    raise ValueError(f"unknown dtype {dtype!r}")


def _text_to_int(text: str) -> int:
    stripped = text.strip()
    try:
        return int(stripped)
    except ValueError:
        return _float_to_int(float(stripped))


def _float_to_int(number: float) -> int:
    if not number.is_integer():
        raise ValueError(f"{number!r} is not a whole number")
    return int(number)


def _text_to_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in _TRUE_TEXTS:
        return True
    if lowered in _FALSE_TEXTS:
        return False
    raise ValueError("expected true/false, yes/no or 1/0")


def _cast_object(value: object, dtype: str) -> Any:
    if dtype == "str":
        return str(value)
    if dtype == "json":
        return value
    if dtype == "int" and isinstance(value, int):  # bool is an int: True -> 1
        return int(value)
    if dtype == "int" and isinstance(value, float):
        return _float_to_int(value)
    if dtype == "float" and isinstance(value, int | float):
        return float(value)
    if dtype == "bool" and isinstance(value, bool):
        return value
    if dtype == "bool" and isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise TypeError(f"a {type(value).__name__} does not convert to {dtype}")


@final
class ExpressionGenerator(ColumnGenerator):
    """Renders ``config.expr`` for each row and casts it to ``config.dtype``.

    A cell generator that runs inline on the event loop (rendering is cheap and never blocks).
    The template is compiled when the generator is built, so a syntax error is a
    :class:`~trio_designer.ConfigError` before the run starts.
    """

    strategy: ClassVar[Literal["cell", "full_column"]] = "cell"
    inline: ClassVar[bool] = True

    def __init__(self, config: ExpressionColumn) -> None:
        self.name = config.name
        self._expr = config.expr
        self._dtype = config.dtype
        check_template(self._expr, column=self.name, field="expr")

    def generate(self, ctx: CellContext) -> Any:
        """Render the expression with ``ctx.row`` and cast the text.

        Raises:
          NonRetryableGenerationError: rendering or casting failed.
        """
        text = render(self._expr, ctx.row, column=self.name, field="expr", row_index=ctx.row_index)
        return cast_value(text, self._dtype, column=self.name, row=ctx.row_index)

    def arrow_type(self) -> Any:
        return dtype_arrow_type(self._dtype)
