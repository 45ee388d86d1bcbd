"""What a template reads and whether it can run: the static facts of one Jinja template.

Every template of a pipeline (``prompt``, ``system_prompt``, ``expr``, ``skip_when``) is
checked before any request, without rendering it::

    >>> facts = template_facts("{{ product.name | upper }} for {{ topic }}")
    >>> sorted(facts.variables), facts.paths, facts.problems
    (['product', 'topic'], (('product', 'name'), ('topic',)), ())
    >>> template_facts("{{ topic | uper }}").problems
    ("uses the filter 'uper', which does not exist; did you mean 'upper'?",)

The facts are the columns a template reads (the dependency edges), the attribute paths it
follows from them (``product.name``, checked against a structured column's schema), and every
problem found: a syntax error, an unknown filter or test, a tag that would load another
template (``extends``, ``include``, ``import``), nesting too deep to parse, and the few things
Jinja only reports when it compiles (a block defined twice, assigning to ``loop``).

Speed: ``validate`` reads every template of a 10,000-column config, so the common shapes (text
with ``{{ name }}``, ``{{ name.field }}``, ``{{ name | filter }}``) are read by a regular
expression; anything else goes through Jinja's parser (0.1 ms per template). Both are cached
per source text. Compiling (code generation) is left to the run, which needs it anyway.
"""

from __future__ import annotations

import contextlib
import functools
import re
from typing import Final

import attrs
import jinja2
import jinja2.meta
from jinja2 import nodes
from jinja2.filters import FILTERS
from jinja2.sandbox import SandboxedEnvironment
from jinja2.tests import TESTS

from .._core._sandboxlimits import MAX_LOOP_STEPS, MAX_POWER_BITS, MAX_VALUE_CHARS
from .._core._suggest import did_you_mean

__all__ = ["KNOWN_FILTERS", "KNOWN_TESTS", "TemplateFacts", "template_facts"]

#: The filters and tests templates may use: Jinja's built-in ones (the renderer's sandbox
#: replaces some with bounded versions under the same names, and adds none).
KNOWN_FILTERS: Final = frozenset(FILTERS)
KNOWN_TESTS: Final = frozenset(TESTS)

# Only used to parse: the same syntax as the renderer's environment.
_PARSER = SandboxedEnvironment()

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_SIMPLE = re.compile(
    rf"\{{\{{\s*(?P<path>{_NAME}(?:\.{_NAME})*)\s*(?P<filters>(?:\|\s*{_NAME}\s*)*)\}}\}}"
)
_FILTER_NAME = re.compile(_NAME)
#: Names that are Jinja constants or keywords, not variables: such templates take the parser.
_NOT_VARIABLES: Final = frozenset(
    {"true", "false", "none", "True", "False", "None", "and", "or", "not", "in", "is", "if"}
    | {"else", "loop", "self", "caller", "varargs", "kwargs"}
)
#: Nodes that bind names: a template with any of them needs Jinja's scoping rules.
_BINDING: Final = (
    nodes.For,
    nodes.Assign,
    nodes.AssignBlock,
    nodes.With,
    nodes.Macro,
    nodes.CallBlock,
    nodes.FilterBlock,
    nodes.Scope,
    nodes.Import,
    nodes.FromImport,
)
_LOADING: Final = (nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport)
#: Attributes of frames and code objects (besides dunder names) that Jinja's sandbox blocks.
_UNSAFE_NAMES: Final = frozenset(
    {"gi_frame", "gi_code", "cr_frame", "cr_code", "ag_code", "ag_frame", "func_globals"}
)
#: Nodes under which a macro calling itself may stop: only a call outside all of them recurses
#: on every call.
_CONDITIONAL: Final = (nodes.If, nodes.CondExpr, nodes.For, nodes.And, nodes.Or)


@attrs.frozen
class TemplateFacts:
    """What one template reads, and what is wrong with it.

    Attributes:
      variables: the names it reads that it does not define itself (columns, or globals such
        as ``range``).
      paths: each attribute path it follows from those names, as a tuple of names
        (``("product", "name")``; integer subscripts appear as ``"[0]"``).
      problems: what is wrong, each a phrase to follow ``"<column>: <field> "`` (``"uses the
        filter 'uper', which does not exist; did you mean 'upper'?"``); empty when none.
    """

    variables: frozenset[str]
    paths: tuple[tuple[str, ...], ...]
    problems: tuple[str, ...]


