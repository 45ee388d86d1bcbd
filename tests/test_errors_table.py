"""Every row of the config-error table in ``docs/errors.md``, through the command line.

Each row's defect is written into a config; ``validate`` and ``run`` must both exit 2 with one
message holding the row's excerpt (after the config file's name), no traceback, and no request
reaching the (real) simulator. A row without a config here, or a config without a row, fails.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from _cli_harness import ThreadedSimulator, run_cli
from _plugin_fixtures import write_distribution

from trio_designer.config._bounded import MAX_CONFIG_BYTES
from trio_designer.config._plugins import clear_plugin_cache

DOC = Path(__file__).resolve().parents[1] / "docs" / "errors.md"

HEAD = """\
providers:
  - {name: remote, base_url: "URL"}
models:
  - {alias: gen, model: sim-gen, provider: remote}
columns:
  - {name: topic, kind: sampler, sampler: category, values: [jazz, tea]}
"""


def _yaml(*columns: str, head: str = HEAD) -> str:
    return head + "".join(f"  - {column}\n" for column in columns)


PRODUCT = (
    "{name: product, kind: llm_structured, model: gen, prompt: 'a product', schema: "
    "{type: object, properties: {name: {type: string}}, required: [name], "
    "additionalProperties: false}}"
)

#: defect -> (file name, file text, extra files)
CASES: dict[str, tuple[str, str, dict[str, str]]] = {
    "yaml-syntax": ("c.yaml", "columns:\n  - {name: a\n\t- x\n", {}),
    "json-syntax": ("c.json", '{"columns": [,]}', {}),
    "unreadable": ("nope.yaml", "", {}),
    "too-big": ("c.yaml", "", {}),  # written below: MAX_CONFIG_BYTES + 1 bytes
    "alias-bomb": (
        "c.yaml",
        "".join(
            f"{x}: &{x} [" + ",".join([f"*{p}"] * 9) + "]\n"
            for p, x in zip("abcdefgh", "bcdefghi", strict=True)
        ).replace("b: &b [*a", "a: &a [lol,lol,lol,lol,lol,lol,lol,lol,lol]\nb: &b [*a")
        + _yaml("{name: t2, kind: sampler, sampler: category, values: *i}"),
        {},
    ),
    "too-deep": ("c.yaml", _yaml("{name: a, kind: sampler, sampler: category, values: "
                                 + "[" * 65 + "]" * 65 + "}"), {}),
    "unknown-key": ("c.yaml", _yaml("{name: s, kind: llm_text, model: gen, promt: 'x'}"), {}),
    "missing-key": ("c.yaml", _yaml("{name: s, kind: llm_text, model: gen}"), {}),
    "bad-value": ("c.yaml", "run: {row_group_size: 0}\n" + _yaml(), {}),
    "unknown-reference": ("c.yaml", _yaml("{name: s, kind: llm_text, model: gne, prompt: x}"),
                          {}),
    "template-reference": (
        "c.yaml",
        _yaml("{name: s, kind: llm_text, model: gen, prompt: 'About {{ topc }}'}"),
        {},
    ),
    "structured-field": (
        "c.yaml",
        _yaml(PRODUCT, "{name: e, kind: expression, expr: '{{ product.nmae }}'}"),
        {},
    ),
    "cycle": (
        "c.yaml",
        _yaml("{name: a, kind: expression, expr: '{{ b }}'}",
              "{name: b, kind: expression, expr: '{{ a }}'}"),
        {},
    ),
    "template-syntax": ("c.yaml", _yaml("{name: e, kind: expression, expr: '{{ topic }'}"), {}),
    "unknown-filter": (
        "c.yaml", _yaml("{name: e, kind: expression, expr: '{{ topic | uper }}'}"), {}
    ),
    "template-too-deep": (
        "c.yaml",
        _yaml("{name: e, kind: expression, expr: '{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}'}"),
        {},
    ),
    "template-too-long": (
        "c.yaml", _yaml("{name: s, kind: llm_text, model: gen, prompt: '" + "x" * 100_001 + "'}"),
        {},
    ),
    "bad-schema": (
        "c.yaml",
        _yaml("{name: p, kind: llm_structured, model: gen, prompt: x, schema: "
              "{properties: {x: {type: not-a-type}}}}"),
        {},
    ),
    "remote-ref": (
        "c.yaml",
        _yaml("{name: p, kind: llm_structured, model: gen, prompt: x, schema: "
              "{properties: {x: {$ref: 'https://127.0.0.1:9/s.json'}}}}"),
        {},
    ),
    "refused-function": (
        "c.yaml", _yaml("{name: f, kind: custom, function: 'os:environ.__or__'}"), {}
    ),
    "missing-module": (
        "c.yaml",
        _yaml("{name: f, kind: custom, function: 'td_table_mod:f'}"),
        {"td_table_mod.py": "def f(row):\n    return 1\n"},
    ),
    "missing-function": (
        "c.yaml",
        "python_path: .\n" + _yaml("{name: f, kind: custom, function: 'td_table_mod2:nope'}"),
        {"td_table_mod2.py": "def note(row):\n    return 1\n"},
    ),
    "bad-python-path": ("c.yaml", "python_path: [nowhere]\n" + _yaml(), {}),
    "credentials": ("c.yaml", _yaml().replace('base_url: "URL"', 'base_url: "http://u:p@h/v1"'),
                    {}),
    "missing-api-key": (
        "c.yaml",
        _yaml("{name: s, kind: llm_text, model: gen, prompt: hi}").replace(
            '"URL"}', '"URL", api_key_env: TD_TABLE_UNSET_KEY}'
        ),
        {},
    ),
    "python-config": ("c.py", "x = 1\n", {}),
    # The plugin package is written into site/ and put on sys.path by the test (see below).
    "broken-plugin": ("c.yaml", _yaml("{name: b, kind: td_table_broken}"), {}),
    "constraint-never": (
        "c.yaml",
        _yaml("{name: age, kind: sampler, sampler: uniform, low: 0, high: 100, "
              "constraints: ['age > 200']}"),
        {},
    ),
    "seed-missing": ("c.yaml", "seed: {path: nope.csv}\n" + _yaml(), {}),
    "seed-unreadable": ("c.yaml", "seed: {path: rows.parquet}\n" + _yaml(),
                        {"rows.parquet": "not parquet at all"}),
    "seed-empty": ("c.yaml", "seed: {path: rows.csv}\n" + _yaml(), {"rows.csv": "question\n"}),
    "seed-reference": (
        "c.yaml",
        "seed: {path: rows.csv}\n" + _yaml("{name: e, kind: expression, expr: '{{ qestion }}'}"),
        {"rows.csv": "question\nWhy?\n"},
    ),
}


def table_rows() -> dict[str, str]:
    """defect -> excerpt, from the config-error table of docs/errors.md."""
    rows: dict[str, str] = {}
    section = DOC.read_text(encoding="utf-8").split("## Config errors", 1)[1].split("\n#", 1)[0]
    for line in section.splitlines():
        match = re.match(r"^\| `(?P<id>[a-z-]+)` \|.*\| `(?P<excerpt>.*)` \|$", line)
        if match:
            rows[match.group("id")] = match.group("excerpt").replace("\\|", "|").replace(
                "\\\\", "\\"
            )
    return rows


def test_every_row_has_a_case_and_every_case_a_row() -> None:
    assert sorted(table_rows()) == sorted(CASES)


@pytest.fixture(scope="module")
def simulator() -> Iterator[ThreadedSimulator]:
    with ThreadedSimulator() as running:
        yield running


@pytest.mark.parametrize("defect", sorted(CASES))
def test_each_config_defect_exits_2_with_one_message(
    defect: str,
    simulator: ThreadedSimulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delenv("TD_TABLE_UNSET_KEY", raising=False)
    name, text, extra = CASES[defect]
    if defect == "too-big":
        text = "#" * (MAX_CONFIG_BYTES + 1)
    if defect != "unreadable":
        (tmp_path / name).write_text(text.replace("URL", simulator.url))
    for file, source in extra.items():
        (tmp_path / file).write_text(source)
    if defect == "broken-plugin":
        site = tmp_path / "site"
        write_distribution(
            site,
            "td-table-plugin",
            {"trio_designer.columns": {"td_table_broken": "td_table_plugin:Broken"}},
            {"td_table_plugin": "import td_table_missing_dependency\n"},
        )
        sys.path.insert(0, str(site))
        clear_plugin_cache()
    excerpt = table_rows()[defect]
    before = simulator.requests()
    for argv in (["validate", name], ["run", name, "-n", "2", "--progress", "none"]):
        outcome = run_cli(argv, deadline=30)
        assert (outcome.status, outcome.out) == (2, ""), (argv, outcome)
        # validate first says where custom code comes from ("code: ..."), then the error.
        message = "".join(
            line for line in outcome.err.splitlines(keepends=True) if not line.startswith("code:")
        )
        assert message.startswith("error: "), message
        assert name in message.splitlines()[0], message
        assert excerpt in message, message
        assert message.count("error:") == 1
        assert "Traceback" not in message
    assert simulator.requests() == before
    for module in ("td_table_mod", "td_table_mod2"):
        sys.modules.pop(module, None)
    clear_plugin_cache()


def test_messages_are_capped_in_length_and_number(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    long_name = "x" * 2000
    columns = "".join(
        f"  - {{name: c{i}, kind: expression, expr: '{{{{ {long_name}{i} }}}}'}}\n"
        for i in range(100)
    )
    (tmp_path / "wide.yaml").write_text("columns:\n" + columns)
    outcome = run_cli(["validate", "wide.yaml"])
    assert outcome.status == 2
    lines = outcome.err.splitlines()
    assert lines[0] == "error: wide.yaml: the configuration has 100 problems:"
    assert len(lines) == 1 + 40 + 1
    assert lines[-1] == "  ... and 60 more problems"
    assert all(len(line) <= 404 for line in lines)
    assert lines[1].endswith("more chars]")
    chain = "".join(
        f"  - {{name: c{i}, kind: expression, expr: '{{{{ c{i - 1} }}}}'}}\n"
        for i in range(1, 3000)
    )
    (tmp_path / "chain.yaml").write_text(
        "columns:\n  - {name: c0, kind: sampler, sampler: category, values: [a]}\n" + chain
    )
    outcome = run_cli(["validate", "chain.yaml"])
    assert outcome.status == 0
    assert outcome.out == (
        "ok: 3000 columns, 0 models, graph order: c0 -> c1 -> c2 -> c3 -> c4 -> c5 -> c6 -> c7 "
        "-> c8 -> c9 -> c10 -> c11 -> ... (2988 more, last c2999)\n"
    )
