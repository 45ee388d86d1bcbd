"""The template sandbox: Jinja's, plus a bound on what one render may build.

Jinja's :class:`~jinja2.sandbox.SandboxedEnvironment` keeps templates away from Python's
internals, but not from exhausting the machine: ``{{ 'a' * 10**9 }}`` allocates a gigabyte,
``{{ 9 ** 9 ** 9 }}`` computes for hours, two nested loops over ``range(100000)`` run ten
billion times. A config is data a user may have been handed, so every render here runs under a
:class:`RenderBudget`:

=============================  =======================  ==========================================
limit                          value                    checked at
=============================  =======================  ==========================================
:data:`MAX_VALUE_CHARS`        4,000,000 characters     each string or list a render builds: ``*``,
                                                        ``+``, ``~``, ``%``, padding methods and
                                                        filters (``center``, ``indent``,
                                                        ``format``...), ``join``, ``replace``
:data:`MAX_OUTPUT_CHARS`       4,000,000 characters     the rendered text, while it is produced
:data:`MAX_WORK_CHARS`         40,000,000 characters    all strings and lists built in one render
:data:`MAX_LOOP_STEPS`         1,000,000 iterations     all ``{% for %}`` loops of one render, and
                                                        every ``range()``
:data:`MAX_POWER_BITS`         100,000 bits             the result of ``**``
=============================  =======================  ==========================================

Each check runs *before* the work it bounds (a repetition's size is ``len * n``, known up
front), so a refused render costs microseconds. Exceeding a limit raises
:class:`RenderLimitExceeded` (a :class:`~jinja2.sandbox.SecurityError`), which the renderer
reports as a non-retryable failure of that cell, naming the limit.

Loops and ``~`` are bounded by rewriting the parsed template: every ``for`` iterates through
:meth:`_Bounds.steps` and every concatenation goes through :meth:`_Bounds.concat` (reached as
an extension attribute, so no template-visible name is added).
"""

from __future__ import annotations

import contextvars
import math
import re
from collections.abc import Callable, Iterable, Iterator, Sized
from typing import Any, Final

import attrs
import jinja2
from jinja2 import nodes
from jinja2.exceptions import SecurityError
from jinja2.ext import Extension
from jinja2.sandbox import SandboxedEnvironment
from jinja2.visitor import NodeTransformer

from .._core._sandboxlimits import (
    MAX_LOOP_STEPS,
    MAX_OUTPUT_CHARS,
    MAX_POWER_BITS,
    MAX_VALUE_CHARS,
    MAX_WORK_CHARS,
)

__all__ = [
    "MAX_LOOP_STEPS",
    "MAX_OUTPUT_CHARS",
    "MAX_POWER_BITS",
    "MAX_VALUE_CHARS",
    "MAX_WORK_CHARS",
    "BoundedSandbox",
    "RenderBudget",
    "RenderLimitExceeded",
    "rendering",
]


_WIDTH = re.compile(r"\d+")


class RenderLimitExceeded(SecurityError):
    """One render went over a limit of the sandbox; ``str(exc)`` names it."""


@attrs.define
class RenderBudget:
    """What one render has used so far (see the module docstring for the limits)."""

    work: int = 0
    steps: int = 0

    def build(self, size: int, what: str) -> None:
        """Account for building a value of ``size`` characters (or items), before building it.

        Raises:
          RenderLimitExceeded: the value, or the render's total, is over its limit.
        """
        if size > MAX_VALUE_CHARS:
            raise RenderLimitExceeded(
                f"{what} would build a value of {size:,} characters or items, more than the "
                f"limit of {MAX_VALUE_CHARS:,} per value"
            )
        self.work += size
        if self.work > MAX_WORK_CHARS:
            raise RenderLimitExceeded(
                f"the template builds more than {MAX_WORK_CHARS:,} characters or items in one "
                "render"
            )

    def step(self, count: int = 1) -> None:
        """Account for ``count`` loop iterations (or ``range`` items)."""
        self.steps += count
        if self.steps > MAX_LOOP_STEPS:
            raise RenderLimitExceeded(
                f"the template runs more than {MAX_LOOP_STEPS:,} loop iterations in one render"
            )


_budget: contextvars.ContextVar[RenderBudget | None] = contextvars.ContextVar(
    "trio_designer_render_budget", default=None
)


def _current() -> RenderBudget:
    budget = _budget.get()
    if budget is None:  # a render outside rendering(): give it a budget of its own
        budget = RenderBudget()
        _budget.set(budget)
    return budget