@functools.lru_cache(maxsize=65536)
def template_facts(source: str) -> TemplateFacts:
    """The :class:`TemplateFacts` of a template (cached per source text)."""
    simple = _simple_facts(source)
    return simple if simple is not None else _parsed_facts(source)


def _simple_facts(source: str) -> TemplateFacts | None:
    """The facts of a template made only of text and ``{{ name(.attr)* (| filter)* }}``, or
    ``None`` when it holds anything else (then Jinja's parser decides)."""
    if "{%" in source or "{#" in source:
        return None
    paths: list[tuple[str, ...]] = []
    problems: list[str] = []
    position = source.find("{{")
    while position != -1:
        match = _SIMPLE.match(source, position)
        if match is None:
            return None
        path = tuple(match.group("path").split("."))
        if path[0] in _NOT_VARIABLES:
            return None
        internal = next((name for name in path[1:] if _is_internal(name)), None)
        if internal is not None:
            problems.append(_internal(internal))
        paths.append(path)
        for name in _FILTER_NAME.findall(match.group("filters")):
            problem = _unknown("filter", name, KNOWN_FILTERS)
            if problem is not None:
                problems.append(problem)
        position = source.find("{{", match.end())
    variables = frozenset(path[0] for path in paths)
    return TemplateFacts(variables, tuple(dict.fromkeys(paths)), tuple(dict.fromkeys(problems)))


def _parsed_facts(source: str) -> TemplateFacts:
    try:
        tree = _PARSER.parse(source)
    except jinja2.TemplateSyntaxError as exc:
        return TemplateFacts(
            frozenset(), (), (f"has a Jinja syntax error on template line {exc.lineno}: "
                              f"{exc.message}",)
        )
    except (RecursionError, MemoryError):
        return TemplateFacts(
            frozenset(), (), ("nests too deeply to parse; simplify the template",)
        )
    problems: list[str] = []
    for node in tree.find_all((nodes.Filter, nodes.Test)):
        kind, known = ("filter", KNOWN_FILTERS) if isinstance(node, nodes.Filter) else (
            "test",
            KNOWN_TESTS,
        )
        problem = _unknown(kind, node.name, known)
        if problem is not None:
            problems.append(problem)
    problems.extend(_compile_time_problems(tree))
    if any(True for _ in tree.find_all(_BINDING)):
        variables = frozenset(jinja2.meta.find_undeclared_variables(tree))
    else:
        variables = frozenset(
            node.name for node in tree.find_all(nodes.Name) if node.ctx == "load"
        )
    return TemplateFacts(
        variables, tuple(dict.fromkeys(_paths(tree, variables))), tuple(dict.fromkeys(problems))
    )


def _unknown(kind: str, name: str, known: frozenset[str]) -> str | None:
    if name in known:
        return None
    hint = did_you_mean(name, known, otherwise=f"see the list of Jinja's built-in {kind}s")
    return f"uses the {kind} {name!r}, which does not exist; {hint}"


def _compile_time_problems(tree: nodes.Template) -> list[str]:
    """What Jinja would refuse only when compiling, and tags that load other templates."""
    problems: list[str] = []
    for node in tree.find_all(_LOADING):
        tag = type(node).__name__.lower().replace("fromimport", "from ... import")
        problems.append(
            f"uses '{{% {tag} %}}', which loads another template; a column's template must "
            "be self-contained"
        )
    blocks = [block.name for block in tree.find_all(nodes.Block)]
    problems.extend(
        f"defines the block {name!r} twice" for name in sorted({b for b in blocks if
                                                                blocks.count(b) > 1})
    )
    for loop in tree.find_all(nodes.For):
        if any(n.name == "loop" for n in loop.target.find_all(nodes.Name)):
            problems.append("assigns to 'loop' in a for loop; choose another variable name")
    for macro in tree.find_all((nodes.Macro, nodes.CallBlock)):
        assert isinstance(macro, nodes.Macro | nodes.CallBlock)
        names = [arg.name for arg in macro.args]
        if "caller" in names and len(macro.defaults) < len(names) - names.index("caller"):
            problems.append("declares a 'caller' argument without a default")
    # Parsed, but too deep to walk again (RecursionError): the render bounds it then.
    with contextlib.suppress(RecursionError):
        problems.extend(_sandbox_problems(tree))
    return problems


