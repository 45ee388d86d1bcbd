"""Jinja templates: one sandboxed environment, compiled once, rendered against a row.

Every template in a pipeline (an expression's ``expr``, an LLM column's ``prompt`` and
``system_prompt``, any column's ``skip_when``) is rendered here, against the row's values so far::

    >>> render("{{ topic | upper }}!", {"topic": "jazz"})
    'JAZZ!'
    >>> evaluate_condition("{{ n > 3 }}", {"n": 2})
    False

Design notes:

* **One environment.** A module-level :class:`~._sandbox.BoundedSandbox` (Jinja's sandbox plus
  limits on what one render may build: ``'a' * 10**9`` is refused before it allocates) with
  :class:`~jinja2.StrictUndefined` and no autoescaping. The sandbox keeps templates from reaching
  Python internals (``{{ ''.__class__.__mro__ }}`` raises ``SecurityError``); ``StrictUndefined``
  turns a misspelt or missing name into an error instead of an empty string, which would
  otherwise flow silently into a prompt.
* **Compiled once.** :func:`compile_template` is an ``lru_cache`` keyed by the template source, so
  a template used for a million rows is parsed once. ``lru_cache`` and Jinja templates are both
  safe to use from worker threads.
* **One error type at render time.** Whatever goes wrong while rendering (an undefined name, a
  sandbox violation, ``1 / 0``, a ``TypeError`` from a filter) becomes a
  :class:`~trio_designer.NonRetryableGenerationError` that names the column, the field and the
  row: re-rendering the same template with the same row fails the same way, so retrying is
  pointless. Syntax errors, unknown filters and tests are configuration errors:
  :func:`check_template` reports them as :class:`~trio_designer.ConfigError` before the run
  starts, without compiling (``validate`` stays fast); the run compiles every template before
  its first request (:func:`precompile`).

Row values may be anything Jinja can handle: ``str``, ``int``, ``float``, ``bool``, ``None``,
``dict``, ``list``, ``datetime`` ... They are passed to the template as-is (no JSON decoding).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from typing import Any

import jinja2
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context, new_context

from trio_designer._exceptions import ConfigError, NonRetryableGenerationError
from trio_designer.config._templates import template_facts

from ._sandbox import MAX_OUTPUT_CHARS, BoundedSandbox, RenderLimitExceeded, rendering

__all__ = [
    "FALSY_RENDERINGS",
    "check_template",
    "compile_template",
    "environment",
    "evaluate_condition",
    "precompile",
    "render",
    "render_column",
]

_ENVIRONMENT = BoundedSandbox(undefined=jinja2.StrictUndefined, autoescape=False)

#: Rendered texts (stripped, lower-cased) that :func:`evaluate_condition` counts as false.
FALSY_RENDERINGS: frozenset[str] = frozenset({"", "false", "0", "none", "no"})

_UNDEFINED_NAME = re.compile(r"^'(?P<name>[^']+)' is undefined$")


def environment() -> BoundedSandbox:
    """The shared sandboxed environment (for parsing, e.g. to find a template's variables).

    Do not mutate it: every template in the process is compiled by it.
    """
    return _ENVIRONMENT


@functools.lru_cache(maxsize=4096)
def compile_template(source: str) -> jinja2.Template:
    """Compile ``source`` with the shared environment, once per distinct source.

    Raises:
      jinja2.TemplateSyntaxError: ``source`` is not a valid template (see :func:`check_template`
        for a configuration-friendly version).
    """
    return _ENVIRONMENT.from_string(source)


@functools.lru_cache(maxsize=4096)
def _compiled_with_globals(source: str) -> tuple[jinja2.Template, dict[str, Any]]:
    template = compile_template(source)
    return template, dict(template.globals)


def check_template(source: str, *, column: str, field: str) -> None:
    """Check ``source`` before the run starts: syntax, filters, tests, nesting (no compiling).

    Args:
      source: the template text.
      column: the column the template belongs to (for the message).
      field: the config field holding the template (``"expr"``, ``"prompt"``, ...).

    Raises:
      ConfigError: the template cannot run; the message names column, field and problem
        (see :func:`~trio_designer.config._templates.template_facts`).
    """
    problems = template_facts(source).problems
    if problems:
        raise ConfigError([f"column {column!r}: {field} {problem}" for problem in problems])


def precompile(source: str, *, column: str, field: str) -> None:
    """Compile ``source`` now (the run does this once per template before the first request),
    so that whatever only Jinja's compiler would refuse is a config error too.

    Raises:
      ConfigError: the template does not compile.
    """
    try:
        compile_template(source)
    except (jinja2.TemplateSyntaxError, RecursionError, MemoryError) as exc:
        reason = exc.message if isinstance(exc, jinja2.TemplateSyntaxError) else "nests too deeply"
        raise ConfigError(f"column {column!r}: {field} does not compile: {reason}") from exc


def render(
    template: str,
    row: Mapping[str, Any],
    *,
    column: str | None = None,
    field: str = "template",
    row_index: int | None = None,
) -> str:
    """Render ``template`` with the values of ``row``.

    Args:
      template: the Jinja source (compiled once and cached).
      row: the values the template may reference, by column name.
      column: the column being generated, for error messages.
      field: the config field holding the template, for error messages.
      row_index: the global row index, for error messages.

    Returns:
      The rendered text.

    Raises:
      NonRetryableGenerationError: the template has a syntax error, references a name that
        ``row`` does not define, breaks the sandbox, or raises while rendering (``1 / 0``, a
        filter's ``TypeError``, ...). The message names the column, the field, the row and,
        for undefined names, the name.
    """
    try:
        compiled, globals_ = _compiled_with_globals(template)
        # What Template.render does, minus its per-call copies of the environment's globals
        # out of a ChainMap (most of the cost of rendering a short template): the globals are
        # flattened once per template and merged under the row (the row's values win, as in
        # render()); the context shares that one dict.
        context = new_context(
            compiled.environment, compiled.name, compiled.blocks, {**globals_, **row}, True
        )
        with rendering():
            return _bounded_output(compiled.root_render_func(context))
    except Exception as exc:
        raise _render_error(exc, column=column, field=field, row_index=row_index) from exc


def render_column(template: str, rows: Sequence[Mapping[str, Any]]) -> list[str | None]:
    """:func:`render` of ``template`` for each of ``rows``, in one loop: the rendered texts,
    ``None`` for a row whose render raised (its caller renders that row again with
    :func:`render`, which raises the error naming the column, field and row).

    For the batched replay of cached cells (``LLMGenerator.replay_cached``). Each row's text is
    :func:`render`'s: the same compiled template, the same globals under the row's values, a
    fresh render budget (the same limits, counted from zero). What a row does not pay again:
    the compiled template's look-up, the budget's context variable (set once, its counts
    reset), and, for a template without blocks, Jinja's ``Context``: one is reused, given the
    row's values and empty template variables (``{% set %}``) for each row, and dropped after
    a row whose render raised (a render stopped half-way may leave it changed).
    """
    compiled, globals_ = _compiled_with_globals(template)
    environment, name, blocks = compiled.environment, compiled.name, compiled.blocks
    root = compiled.root_render_func
    texts: list[str | None] = []
    context: Context | None = None
    with rendering() as budget:
        for row in rows:
            budget.work = budget.steps = 0
            try:
                parent = {**globals_, **row}
                if context is None or blocks:
                    context = new_context(environment, name, blocks, parent, True)
                else:
                    context.parent = parent
                    context.vars = {}
                    context.exported_vars = set()
                texts.append(_bounded_output(root(context)))
            except Exception:
                context = None
                texts.append(None)
    return texts


def _bounded_output(chunks: Any) -> str:
    """Join the rendered chunks, stopping as soon as the text exceeds the output limit."""
    parts: list[str] = []
    total = 0
    for chunk in chunks:
        total += len(chunk)
        if total > MAX_OUTPUT_CHARS:
            raise RenderLimitExceeded(
                f"the rendered text exceeds the limit of {MAX_OUTPUT_CHARS:,} characters"
            )
        parts.append(chunk)
    return "".join(parts)


def evaluate_condition(
    template: str,
    row: Mapping[str, Any],
    *,
    column: str | None = None,
    field: str = "skip_when",
    row_index: int | None = None,
) -> bool:
    """Render ``template`` and interpret the text as a truth value.

    The rendering is true unless, stripped and lower-cased, it is one of
    :data:`FALSY_RENDERINGS` (``""``, ``"false"``, ``"0"``, ``"none"``, ``"no"``). So both
    ``"{{ n > 3 }}"`` and ``"{% if n > 3 %}yes{% endif %}"`` work as conditions.

    Raises:
      NonRetryableGenerationError: as for :func:`render`.
    """
    text = render(template, row, column=column, field=field, row_index=row_index)
    return text.strip().lower() not in FALSY_RENDERINGS


def _render_error(
    exc: Exception, *, column: str | None, field: str, row_index: int | None
) -> NonRetryableGenerationError:
    where = f"column {column!r}" if column is not None else "a template"
    in_row = f" in row {row_index}" if row_index is not None else ""
    if isinstance(exc, jinja2.UndefinedError):
        match = _UNDEFINED_NAME.match(str(exc.message))
        if match is not None:
            name = match.group("name")
            message = (
                f"{where}: {field} references {name!r}, which is undefined{in_row}; "
                f"reference only columns upstream of this one, or give a fallback with "
                f"'| default(...)'."
            )
        else:
            message = f"{where}: {field} failed to render{in_row}: {exc.message}; fix the template."
    elif isinstance(exc, jinja2.TemplateSyntaxError):
        message = (
            f"{where}: {field} has a Jinja syntax error on template line {exc.lineno}: "
            f"{exc.message}; fix the template."
        )
    elif isinstance(exc, RenderLimitExceeded):
        message = (
            f"{where}: {field} went over a limit of the template sandbox{in_row}: {exc}; "
            "templates may not build huge values (see docs/security.md)."
        )
    elif isinstance(exc, SecurityError):
        message = f"{where}: {field} was blocked by the template sandbox{in_row}: {exc}."
    else:
        message = (
            f"{where}: {field} failed to render{in_row}: {type(exc).__name__}: {exc}; "
            f"fix the template or the values it uses."
        )
    return NonRetryableGenerationError(message, column=column, row=row_index)
