"""Bounded parsing and bounded renders (issue 12, bullet 2), through the CLI and Python.

A hostile config must be refused with a config error, fast, before anything else happens; a
template must not be able to build a gigabyte. The time limits asserted here are deadlines (a
hang fails in seconds), not benchmarks: a refusal takes milliseconds.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from _cli_harness import preview, run_cli

from trio_designer import ConfigError, ExpressionColumn, PipelineConfig
from trio_designer.config._bounded import MAX_CONFIG_BYTES

BILLION_LAUGHS = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
columns:
  - {name: topic, kind: sampler, sampler: category, values: *i}
"""

EXPANDS = "the YAML expands to more than 1,000,000 nodes once its aliases (*name) are expanded"
DEEP = "the config nests lists and mappings more than 64 levels deep; flatten it"


def _refused_fast(text: str, name: str, message: str, folder: Path) -> None:
    (folder / name).write_text(text)
    for command in (["validate", name], ["run", name, "-n", "1", "--progress", "none"]):
        start = time.perf_counter()
        outcome = run_cli(command, deadline=20)
        assert time.perf_counter() - start < 5  # a deadline: the refusal takes milliseconds
        assert (outcome.status, outcome.out) == (2, "")
        assert outcome.err.startswith(f"error: {name}: ")
        assert message in outcome.err
        assert outcome.err.count("\n") == 1
    assert not (folder / "out").exists()


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_a_billion_laughs_is_refused_in_milliseconds(folder: Path) -> None:
    _refused_fast(BILLION_LAUGHS, "laughs.yaml", EXPANDS, folder)
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=r"expands to more than 1,000,000 nodes"):
        PipelineConfig.from_yaml(BILLION_LAUGHS)
    assert time.perf_counter() - start < 5


def test_a_recursive_alias_is_refused(folder: Path) -> None:
    text = "columns: &c\n  - {name: a, kind: sampler, sampler: category, values: *c}\n"
    _refused_fast(text, "loop.yaml", "a YAML alias refers to a node that contains it", folder)


def test_deep_nesting_is_refused_in_yaml_and_json(folder: Path) -> None:
    deep_yaml = "columns:\n  - {name: a, kind: sampler, sampler: category, values: " + (
        "[" * 200 + "]" * 200 + "}\n"
    )
    _refused_fast(deep_yaml, "deep.yaml", DEEP, folder)
    deep_json = '{"columns": [{"name": "a", "values": ' + "[" * 100_000 + "]" * 100_000 + "}]}"
    _refused_fast(deep_json, "deep.json", DEEP, folder)
    # A shared node may be shallow where it is defined and too deep where it is used.
    aliased = "x: &x " + "[" * 40 + "]" * 40 + "\ncolumns: " + "[" * 40 + "*x" + "]" * 40 + "\n"
    with pytest.raises(ConfigError, match="more than 64 levels deep"):
        PipelineConfig.from_yaml(aliased)