# -- what the sandbox would refuse on every render --------------------------------------------


def _is_internal(name: str) -> bool:
    return (name.startswith("__") and name.endswith("__")) or name in _UNSAFE_NAMES


def _internal(name: str) -> str:
    return (
        f"reaches for {name!r}, a Python internal that the template sandbox blocks; templates "
        "read column values only (a field of a structured column is col.field)"
    )


def _sandbox_problems(tree: nodes.Template) -> list[str]:
    """What the renderer's sandbox would refuse on every render, whatever the row: Python
    internals (``''.__class__``), constant sizes over its limits (``range(10**9)``,
    ``'a' * 10**9``, ``9 ** 10**6``, nested constant loops), and a macro that calls itself
    unconditionally. Constant parts only; what depends on the row is bounded at render time."""
    problems: list[str] = []
    internals = [
        key
        for node in tree.find_all((nodes.Getattr, nodes.Getitem))
        if (key := _attribute(node)) is not None and _is_internal(key)
    ]
    if internals:  # the first step into the internals (outer nodes come first) is enough
        problems.append(_internal(internals[-1]))
    for node in tree.find_all((nodes.Mul, nodes.Pow, nodes.Call)):
        problem = _constant_size_problem(node, problems)
        if problem is not None:
            problems.append(problem)
    _walk(tree, 1, (), problems)
    return problems


def _attribute(node: nodes.Node) -> str | None:
    """The name ``x.name`` / ``x['name']`` reaches for, when it is written out."""
    if isinstance(node, nodes.Getattr):
        return str(node.attr)
    return _const_str(node.arg) if isinstance(node, nodes.Getitem) else None


def _const_str(node: nodes.Node) -> str | None:
    return node.value if isinstance(node, nodes.Const) and isinstance(node.value, str) else None


class _TooBig(Exception):
    """A constant expression would exceed a sandbox limit; ``args[0]`` says which."""


def _const_int(node: nodes.Node) -> int | None:
    """The value of an integer expression made of literals, or ``None`` when it depends on
    anything else (or is not an integer).

    Raises:
      _TooBig: a ``**`` in it would build a number over :data:`MAX_POWER_BITS`.
    """
    if isinstance(node, nodes.Const):
        value = node.value
        return value if isinstance(value, int) and not isinstance(value, bool) else None
    if isinstance(node, nodes.Neg | nodes.Pos):
        inner = _const_int(node.node)
        return None if inner is None else (-inner if isinstance(node, nodes.Neg) else inner)
    if not isinstance(node, nodes.Add | nodes.Sub | nodes.Mul | nodes.Pow | nodes.FloorDiv):
        return None
    left, right = _const_int(node.left), _const_int(node.right)
    if left is None or right is None:
        return None
    if isinstance(node, nodes.Pow):
        if right < 0:
            return None
        if abs(left) > 1 and right * (abs(left).bit_length() - 1) > MAX_POWER_BITS:
            base = str(left) if abs(left).bit_length() <= 40 else "a large number"
            raise _TooBig(
                f"computes {base} ** {right}, a number of more than {MAX_POWER_BITS:,} bits "
                "(the sandbox's limit for '**')"
            )
        return int(left**right)
    if isinstance(node, nodes.FloorDiv):
        return None if right == 0 else left // right
    if isinstance(node, nodes.Mul):
        return left * right
    return left + right if isinstance(node, nodes.Add) else left - right


def _range_length(node: nodes.Node) -> int | None:
    """The length of ``range(<constants>)``, or ``None`` when ``node`` is something else."""
    if not (
        isinstance(node, nodes.Call)
        and isinstance(node.node, nodes.Name)
        and node.node.name == "range"
        and 1 <= len(node.args) <= 3
        and not node.kwargs
        and node.dyn_args is None
        and node.dyn_kwargs is None
    ):
        return None
    bounds = [_const_int(arg) for arg in node.args]
    if any(bound is None for bound in bounds):
        return None
    try:
        return len(range(*bounds))  # type: ignore[arg-type]
    except (ValueError, OverflowError):  # a step of 0; a length past sys.maxsize
        return MAX_LOOP_STEPS + 1 if 0 not in bounds[2:] else None


