"""Field validators that name the field, and a way to collect every failure.

attrs stops at the first validator that raises, and an exception raised inside a constructor
loses the field it was about (cattrs only knows *which object* failed). Both are bad for a
config loader that must list every problem with its path. So every validator of the config
classes reports through :func:`report`:

* outside the converter (``RunConfig(row_group_size=0)`` in Python code) it raises
  :class:`InvalidFieldError` at once, a :class:`~trio_designer.ConfigError` (hence also a
  ``ValueError``) whose message reads like attrs' own: ``'row_group_size' must be > 0: 0``;
* inside :func:`collecting_problems` (the converter's structure hooks) it records
  ``(field, message)`` and lets construction continue, so the hook can report *all* failures of
  the object at once, each under its own path (``run.row_group_size: ...``).

The collector lives in a :class:`contextvars.ContextVar`, so concurrent tasks and threads that
build configs never see each other's problems.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import attrs
from jinja2.defaults import DEFAULT_NAMESPACE

from .._core._names import MAX_NAME_LENGTH
from .._exceptions import ConfigError

Validator = Callable[[Any, "attrs.Attribute[Any]", Any], None]

IDENTIFIER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


#: Words that cannot be used as column names because Jinja reads them as syntax or constants,
#: so a template could never refer to such a column.
JINJA_RESERVED = frozenset(
    {"and", "or", "not", "in", "is", "if", "else", "true", "false", "none", "True", "False", "None"}
)

#: Jinja's default globals (``range``, ``dict``, ``namespace``...). A column with such a name
#: would be invisible to dependency analysis (``jinja2.meta`` does not report globals), and a
#: template rendered before the column exists would silently get the global instead.
JINJA_GLOBALS = frozenset(DEFAULT_NAMESPACE)


class InvalidFieldError(ConfigError):
    """One field of a config object violates an invariant.

    Attributes:
      field: the name of the offending field.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


_collector: ContextVar[list[tuple[str, str]] | None] = ContextVar(
    "trio_designer_config_problems", default=None
)


@contextmanager
def collecting_problems() -> Iterator[list[tuple[str, str]]]:
    """Record validator failures as ``(field, message)`` instead of raising them.

    Objects constructed inside the block may be invalid; the caller must discard them when the
    yielded list is not empty. Blocks nest: an inner block records only its own problems.
    """
    problems: list[tuple[str, str]] = []
    token = _collector.set(problems)
    try:
        yield problems
    finally:
        _collector.reset(token)


def report(field: str, message: str) -> None:
    """Report that ``field`` is invalid (raise, or record inside :func:`collecting_problems`).

    Raises:
      InvalidFieldError: when no collector is active.
    """
    problems = _collector.get()
    if problems is None:
        raise InvalidFieldError(field, message)
    problems.append((field, message))


