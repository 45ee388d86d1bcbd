"""docs/configuration.md stays in sync with the config classes.

What is checked:

* every public attrs class of :mod:`trio_designer.config` has exactly one section, found by a
  heading that contains the class name in backticks (`` `RunConfig` ``); the field tables of
  that section name every field (attrs alias, so a private ``_x`` counts as ``x``) in their
  first column, name nothing that is not a field, and show each field's default as in code;
* the column sections mention their ``kind: <tag>`` (and ``sampler: <tag>``), the overview
  table of tags in "The file" lists exactly the classes' tags, and each column section holds a
  YAML example that loads into that class;
* the shared sections ("Common column fields", "Common LLM column fields") document the
  fields every column (every LLM column) has;
* every YAML/JSON example loads and passes the run-start checks, or fails exactly as the
  ``<!-- expect: ... -->`` marker before it and the ``text`` block after it say;
* links to headings of this page and to other docs resolve.

The checker is a plain function (:func:`doc_problems`), tested on its own against fake classes
and edited copies of the text, so a field added to a class without a row here fails the suite.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, get_args

import attrs
import pytest

import trio_designer.config as config
from trio_designer._exceptions import ConfigError
from trio_designer._plan import ExecutionGraph

DOCS = Path(__file__).resolve().parents[1] / "docs"
DOC_PATH = DOCS / "configuration.md"
DOC = DOC_PATH.read_text(encoding="utf-8")

COLUMN_CLASSES: tuple[type[Any], ...] = get_args(config.ColumnConfig)
SAMPLER_CLASSES: tuple[type[Any], ...] = get_args(config.SamplerConfig)
LLM_CLASSES: tuple[type[Any], ...] = get_args(config.LLMColumnConfig)


def public_config_classes() -> list[type[Any]]:
    """Every attrs class that ``trio_designer.config`` exports."""
    found = [getattr(config, name) for name in config.__all__]
    return [obj for obj in found if isinstance(obj, type) and attrs.has(obj)]


def field_names(cls: type[Any]) -> list[str]:
    """The names users write: each field's ``__init__`` alias (``_x`` -> ``x``)."""
    return [field.alias for field in attrs.fields(cls)]


# -- markdown parsing --------------------------------------------------------------------------

_HEADING = re.compile(r"^(?P<hashes>#{1,6})\s+(?P<title>.+?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")


@attrs.frozen
class Section:
    """A heading and its own text: up to the next heading of any level (subsections excluded)."""

    title: str
    level: int
    line: int
    text: str


def sections(text: str) -> list[Section]:
    """Every heading outside code fences (YAML comments look like headings), in order."""
    lines = text.splitlines()
    starts: list[tuple[int, int, str]] = []
    in_fence = False
    for index, line in enumerate(lines):
        if _FENCE.match(line):
            in_fence = not in_fence
            continue
        match = None if in_fence else _HEADING.match(line)
        if match:
            starts.append((index, len(match["hashes"]), match["title"]))
    result = []
    for position, (index, level, title) in enumerate(starts):
        end = starts[position + 1][0] if position + 1 < len(starts) else len(lines)
        result.append(Section(title, level, index + 1, "\n".join(lines[index:end])))
    return result


@attrs.frozen
class Row:
    """One row of a field table: the backticked names of its first cell, and its cells."""

    names: tuple[str, ...]
    cells: dict[str, str]


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


def tables(text: str) -> Iterator[list[list[str]]]:
    """Every pipe table of ``text``: its header row, then its data rows (as cell lists)."""
    block: list[str] = []
    for line in [*text.splitlines(), ""]:
        if line.lstrip().startswith("|"):
            block.append(line)
            continue
        if len(block) >= 2 and re.fullmatch(r"[\s|:-]+", block[1]):
            yield [_cells(block[0]), *(_cells(row) for row in block[2:])]
        block = []


def field_rows(text: str) -> list[Row]:
    """The rows of every table whose first header is ``field``."""
    rows = []
    for header, *data in tables(text):
        keys = [cell.lower() for cell in header]
        if keys[0] != "field":
            continue
        for cells in data:
            names = tuple(re.findall(r"`([^`]+)`", cells[0]))
            rows.append(Row(names, dict(zip(keys, cells, strict=False))))
    return rows