def _constant_size_problem(node: nodes.Node, found: list[str]) -> str | None:
    try:
        if isinstance(node, nodes.Pow):
            _const_int(node)
            return None
        if isinstance(node, nodes.Call):
            length = _range_length(node)
            if length is not None and length > MAX_LOOP_STEPS:
                return (
                    f"calls range() with {length:,} items, more than the {MAX_LOOP_STEPS:,} "
                    "loop iterations the template sandbox allows one render"
                )
            return None
        assert isinstance(node, nodes.Mul)
        for sized, count in ((node.left, node.right), (node.right, node.left)):
            size = _literal_size(sized)
            times = _const_int(count)
            if size is not None and times is not None and size * times > MAX_VALUE_CHARS:
                return (
                    f"repeats a literal {times:,} times ({size * times:,} characters or items), "
                    f"more than the {MAX_VALUE_CHARS:,} the template sandbox allows one value"
                )
    except _TooBig as exc:
        problem = str(exc.args[0])
        return None if problem in found else problem
    return None


def _literal_size(node: nodes.Node) -> int | None:
    if isinstance(node, nodes.Const) and isinstance(node.value, str):
        return len(node.value)
    if isinstance(node, nodes.List | nodes.Tuple):
        return len(node.items)
    return None


def _walk(node: nodes.Node, steps: int, macros: tuple[str, ...], problems: list[str]) -> None:
    """Nested constant loops (their iterations multiply) and unconditional self-calls of a
    macro (``macros``: the macros whose bodies we are in, outside any condition)."""
    if isinstance(node, nodes.For):
        length = _range_length(node.iter)
        if length is not None and steps * length > MAX_LOOP_STEPS and steps > 1:
            problems.append(
                f"nests loops over constant ranges that run {steps * length:,} iterations, "
                f"more than the {MAX_LOOP_STEPS:,} the template sandbox allows one render"
            )
            return
        _walk(node.iter, steps, macros, problems)
        for child in node.body:
            _walk(child, steps * (length or 1), (), problems)
        return
    if isinstance(node, nodes.Macro):
        for child in node.body:
            _walk(child, steps, (*macros, node.name), problems)
        return
    if isinstance(node, nodes.Call) and isinstance(node.node, nodes.Name) and (
        node.node.name in macros
    ):
        problems.append(
            f"calls the macro {node.node.name!r} from inside itself on every call, so it "
            "never stops (Python's stack runs out); put the call under an {% if %}"
        )
        return
    inner = () if isinstance(node, _CONDITIONAL) else macros
    for child in node.iter_child_nodes():
        _walk(child, steps, inner, problems)


def _paths(tree: nodes.Template, variables: frozenset[str]) -> list[tuple[str, ...]]:
    """Attribute/subscript chains rooted at a variable, outermost first in source order."""
    found: list[tuple[str, ...]] = []
    inner: set[int] = set()
    called = {id(call.node) for call in tree.find_all(nodes.Call)}
    for node in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Name)):
        if id(node) in inner:
            continue
        chain: list[str] = []
        method = id(node) in called and isinstance(node, nodes.Getattr)
        current: nodes.Node = node
        while isinstance(current, nodes.Getattr | nodes.Getitem):
            inner.add(id(current.node))
            key = _key(current)
            if key is None:
                chain.clear()
            else:
                chain.append(key)
            current = current.node
        if method and chain:
            chain.pop(0)  # x.name.upper(): a method call, not a field of the value
        if isinstance(current, nodes.Name) and current.name in variables:
            found.append((current.name, *reversed(chain)))
    return found


def _key(node: nodes.Getattr | nodes.Getitem) -> str | None:
    if isinstance(node, nodes.Getattr):
        return node.attr
    arg = node.arg
    if isinstance(arg, nodes.Const) and isinstance(arg.value, str):
        return arg.value
    if isinstance(arg, nodes.Const) and isinstance(arg.value, int):
        return f"[{arg.value}]"
    return None