def short_repr(value: object, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters so messages stay readable."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- validators --------------------------------------------------------------------------------
#
# Every validator below raises ``ValueError`` with an attrs-style message, like attrs' own
# ``gt``/``in_``/``min_len``. Fields never use them bare: ``checked(...)`` runs a field's
# validators in order, stops at the first failure and hands it to :func:`report`.


def checked(*validators: Validator) -> Validator:
    """Run ``validators`` in order; report the first failure through :func:`report`.

    Works with attrs' ready-made validators (``attrs.validators.gt(0)``) and the ones below,
    keeping their message (``'x' must be > 0: 0``) and adding the field it was about.
    """

    def check(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        for validator in validators:
            try:
                validator(instance, attribute, value)
            except (ValueError, TypeError) as exc:
                message = exc.args[0] if exc.args and isinstance(exc.args[0], str) else str(exc)
                report(attribute.name, message)
                return

    return check


def optional(validator: Validator) -> Validator:
    """Accept ``None``; otherwise run ``validator``."""

    def check(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is not None:
            validator(instance, attribute, value)

    return check


def identifier(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """A name that Jinja templates can refer to: ``^[A-Za-z_][A-Za-z0-9_]*$``, not a keyword."""
    name = attribute.name
    if isinstance(value, str) and len(value) > MAX_NAME_LENGTH:
        raise ValueError(
            f"'{name}' is {len(value):,} characters long: {short_repr(value)}; a name may have "
            f"at most {MAX_NAME_LENGTH} characters, shorten it"
        )
    if not isinstance(value, str) or not IDENTIFIER_RE.fullmatch(value):
        raise ValueError(
            f"'{name}' must be an identifier (letters, digits and underscores, not starting "
            f"with a digit): {short_repr(value)}"
        )
    if value in JINJA_RESERVED:
        raise ValueError(f"'{name}' must not be a Jinja keyword: {value!r}")
    if value in JINJA_GLOBALS:
        raise ValueError(f"'{name}' must not shadow the Jinja global {value!r}; rename it")


def non_blank(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """A string with at least one non-space character."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"'{attribute.name}' must be a non-empty string: {short_repr(value)}")


def is_bool(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """``True`` or ``False`` (not merely truthy)."""
    if not isinstance(value, bool):
        raise ValueError(f"'{attribute.name}' must be true or false: {short_repr(value)}")


def finite(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """A real, finite number (``bool`` is not a number here)."""
    if not is_number(value) or not math.isfinite(value):
        raise ValueError(f"'{attribute.name}' must be a finite number: {short_repr(value)}")


def is_int(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """An ``int`` that is not a ``bool``."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"'{attribute.name}' must be an integer: {short_repr(value)}")


def is_tuple_of(check_item: Callable[[Any], bool], what: str) -> Validator:
    """A tuple whose items all pass ``check_item``; ``what`` describes one item (``"a string"``)."""

    def check(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        name = attribute.name
        if not isinstance(value, tuple):
            raise ValueError(f"'{name}' must be a list: {short_repr(value)}")
        for index, item in enumerate(value):
            if not check_item(item):
                raise ValueError(f"'{name}[{index}]' must be {what}: {short_repr(item)}")

    return check


def non_empty(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """A collection with at least one item."""
    if not value:
        raise ValueError(f"'{attribute.name}' must not be empty")


def is_json_object(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """A ``dict`` with string keys (a JSON object)."""
    name = attribute.name
    if not isinstance(value, dict):
        raise ValueError(f"'{name}' must be a mapping: {short_repr(value)}")
    if not all(isinstance(key, str) for key in value):
        raise ValueError(f"'{name}' must have string keys: {short_repr(value)}")


def is_any(value: Any) -> bool:
    """Accept any item (for :func:`is_tuple_of`)."""
    return True


def is_str(value: Any) -> bool:
    """A ``str`` item (for :func:`is_tuple_of`)."""
    return isinstance(value, str)


def is_number(value: Any) -> bool:
    """An ``int`` or ``float`` that is not a ``bool``."""
    return isinstance(value, int | float) and not isinstance(value, bool)


# -- converters (normalise before validation) --------------------------------------------------


def to_tuple(value: Iterable[Any]) -> tuple[Any, ...]:
    """Turn a list (or any iterable but a string or mapping) into a tuple.

    Strings and mappings are returned unchanged so that the field's validator can reject them
    with a clear message, instead of silently turning ``"topic"`` into ``('t', 'o', ...)``.
    """
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
        return value  # type: ignore[return-value]  # rejected by the field's validator
    return tuple(value)


def to_optional_tuple(value: Iterable[Any] | None) -> tuple[Any, ...] | None:
    """:func:`to_tuple`, keeping ``None``."""
    return None if value is None else to_tuple(value)


def str_keys(value: Any) -> Any:
    """Copy a mapping, turning integer keys into strings (YAML reads ``5: great`` as int 5).

    Anything else is returned as-is, for the field's validator to reject.
    """
    if not isinstance(value, Mapping):
        return value
    return {_key(key): item for key, item in value.items()}


def _key(key: Any) -> Any:
    return str(key) if isinstance(key, int) and not isinstance(key, bool) else key


def instance_of(cls: type) -> Validator:
    """An instance of ``cls`` (for nested config objects)."""

    def check(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if not isinstance(value, cls):
            raise ValueError(f"'{attribute.name}' must be a {cls.__name__}: {short_repr(value)}")

    return check