# -- the checker -------------------------------------------------------------------------------


def default_text(field: attrs.Attribute[Any]) -> str:
    """How the Default column shows ``field``'s default: YAML/JSON spelling, in backticks."""
    default = field.default
    if default is attrs.NOTHING:
        return "required"
    value = default.factory() if isinstance(default, attrs.Factory) else default
    if attrs.has(type(value)):
        return "`{}`"  # a nested config with every field at its default
    return f"`{json.dumps(value)}`"


def _row_problems(
    where: str, cls: type[Any], rows: Sequence[Row], names: Sequence[str]
) -> list[str]:
    """Fields of ``cls`` (limited to ``names``) missing from ``rows``, and wrong defaults."""
    problems = []
    fields = {field.alias: field for field in attrs.fields(cls)}
    documented = {name for row in rows for name in row.names}
    problems += [
        f"{where}: field `{name}` of {cls.__name__} has no row in its table"
        for name in names
        if name not in documented
    ]
    for row in rows:
        if len(row.names) != 1 or row.names[0] not in names:
            continue
        expected = default_text(fields[row.names[0]])
        shown = row.cells.get("default", "")
        if expected not in (shown.lower() if expected == "required" else shown):
            problems.append(
                f"{where}: `{row.names[0]}` shows default {shown!r}, the code says {expected}"
            )
    return problems


def doc_problems(text: str, classes: Iterable[type[Any]]) -> list[str]:
    """Everything about ``classes`` that ``text`` gets wrong or leaves out, one line each."""
    problems: list[str] = []
    all_sections = sections(text)
    overview = next((s for s in all_sections if s.title == "The file"), None)
    overview_tags = _tag_pairs(overview.text) if overview else set()
    for cls in classes:
        name = cls.__name__
        matching = [s for s in all_sections if f"`{name}`" in s.title]
        if len(matching) != 1:
            problems.append(
                f"{name}: expected exactly one section with `{name}` in its heading, "
                f"found {len(matching)}"
            )
            continue
        section = matching[0]
        where = f"{name} (line {section.line})"
        rows = field_rows(section.text)
        fields = field_names(cls)
        problems += _row_problems(where, cls, rows, fields)
        problems += [
            f"{where}: the table names `{extra}`, which is not a field of {name}"
            for extra in sorted({n for row in rows for n in row.names} - set(fields))
        ]
        kind, sampler = getattr(cls, "kind", None), getattr(cls, "sampler", None)
        if isinstance(kind, str):
            for tag in [f"kind: {kind}", *([f"sampler: {sampler}"] if sampler else [])]:
                if tag not in section.text:
                    problems.append(f"{where}: the section never says `{tag}`")
            if (kind, sampler or "") not in overview_tags:
                problems.append(
                    f"{name}: `kind: {kind}` / `sampler: {sampler}` missing from the table "
                    "of column kinds in 'The file'"
                )
    return problems


def shared_fields(classes: Sequence[type[Any]]) -> list[str]:
    """The fields every class of ``classes`` has, in declaration order."""
    return [n for n in field_names(classes[0]) if all(n in field_names(c) for c in classes)]


def shared_section_problems(
    text: str, title: str, classes: Sequence[type[Any]], *, excluding: Iterable[str] = ()
) -> list[str]:
    """The fields every class of ``classes`` has (but ``excluding``, documented elsewhere) must
    have a row each in section ``title``."""
    matching = [s for s in sections(text) if s.title == title]
    if len(matching) != 1:
        return [f"expected exactly one section titled {title!r}, found {len(matching)}"]
    shared = [n for n in shared_fields(classes) if n not in set(excluding)]
    rows = [row for row in field_rows(matching[0].text) if len(row.names) == 1]
    return _row_problems(title, classes[0], rows, shared)