class rendering:
    """A fresh :class:`RenderBudget` for the renders inside the block. A loop of renders
    (:func:`~._templates.render_column`) may share one, resetting its counts to zero before
    each render: each render is then held to the same limits, without a context variable set
    per render."""

    def __enter__(self) -> RenderBudget:
        budget = RenderBudget()
        self._token = _budget.set(budget)
        return budget

    def __exit__(self, *exc: object) -> None:
        _budget.reset(self._token)


def _size(value: Any) -> int | None:
    return len(value) if isinstance(value, str | bytes | list | tuple) else None


def _check_power(left: Any, right: Any) -> None:
    if isinstance(left, int) and isinstance(right, int) and abs(left) > 1 and right > 0:
        bits = right * math.log2(abs(left))
        if bits > MAX_POWER_BITS:
            raise RenderLimitExceeded(
                f"{left} ** {right} would be a number of about {int(bits):,} bits, more than "
                f"the limit of {MAX_POWER_BITS:,}"
            )


_NESTED_FIELD = re.compile(r"\{[^{}]*\{|%[-+ #0]*\*|%[-+ #0]*\d*\.\*")


def _check_widths(fmt: str, what: str, args: Iterable[Any] = ()) -> None:
    """Refuse a format string whose field widths or precisions exceed the limit: written in
    the string, or taken from the arguments (``'{:>{}}'``, ``'%*d'``)."""
    for digits in _WIDTH.findall(fmt):
        if len(digits) > 7 or int(digits) > MAX_VALUE_CHARS:
            raise RenderLimitExceeded(
                f"{what} asks for a field of {digits} characters, more than the limit of "
                f"{MAX_VALUE_CHARS:,} per value"
            )
    if _NESTED_FIELD.search(fmt):
        for arg in args:
            if isinstance(arg, int) and abs(arg) > MAX_VALUE_CHARS:
                raise RenderLimitExceeded(
                    f"{what} takes a field width of {arg} characters from its arguments, more "
                    f"than the limit of {MAX_VALUE_CHARS:,} per value"
                )


class _Bounds(Extension):
    """The template-invisible helpers the rewritten templates call (see the module docstring)."""

    def steps(self, iterable: Any) -> Iterator[Any]:
        budget = _current()
        for item in iterable:
            budget.step()
            yield item

    def concat(self, parts: list[Any]) -> str:
        texts = [str(part) for part in parts]
        _current().build(sum(map(len, texts)), "'~'")
        return "".join(texts)


_BOUNDS_ID: Final = f"{_Bounds.__module__}.{_Bounds.__qualname__}"