def test_a_huge_file_is_refused_before_it_is_read_whole(folder: Path) -> None:
    big = folder / "big.yaml"
    with big.open("w") as stream:
        stream.write("columns:\n  - {name: a, kind: sampler, sampler: category, values: [\n")
        stream.write("x,\n" * (MAX_CONFIG_BYTES // 3))
        stream.write("]}\n")
    outcome = run_cli(["validate", "big.yaml"], deadline=20)
    assert outcome.status == 2
    assert "error: big.yaml: the config is 8,388,609 bytes, more than the limit of 8,388,608" in (
        outcome.err
    )


def test_a_huge_template_is_refused(folder: Path) -> None:
    text = json.dumps(
        {"columns": [{"name": "a", "kind": "expression", "expr": "{{ 1 }}" + "x" * 100_001}]}
    )
    _refused_fast(text, "long.json", "'expr' is a template of 100,008 characters", folder)


def test_a_deeply_nested_template_is_a_config_error(folder: Path) -> None:
    expr = "{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}"
    text = json.dumps({"columns": [{"name": "a", "kind": "expression", "expr": expr}]})
    _refused_fast(text, "nested.json", "expr nests too deeply to parse", folder)


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("{{ 'a' | uper }}", "expr uses the filter 'uper', which does not exist; did you mean "
         "'upper'?"),
        ("{{ 1 is nonsense }}", "expr uses the test 'nonsense', which does not exist"),
        ("{% include 'x.txt' %}", "uses '{% include %}', which loads another template"),
        ("{% if 1 %}{{ 'a' | nofilter }}{% endif %}", "the filter 'nofilter', which does not"),
        # What the sandbox would refuse on every render (hostile-config check): refused at
        # validate, before any request, instead of dropping every row at run time.
        ("{{ ''.__class__.__mro__ }}", "expr reaches for '__class__', a Python internal that the "
         "template sandbox blocks"),
        ("{{ cycler.__init__.__globals__ }}", "reaches for '__init__', a Python internal"),
        ("{{ range['__class__'] }}", "reaches for '__class__', a Python internal"),
        ("{% for i in range(10**9) %}x{% endfor %}", "calls range() with 1,000,000,000 items, "
         "more than the 1,000,000 loop iterations the template sandbox allows one render"),
        ("{% for i in range(1000) %}{% for j in range(1000) %}{% for k in range(2) %}"
         "{% endfor %}{% endfor %}{% endfor %}", "nests loops over constant ranges that run "
         "2,000,000 iterations"),
        ("{{ 'a' * 10**9 }}", "repeats a literal 1,000,000,000 times (1,000,000,000 "
         "characters or items), more than the 4,000,000"),
        ("{{ [0] * 10**9 }}", "repeats a literal 1,000,000,000 times"),
        ("{{ 2 ** 1000000 }}", "computes 2 ** 1000000, a number of more than 100,000 bits"),
        ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "calls the macro 'f' from inside "
         "itself on every call, so it never stops"),
    ],
)
def test_unknown_filters_and_loading_tags_are_config_errors(
    expr: str, message: str, folder: Path
) -> None:
    text = json.dumps({"columns": [{"name": "a", "kind": "expression", "expr": expr}]})
    _refused_fast(text, "f.json", message, folder)
    config = PipelineConfig.from_json(text)
    with pytest.raises(ConfigError, match=r"^columns\[0\] 'a': expr "):
        preview(config, num_records=1)


# -- what one render may build -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "limit"),
    [
        # (the sizes come through {% set %}: constant ones are config errors, see above)
        ("{% set n = 10**9 %}{{ 'a' * n }}", "'*' would build a value of 1,000,000,000 characters"),
        ("{% set n = 10**9 %}{{ [0] * n }}", "'*' would build a value of 1,000,000,000 characters"),
        ("{% set n = 9 ** 9 %}{{ 9 ** n }}", "would be a number of about 1,228,093,894 bits"),
        ("{{ 'x' | center(10**9) }}", "the filter 'center' would build"),
        ("{{ 'x'.ljust(10**9) }}", "str.ljust() would build"),
        ("{{ '{:>1000000000}'.format(1) }}", "asks for a field of 1000000000 characters"),
        ("{{ '%*d' % (10**9, 1) }}", "takes a field width of 1000000000 characters"),
        ("{% set n = namespace(s='ab') %}{% for i in range(40) %}{% set n.s = n.s ~ n.s %}"
         "{% endfor %}{{ n.s }}", "'~' would build a value of 4,194,304 characters"),
        ("{% set n = 100000 %}{% for i in range(n) %}{% for j in range(n) %}{% endfor %}"
         "{% endfor %}", "more than 1,000,000 loop iterations"),
        ("{% set a = 'a' * 3000000 %}{{ a }}{{ a }}", "the rendered text exceeds the limit"),
    ],
)
def test_render_bombs_fail_their_cell_fast(expr: str, limit: str) -> None:
    """What only shows at render time (sizes from variables) fails its cell, fast."""
    config = PipelineConfig(columns=(ExpressionColumn(name="bomb", expr=expr),))
    start = time.perf_counter()
    result = preview(config, num_records=1)
    assert time.perf_counter() - start < 10  # a deadline: refusals take milliseconds
    [failure] = result.failures
    assert failure.error_class == "NonRetryableGenerationError"
    assert "went over a limit of the template sandbox" in failure.message
    assert limit in failure.message