def _tag_pairs(text: str) -> set[tuple[str, str]]:
    """(kind, sampler) pairs of the table whose headers start with `kind` and `sampler`."""
    pairs = set()
    for header, *data in tables(text):
        if [cell.strip("`") for cell in header[:2]] == ["kind", "sampler"]:
            pairs |= {(row[0].strip("`"), row[1].strip("`")) for row in data}
    return pairs


# -- the documentation as it is ----------------------------------------------------------------


def test_every_config_class_is_documented_field_by_field() -> None:
    classes = public_config_classes()
    assert len(classes) >= 20  # the import found the classes (16 columns + 6 others)
    assert doc_problems(DOC, classes) == []


def test_shared_fields_are_documented() -> None:
    common = shared_fields(COLUMN_CLASSES)
    assert common[0] == "name"
    assert shared_section_problems(DOC, "Common column fields", COLUMN_CLASSES) == []
    assert (
        shared_section_problems(DOC, "Common LLM column fields", LLM_CLASSES, excluding=common)
        == []
    )


def test_the_kind_table_lists_exactly_the_column_classes() -> None:
    overview = next(s for s in sections(DOC) if s.title == "The file")
    expected = {(cls.kind, getattr(cls, "sampler", "")) for cls in COLUMN_CLASSES}
    assert _tag_pairs(overview.text) == expected


def test_run_config_defaults_are_stated_exactly() -> None:
    section = next(s for s in sections(DOC) if "`RunConfig`" in s.title)
    shown = {row.names[0]: row.cells["default"] for row in field_rows(section.text)}
    assert shown == {
        field.alias: f"`{json.dumps(field.default)}`" for field in attrs.fields(config.RunConfig)
    }


# -- examples ----------------------------------------------------------------------------------

_BLOCK = re.compile(
    r"^(?:<!-- expect: (?P<expect>[^>]*?) -->\n)?```(?P<lang>\w*)\n(?P<body>.*?)^```\s*$",
    re.DOTALL | re.MULTILINE,
)


@attrs.frozen
class Example:
    line: int
    lang: str
    body: str
    expect: str | None
    output: str | None  # the next ```text block, for examples that must fail


def examples(text: str) -> list[Example]:
    blocks = list(_BLOCK.finditer(text))
    found = []
    for position, block in enumerate(blocks):
        if block["lang"] not in ("yaml", "json"):
            continue
        following = [b["body"] for b in blocks[position + 1 :] if b["lang"] == "text"][:1]
        line = text.count("\n", 0, block.start()) + 1 + (1 if block["expect"] else 0)
        found.append(
            Example(
                line, block["lang"], block["body"], block["expect"], next(iter(following), None)
            )
        )
    return found


def _load(example: Example) -> config.PipelineConfig:
    if example.lang == "json":
        return config.PipelineConfig.from_json(example.body)
    return config.PipelineConfig.from_yaml(example.body)


EXAMPLES = examples(DOC)


def test_examples_are_found() -> None:
    assert len(EXAMPLES) >= len(COLUMN_CLASSES) + 2
    assert {e.expect for e in EXAMPLES} == {None, "ConfigError", "ConfigError at run start"}


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: f"line{e.line}")
def test_example_loads_or_fails_as_shown(example: Example) -> None:
    if example.expect == "ConfigError":
        with pytest.raises(ConfigError) as caught:
            _load(example)
    else:
        loaded = _load(example)
        if example.expect is None:
            ExecutionGraph.from_config(loaded)  # the checks made before a run starts
            return
        assert example.expect == "ConfigError at run start"
        with pytest.raises(ConfigError) as caught:
            ExecutionGraph.from_config(loaded)
    assert example.output is not None, "a failing example needs a ```text block with its error"
    assert str(caught.value) == example.output.rstrip("\n")


@pytest.mark.parametrize("cls", COLUMN_CLASSES, ids=lambda c: c.__name__)
def test_each_column_section_has_an_example_of_its_class(cls: type[Any]) -> None:
    section = next(s for s in sections(DOC) if f"`{cls.__name__}`" in s.title)
    own = [e for e in EXAMPLES if e.body in section.text and e.expect is None]
    assert any(isinstance(c, cls) for e in own for c in _load(e).columns)


