"""Several dozen malformed configs (YAML, JSON, Python), each through ``validate`` and ``run``.

Each must exit 2 with one clear ``error:`` message, no traceback, no request reaching the real
simulator, within a deadline, and without echoing any secret of the environment.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from _cli_harness import CANARIES, ThreadedSimulator, leaked, run_cli

KEY = CANARIES["TD_CANARY_KEY"]

HEAD = """\
providers:
  - {name: remote, base_url: "URL", api_key_env: TD_CANARY_KEY}
models:
  - {alias: gen, model: sim-gen, provider: remote}
"""
TOPIC = "  - {name: topic, kind: sampler, sampler: category, values: [jazz, tea]}\n"


def y(*columns: str, head: str = HEAD, top: str = "") -> str:
    return top + head + "columns:\n" + TOPIC + "".join(f"  - {c}\n" for c in columns)


def j(data: object) -> str:
    return json.dumps(data)


LLM = "{name: s, kind: llm_text, model: gen, prompt: 'About {{ topic }}'}"

#: name -> (file name, text)
MALFORMED: dict[str, tuple[str, str]] = {
    # -- syntax and shape
    "empty file": ("a.yaml", ""),
    "a scalar": ("a.yaml", "just text\n"),
    "a list": ("a.yaml", "- a\n- b\n"),
    "unclosed flow": ("a.yaml", "columns: [{name: a\n"),
    "duplicate key": ("a.yaml", "columns: []\ncolumns: []\n"),
    "bad indentation": ("a.yaml", "columns:\n  - name: a\n   kind: x\n"),
    "binary garbage": ("a.yaml", "\x00\x01\x02columns"),
    "yaml python tag": ("a.yaml", "columns: !!python/object/apply:os.system ['true']\n"),
    "json trailing comma": ("a.json", '{"columns": [1,],}'),
    "json not an object": ("a.json", "[1, 2, 3]"),
    "json nan": ("a.json", '{"columns": [{"name": "a", "kind": "sampler", "sampler": "gaussian",'
                 ' "mean": NaN, "stddev": 1}]}'),
    "no columns": ("a.yaml", HEAD),
    "columns not a list": ("a.yaml", HEAD + "columns: {a: 1}\n"),
    "unknown top-level": ("a.yaml", y(top="colums: []\n")),
    # -- fields
    "unknown kind": ("a.yaml", y("{name: x, kind: llm_txt, model: gen, prompt: hi}")),
    "unknown sampler": ("a.yaml", y("{name: x, kind: sampler, sampler: gausian}")),
    "bad name": ("a.yaml", y("{name: 'my col', kind: expression, expr: '{{ topic }}'}")),
    "name shadows a global": ("a.yaml", y("{name: range, kind: expression, expr: '1'}")),
    "duplicate column": ("a.yaml", y("{name: topic, kind: expression, expr: '1'}")),
    "string for int": ("a.yaml", y(top="run: {row_group_size: ten}\n")),
    "float for int": ("a.yaml", y(top="run: {seed: 1.5}\n")),
    "blank cache_dir": ("a.yaml", y(top="run: {cache_dir: '  '}\n")),
    "send_seed not a bool": (
        "a.yaml",
        y(head=HEAD.replace("provider: remote}", "provider: remote, send_seed: maybe}")),
    ),
    "negative weights": ("a.yaml", y("{name: w, kind: sampler, sampler: category, values: [a],"
                                     " weights: [-1]}")),
    "high below low": ("a.yaml", y("{name: u, kind: sampler, sampler: uniform, low: 5, high: 1}")),
    "bad date": ("a.yaml", y("{name: d, kind: sampler, sampler: datetime, start: yesterday,"
                             " end: '2024-01-01'}")),
    "empty rubric scores": ("a.yaml", y("{name: j, kind: llm_judge, model: gen, prompt: x,"
                                        " rubrics: [{name: q, description: d, scores: {}}]}")),
    "bad dtype": ("a.yaml", y("{name: e, kind: expression, expr: '1', dtype: integer}")),
    "embedding batch of 0": ("a.yaml", y("{name: v, kind: llm_embedding, model: gen,"
                                         " text: '{{ topic }}', batch_size: 0}")),
    "embedding of an unknown column": ("a.yaml", y("{name: v, kind: llm_embedding, model: gen,"
                                                   " text: '{{ topik }}'}")),
    "unknown provider": ("a.yaml", y(LLM).replace("provider: remote", "provider: remot")),
    "reserved provider": ("a.yaml", y(LLM).replace("name: remote", "name: simulator")),
    "bad base url": ("a.yaml", y(LLM).replace('"URL"', '"127.0.0.1:9/v1"')),
    # -- references, graph, templates
    "unknown alias": ("a.yaml", y(LLM.replace("model: gen", "model: gne"))),
    "unknown column": ("a.yaml", y("{name: e, kind: expression, expr: '{{ topik }}'}")),
    "self reference": ("a.yaml", y("{name: e, kind: expression, expr: '{{ e }}'}")),
    "depends on nothing": ("a.yaml", y("{name: e, kind: expression, expr: '1', "
                                       "depends_on: [ghost]}")),
    "three-cycle": ("a.yaml", y("{name: a, kind: expression, expr: '{{ c }}'}",
                                "{name: b, kind: expression, expr: '{{ a }}'}",
                                "{name: c, kind: expression, expr: '{{ b }}'}")),
    "template syntax": ("a.yaml", y("{name: e, kind: expression, expr: '{% if %}'}")),
    "unknown filter": ("a.yaml", y("{name: e, kind: expression, expr: '{{ topic | shout }}'}")),
    "unknown test": ("a.yaml", y("{name: e, kind: expression, expr: '{{ topic is odd_ish }}'}")),
    "extends": ("a.yaml", y("{name: e, kind: expression, expr: \"{% extends 'base' %}\"}")),
    "skip_when syntax": ("a.yaml", y("{name: e, kind: expression, expr: '1', skip_when: '{{'}")),
    "nested template": ("a.json", j({"columns": [{"name": "e", "kind": "expression",
                                                   "expr": "{{ " + "[" * 3000 + "]" * 3000
                                                   + " }}"}]})),
    "structured typo": ("a.yaml", y(
        "{name: p, kind: llm_structured, model: gen, prompt: x, schema: {type: object, "
        "properties: {name: {type: string}}, additionalProperties: false}}",
        "{name: e, kind: expression, expr: '{{ p.nmae }}'}")),
    "schema bad type": ("a.yaml", y("{name: p, kind: llm_structured, model: gen, prompt: x,"
                                    " schema: {type: not-a-type}}")),
    "schema bad required": ("a.yaml", y("{name: p, kind: llm_structured, model: gen, prompt: x,"
                                        " schema: {type: object, required: name}}")),
    "schema remote ref": ("a.yaml", y("{name: p, kind: llm_structured, model: gen, prompt: x,"
                                      " schema: {$ref: 'http://127.0.0.1:9/x.json'}}")),
    # -- bounds
    "billion laughs": ("a.yaml", "a: &a [x,x,x,x,x,x,x,x,x,x]\n" + "".join(
        f"{n}: &{n} [" + ",".join([f"*{p}"] * 10) + "]\n"
        for p, n in zip("abcdefgh", "bcdefghi", strict=True)) + "columns: *i\n"),
    "recursive alias": ("a.yaml", "columns: &c [*c]\n"),
    "deep json": ("a.json", "[" * 50_000 + "]" * 50_000),
    "long prompt": ("a.yaml", y(LLM.replace("About", "x" * 100_001))),
    # -- code and secrets
    "environ or": ("a.yaml", y("{name: f, kind: custom, function: 'os:environ.__or__'}")),
    "stdlib function": ("a.yaml", y("{name: f, kind: custom, function: 'shutil:rmtree'}")),
    "missing module": ("a.yaml", y("{name: f, kind: custom, function: 'td_nowhere:f'}")),
    "bad python_path": ("a.yaml", y(top="python_path: [/nonexistent/td]\n")),
    "pasted key": ("a.yaml", y(LLM).replace("api_key_env: TD_CANARY_KEY", f"api_key_env: {KEY}")),
    "key in url": ("a.yaml", y(LLM).replace('"URL"', f'"http://u:{KEY}@127.0.0.1:9/v1"')),
    "key in header": ("a.yaml", y(LLM).replace(
        "api_key_env: TD_CANARY_KEY}", f"extra_headers: {{Authorization: 'Bearer {KEY}'}}}}")),
    "unset key": ("a.yaml", y(LLM).replace("TD_CANARY_KEY", "TD_MALFORMED_UNSET")),
    # -- Python config files
    "py syntax error": ("a.py", "config = (\n"),
    "py raises": ("a.py", f"raise RuntimeError('boom {KEY}')\n"),
    "py no config": ("a.py", "x = 1\n"),
    "py wrong type": ("a.py", "config = {'columns': []}\n"),
    "py builder raises": ("a.py", "def build_config():\n    raise ValueError('nope')\n"),
    "py bad builder": ("a.py", "from trio_designer import PipelineBuilder\n"
                       "def build_config():\n"
                       "    return PipelineBuilder().add_column(name='x', kind='nope').build()\n"),
    "py imports neighbour": ("a.py", "import td_malformed_neighbour\n"),
    # -- seeds (the files are SEED_FILES, written beside every case)
    "seed missing file": ("a.yaml", y(top="seed: {path: nope.parquet}\n")),
    "seed unreadable": ("a.yaml", y(top="seed: {path: td_seed_bad.parquet}\n")),
    "seed unknown format": ("a.yaml", y(top="seed: {path: td_malformed_neighbour.py}\n")),
    "seed empty": ("a.yaml", y(top="seed: {path: td_seed_empty.csv}\n")),
    "seed template typo": ("a.yaml", y("{name: e, kind: expression, expr: '{{ questoin }}'}",
                                       top="seed: {path: td_seed_ok.csv}\n")),
    "seed two sources": ("a.yaml", y(top="seed: {path: td_seed_ok.csv, hf: org/name}\n")),
    "seed bad sampling": ("a.yaml", y(top="seed: {path: td_seed_ok.csv, sampling: random}\n")),
    "seed selection past end": ("a.yaml", y(top="seed: {path: td_seed_ok.csv, "
                                                "selection: {start: 5}}\n")),
    "seed drop unknown": ("a.yaml", y(top="seed: {path: td_seed_ok.csv, drop: [levle]}\n")),
    "seed kind without seed": ("a.yaml", y("{name: question, kind: seed}")),
    "constraint never holds": ("a.yaml", y("{name: b, kind: sampler, sampler: bernoulli, p: 0.5, "
                                           "constraints: ['b > 1']}")),
    "constraint malformed": ("a.yaml", y("{name: b, kind: sampler, sampler: bernoulli, p: 0.5, "
                                         "constraints: ['b is big']}")),
    "conditional param unknown field": ("a.yaml", y(
        "{name: u, kind: sampler, sampler: uniform, low: 0, high: 1, "
        "conditional_params: {'{{ topic == \"tea\" }}': {hihg: 3}}}")),
    "distribution unknown": ("a.yaml", y("{name: d, kind: sampler, sampler: distribution, "
                                         "distribution: lognorm}")),
    "person bad locale": ("a.yaml", y("{name: p, kind: sampler, sampler: person, locale: xx_YY}")),
    "seed name clash": ("a.yaml", y("{name: level, kind: expression, expr: x}",
                                    top="seed: {path: td_seed_ok.csv}\n")),
}

#: Seed files beside every case (the seed cases above name them).
SEED_FILES: dict[str, str] = {
    "td_seed_ok.csv": "question,level\nWhy?,1\n",
    "td_seed_empty.csv": "question,level\n",
    "td_seed_bad.parquet": "PAR1 this is not parquet",
}


@pytest.fixture(scope="module")
def simulator() -> Iterator[ThreadedSimulator]:
    with ThreadedSimulator(api_key=KEY) as running:
        yield running


def test_there_are_several_dozen() -> None:
    assert len(MALFORMED) >= 48


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_config_is_one_clear_error(
    case: str, simulator: ThreadedSimulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    for name, value in CANARIES.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("TD_MALFORMED_UNSET", raising=False)
    name, text = MALFORMED[case]
    (tmp_path / name).write_text(text.replace("URL", simulator.url))
    (tmp_path / "td_malformed_neighbour.py").write_text("raise SystemExit('ran')\n")
    for seed_name, seed_text in SEED_FILES.items():
        (tmp_path / seed_name).write_text(seed_text)
    before = simulator.requests()
    for argv in (["validate", name], ["run", name, "-n", "2", "--progress", "none"]):
        outcome = run_cli(argv, deadline=30)
        assert outcome.status == 2, (argv, outcome)
        assert outcome.out == ""
        assert outcome.err.startswith("error: "), outcome.err
        assert outcome.err.count("error:") == 1, outcome.err
        assert "Traceback" not in outcome.err
        assert "unexpected" not in outcome.err.split(":", 2)[1], outcome.err
        assert leaked(outcome.err) == [], outcome.err
        assert len(outcome.err) < 4000
    assert simulator.requests() == before
    assert not (tmp_path / "out").exists()
    sys.modules.pop("a", None)
