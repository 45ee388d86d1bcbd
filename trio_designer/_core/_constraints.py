"""Sampler constraints: ``age >= 18``, ``end_date > start_date``, parsed and judged (pure).

A constraint is one comparison ``<column> <op> <right>``: the left side is the constrained
sampler column itself, ``op`` one of ``<  <=  >  >=  ==  !=``, and the right side a number,
a quoted string (an ISO date or datetime compares as one against date and time values), or
the name of another column of the row. The sampler redraws a cell until every constraint of
its column holds (seeded rejection, :mod:`trio_designer.generators._constrained`).

:func:`never_holds` finds the constraints no value can satisfy from what a sampler's config
says about its values (an interval or a finite set), so they fail at validation instead of
after thousands of rejected draws.
"""

from __future__ import annotations

import datetime as dt
import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

import attrs

__all__ = ["Constraint", "Support", "never_holds", "parse_constraint"]

_OPS: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    ">": operator.gt,
}
_PATTERN: Final = re.compile(
    r"^\s*(?P<left>[A-Za-z_]\w*)\s*(?P<op><=|>=|==|!=|<|>)\s*(?P<right>.+?)\s*$", re.DOTALL
)
_NAME: Final = re.compile(r"^[A-Za-z_]\w*$")
_NUMBER: Final = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


@attrs.frozen
class Constraint:
    """One parsed constraint.

    Attributes:
      text: as written.
      column: the left side (the constrained column).
      op: the comparison.
      value: the constant right side (a number or a string), when ``other`` is ``None``.
      other: the column named on the right side, if any.
    """

    text: str
    column: str
    op: str
    value: Any = None
    other: str | None = None

    def holds(self, left: Any, row: Mapping[str, Any]) -> bool:
        """Whether ``left`` (a drawn value) satisfies the constraint in ``row``.

        Raises:
          TypeError: the two sides cannot be compared (a number against a string, say).
          KeyError: the row lacks the right-hand column.
        """
        right = row[self.other] if self.other is not None else self.value
        if left is None or right is None:
            return False
        return _OPS[self.op](left, _comparable(right, left))


def parse_constraint(text: str) -> Constraint:
    """Parse ``"<column> <op> <right>"``.

    Raises:
      ValueError: not of that shape (the message shows the shape).
    """
    match = _PATTERN.match(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(
            f"constraint {text!r} is not '<column> <op> <value or column>', e.g. 'age >= 18' "
            "or 'end_date > start_date' (op: <, <=, >, >=, ==, !=)"
        )
    left, op, right = match["left"], match["op"], match["right"]
    if _NUMBER.match(right):
        number = float(right)
        value: Any = int(number) if number.is_integer() and "." not in right else number
        return Constraint(text, left, op, value=value)
    if len(right) >= 2 and right[0] == right[-1] and right[0] in "'\"":
        return Constraint(text, left, op, value=right[1:-1])
    if right in ("true", "false", "True", "False"):
        return Constraint(text, left, op, value=right.lower() == "true")
    if _NAME.match(right):
        return Constraint(text, left, op, other=right)
    raise ValueError(
        f"constraint {text!r}: the right side {right!r} is neither a number, a quoted string "
        "nor a column name"
    )


def _comparable(right: Any, left: Any) -> Any:
    """``right`` turned into ``left``'s kind where that is meant: an ISO string against a
    date or datetime."""
    if isinstance(right, str) and isinstance(left, dt.date):
        parsed = dt.datetime.fromisoformat(right)
        if isinstance(left, dt.datetime):
            if left.tzinfo is None and parsed.tzinfo is not None:
                parsed = parsed.astimezone(dt.UTC).replace(tzinfo=None)
            return parsed
        return parsed.date()
    return right


@attrs.frozen
class Support:
    """What a sampler's config says its values can be: an interval or a finite set.

    Attributes:
      low, high: bounds of the interval (``-inf``/``inf`` when open-ended); ``high``
        excluded when ``high_open``.
      values: the finite set of possible values, when known (then the interval is unused).
    """

    low: Any = -math.inf
    high: Any = math.inf
    high_open: bool = False
    values: tuple[Any, ...] | None = None


def never_holds(constraint: Constraint, support: Support) -> bool:
    """Whether no value in ``support`` satisfies a constant constraint (column constraints
    and incomparable constants: ``False``, left to run time)."""
    if constraint.other is not None:
        return False
    try:
        if support.values is not None:
            return not any(constraint.holds(v, {}) for v in support.values)
        return not _interval_meets(constraint, support)
    except (TypeError, ValueError):
        return False


def _interval_meets(constraint: Constraint, support: Support) -> bool:
    low, high = support.low, support.high
    value = _comparable(constraint.value, low) if not _is_inf(low) else constraint.value
    if not _is_inf(high):
        value = _comparable(constraint.value, high)
    if constraint.op in (">", ">="):
        if _is_inf(high):
            return True
        return bool(high > value) if (constraint.op == ">" or support.high_open) else high >= value
    if constraint.op in ("<", "<="):
        if _is_inf(low):
            return True
        return bool(low < value) if constraint.op == "<" else bool(low <= value)
    if constraint.op == "==":
        above = _is_inf(low) or low <= value
        below = _is_inf(high) or (value < high if support.high_open else value <= high)
        return bool(above and below)
    return not (not _is_inf(low) and low == high == value)


def _is_inf(value: Any) -> bool:
    return isinstance(value, float) and math.isinf(value)


def referenced_columns(constraints: Iterable[str]) -> list[str]:
    """The other columns the constraints name (unparsable ones are skipped)."""
    names: list[str] = []
    for text in constraints:
        try:
            other = parse_constraint(text).other
        except ValueError:
            continue
        if other is not None and other not in names:
            names.append(other)
    return names