# -- links -------------------------------------------------------------------------------------


def slug(title: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def anchors(text: str) -> set[str]:
    seen: dict[str, int] = {}
    result = set()
    for section in sections(text):
        base = slug(section.title)
        count = seen.get(base, 0)
        seen[base] = count + 1
        result.add(base if count == 0 else f"{base}-{count}")
    return result


def test_links_resolve() -> None:
    prose = re.sub(r"^```.*?^```", "", DOC, flags=re.DOTALL | re.MULTILINE)
    own = anchors(DOC)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", prose):
        if target.startswith(("http://", "https://")):
            continue
        path, _, anchor = target.partition("#")
        if path and not (DOCS / path).is_file():
            broken.append(target)
            continue
        if anchor and anchor not in (anchors((DOCS / path).read_text()) if path else own):
            broken.append(target)
    assert broken == []


# -- the checker catches what it must ----------------------------------------------------------


@attrs.frozen(kw_only=True)
class RunConfig(config.RunConfig):  # same name: found by the real RunConfig section
    """RunConfig plus a field the documentation has never heard of."""

    warp_factor: int = 9
    _budget: float = attrs.field(default=1.0)  # documented as `budget`, its alias


@attrs.frozen(kw_only=True)
class TeleportColumn(config.ExpressionColumn):
    """A column kind with no section at all."""

    kind: ClassVar[str] = "teleport"


def test_checker_reports_an_undocumented_field() -> None:
    problems = doc_problems(DOC, [RunConfig])
    assert any("`warp_factor` of RunConfig has no row" in p for p in problems)
    assert any("`budget` of RunConfig has no row" in p for p in problems)
    assert not any("row_group_size" in p for p in problems)


def test_checker_accepts_a_documented_private_field_by_its_alias() -> None:
    row = "| `row_group_size` | `int` | `1000` |"
    extra = "| `warp_factor` | `int` | `9` | | |\n| `budget` | `float` | `1.0` | | |\n"
    edited = DOC.replace(row, extra + row, 1)
    assert edited != DOC
    assert doc_problems(edited, [RunConfig]) == []


def test_checker_reports_a_missing_row_a_stale_row_and_a_wrong_default() -> None:
    edited = re.sub(r"^\| `seed` \| `int` \|.*\n", "", DOC, count=1, flags=re.MULTILINE)
    edited = edited.replace("| `trace` | `bool` | `false` |", "| `tracing` | `bool` | `false` |")
    edited = edited.replace(
        "| `row_group_size` | `int` | `1000` |", "| `row_group_size` | `int` | `100` |"
    )
    problems = doc_problems(edited, [config.RunConfig])
    assert any("`seed` of RunConfig has no row" in p for p in problems)
    assert any("`trace` of RunConfig has no row" in p for p in problems)
    assert any("names `tracing`, which is not a field" in p for p in problems)
    assert any(
        "`row_group_size` shows default '`100`', the code says `1000`" in p for p in problems
    )


def test_checker_reports_a_class_without_a_section_and_an_unknown_tag() -> None:
    problems = doc_problems(DOC, [TeleportColumn])
    assert problems == [
        "TeleportColumn: expected exactly one section with `TeleportColumn` in its heading, found 0"
    ]
    renamed = DOC.replace("`ExpressionColumn` (`kind: expression`)", "`TeleportColumn`")
    problems = doc_problems(renamed, [TeleportColumn])
    assert any("never says `kind: teleport`" in p for p in problems)
    assert any("missing from the table of column kinds" in p for p in problems)


def test_checker_reports_a_shared_field_missing_from_the_common_section() -> None:
    edited = re.sub(r"^\| `skip_value` \|.*\n", "", DOC, count=1, flags=re.MULTILINE)
    problems = shared_section_problems(edited, "Common column fields", COLUMN_CLASSES)
    assert problems == [
        f"Common column fields: field `skip_value` of {COLUMN_CLASSES[0].__name__} has no row "
        "in its table"
    ]