class _Rewrite(NodeTransformer):
    """Route every loop and every ``~`` of a parsed template through :class:`_Bounds`."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = _bounds_call("steps", [node.iter], node.lineno)  # type: ignore[list-item]
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return _bounds_call("concat", [nodes.List(node.nodes, lineno=node.lineno)], node.lineno)


def _bounds_call(method: str, args: list[nodes.Expr], lineno: int) -> nodes.Call:
    return nodes.Call(
        nodes.ExtensionAttribute(_BOUNDS_ID, method, lineno=lineno),
        args,
        [],
        None,
        None,
        lineno=lineno,
    )


# -- bounded globals and filters ---------------------------------------------------------------


def _bounded_range(*args: int) -> range:
    values = range(*args)
    _current().step(len(values))
    return values


def _bounded_lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> Any:
    if n * max > 10_000:
        raise RenderLimitExceeded(f"lipsum(n={n}, max={max}) would build too much text")
    return jinja2.utils.generate_lorem_ipsum(n=n, html=html, min=min, max=max)


def _padding(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
    """A filter that pads to a width: the width is checked first."""

    def bounded(value: Any, *args: Any, **kwargs: Any) -> Any:
        width = kwargs.get("width", args[0] if args else 0)
        if isinstance(width, int):
            lines = str(value).count("\n") + 1 if name == "indent" else 1
            _current().build(len(str(value)) + max(width, 0) * lines, f"the filter {name!r}")
        return original(value, *args, **kwargs)

    return bounded


def _bounded_format(value: Any, *args: Any, **kwargs: Any) -> Any:
    _check_widths(str(value), "the filter 'format'", [*args, *kwargs.values()])
    return jinja2.filters.do_format(value, *args, **kwargs)


def _bounded_join(original: Callable[..., Any]) -> Callable[..., Any]:
    @jinja2.pass_eval_context
    def join(context: Any, value: Iterable[Any], d: str = "", attribute: Any = None) -> Any:
        items = list(value) if not isinstance(value, list | tuple) else value
        _current().build(
            sum(len(str(item)) for item in items) + len(d) * len(items), "the filter 'join'"
        )
        return original(context, items, d, attribute)

    return join


def _bounded_replace(original: Callable[..., Any]) -> Callable[..., Any]:
    @jinja2.pass_eval_context
    def replace(eval_ctx: Any, s: Any, old: str, new: str, count: int | None = None) -> Any:
        _check_replace(str(s), str(old), str(new), count, "the filter 'replace'")
        return original(eval_ctx, s, old, new, count)

    return replace


def _check_replace(text: str, old: str, new: str, count: int | None, what: str) -> None:
    hits = text.count(old) if old else len(text) + 1
    if count is not None and count >= 0:
        hits = min(hits, count)
    _current().build(len(text) + hits * max(0, len(new) - len(old)), what)


def _bounded_fill(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
    """``batch`` / ``slice``: their count decides how much they build or loop."""

    def bounded(value: Any, count: int, *args: Any, **kwargs: Any) -> Any:
        if isinstance(count, int):
            _current().build(max(count, 0), f"the filter {name!r}")
        return original(value, count, *args, **kwargs)

    return bounded


# -- the environment ---------------------------------------------------------------------------

_STR_PADDING: Final = frozenset({"ljust", "rjust", "center", "zfill", "expandtabs"})


class BoundedSandbox(SandboxedEnvironment):
    """Jinja's sandbox with the limits of the module docstring.

    Filters and tests keep Jinja's names (a few are replaced by bounded versions); the
    environment adds none, so :data:`trio_designer.config._templates.KNOWN_FILTERS` stays true.
    """

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, **options: Any) -> None:
        super().__init__(extensions=[_Bounds], **options)
        self.globals["range"] = _bounded_range
        self.globals["lipsum"] = _bounded_lipsum
        for name in ("center", "indent"):
            self.filters[name] = _padding(name, self.filters[name])
        self.filters["format"] = _bounded_format
        self.filters["join"] = _bounded_join(self.filters["join"])
        self.filters["replace"] = _bounded_replace(self.filters["replace"])
        for name in ("batch", "slice"):
            self.filters[name] = _bounded_fill(name, self.filters[name])

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        rewritten: nodes.Template = _Rewrite().visit(tree)
        return rewritten

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        budget = _current()
        if operator == "*":
            for sequence, times in ((left, right), (right, left)):
                length = _size(sequence)
                if length is not None and isinstance(times, int):
                    budget.build(length * max(times, 0), "'*'")
        elif operator == "+":
            a, b = _size(left), _size(right)
            if a is not None and b is not None:
                budget.build(a + b, "'+'")
        elif operator == "**":
            _check_power(left, right)
        elif operator == "%" and isinstance(left, str):
            values = right if isinstance(right, tuple) else (right,)
            _check_widths(left, "'%' formatting", values)
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        method = getattr(__obj, "__wrapped__", __obj)  # the sandbox wraps str.format
        owner = getattr(method, "__self__", None)
        name = getattr(method, "__name__", "")
        if isinstance(owner, str):
            _check_str_method(owner, name, args, kwargs)
        result = super().call(__context, __obj, *args, **kwargs)
        if isinstance(result, Sized) and not isinstance(result, dict | range):
            size = _size(result)
            if size is not None and size > MAX_VALUE_CHARS:
                raise RenderLimitExceeded(
                    f"a call built a value of {size:,} characters or items, more than the "
                    f"limit of {MAX_VALUE_CHARS:,}"
                )
        return result


def _check_str_method(text: str, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Check the string methods whose result can be far larger than their input."""
    what = f"str.{name}()"
    budget = _current()
    if name in _STR_PADDING:
        width = args[0] if args else kwargs.get("width", kwargs.get("tabsize", 8))
        if isinstance(width, int):
            factor = text.count("\t") + 1 if name == "expandtabs" else 1
            budget.build(len(text) + max(width, 0) * factor, what)
    elif name in ("format", "format_map"):
        values = [*args, *kwargs.values()]
        if name == "format_map" and args and isinstance(args[0], dict):
            values = list(args[0].values())
        _check_widths(text, what, values)
    elif name == "replace" and len(args) >= 2:
        count = args[2] if len(args) > 2 else kwargs.get("count")
        _check_replace(text, str(args[0]), str(args[1]), count, what)
    elif name == "join" and args:
        items = args[0]
        if isinstance(items, list | tuple):
            budget.build(sum(len(str(i)) for i in items) + len(text) * len(items), what)
