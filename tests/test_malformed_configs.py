"""Several dozen malformed configs (YAML, JSON, Python), each through ``validate`` and ``run``.

Each must exit 2 with one clear ``error:`` message, no traceback, no request reaching the real
simulator, within a deadline, and without echoing any secret of the environment.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from _cli_harness import CANARIES, ThreadedSimulator, leaked, run_cli
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_designer import ConfigError, PipelineConfig

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

#: name -> (file name, text); bytes are written as they are (not UTF-8)
MALFORMED: dict[str, tuple[str, str | bytes]] = {
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
    "a 200 KB column name": (
        "a.yaml",
        y("{name: " + "n" * 200_000 + ", kind: expression, expr: '1'}"),
    ),
    "a long rename": (
        "a.yaml",
        y(top="processors: [{kind: rename_columns, columns: {topic: " + "t" * 129 + "}}]\n"),
    ),
    "tpm below max_tokens": (
        "a.yaml",
        y(LLM, head=HEAD.replace("remote}", "remote, tpm: 500, inference: {max_tokens: 800}}")),
    ),
    "name shadows a global": ("a.yaml", y("{name: range, kind: expression, expr: '1'}")),
    "duplicate column": ("a.yaml", y("{name: topic, kind: expression, expr: '1'}")),
    "reserved row id": ("a.yaml", y("{name: _row_id, kind: expression, expr: '1'}")),
    "cost budget without prices": ("a.yaml", y(LLM, top="run: {max_cost: 2.5}\n")),
    "negative cost budget": ("a.yaml", y(top="run: {max_cost: -1}\n")),
    "negative price": (
        "a.yaml",
        y(LLM, head=HEAD.replace("remote}", "remote, price: {input_per_mtok: -1}}")),
    ),
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
    # -- the hostile-config release check (see also test_hostile_config_messages_are_pinned)
    "not utf-8": ("a.yaml", y("{name: e, kind: expression, expr: 'caf\xe9'}").encode("latin-1")),
    "utf-16": ("a.yaml", y().encode("utf-16")),
    "json duplicate key": ("a.json", '{"columns": [], "columns": []}'),
    "yaml huge integer": ("a.yaml", y(top="run: {seed: " + "9" * 5000 + "}\n")),
    "json huge integer": ("a.json", '{"run": {"seed": ' + "9" * 5000 + '}, "columns": []}'),
    "yaml complex key": ("a.yaml", "? [a, b]\n: c\n" + y()),
    "sandbox escape": ("a.yaml", y("{name: e, kind: expression, "
                                   "expr: '{{ cycler.__init__.__globals__.os }}'}")),
    "huge constant range": ("a.yaml", y("{name: e, kind: expression, "
                                        "expr: '{% for i in range(10**9) %}x{% endfor %}'}")),
    "nested constant loops": ("a.yaml", y(
        "{name: e, kind: expression, expr: '{% for i in range(100000) %}"
        "{% for j in range(100000) %}{% endfor %}{% endfor %}'}")),
    "literal bomb": ("a.yaml", y("{name: e, kind: expression, expr: \"{{ 'a' * 10**9 }}\"}")),
    "power bomb": ("a.yaml", y("{name: e, kind: expression, expr: '{{ 2 ** 10000000 }}'}")),
    "endless macro": ("a.yaml", y("{name: e, kind: expression, "
                                  "expr: '{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}'}")),
    "max_parallel_requests of 10**8": ("a.yaml", y(LLM, head=HEAD.replace(
        "provider: remote}", "provider: remote, max_parallel_requests: 100000000}"))),
    "yaml exponent as text": ("a.yaml", y(LLM, head=HEAD.replace(
        "provider: remote}", "provider: remote, timeout: 1e3}"))),
    "extra_body stream": ("a.yaml", y(LLM, head=HEAD.replace(
        "provider: remote}", "provider: remote, inference: {extra_body: {stream: true}}}"))),
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
    # -- processors (issue 15): caught before any request
    "unknown processor": ("a.yaml", y(LLM, top="processors: [{kind: filtr}]\n")),
    "drop unknown column": ("a.yaml", y(LLM, top="processors: [{kind: drop_columns, "
                                                  "columns: [topik]}]\n")),
    "rename unknown column": ("a.yaml", y(LLM, top="processors: [{kind: rename_columns, "
                                                    "columns: {ghost: x}}]\n")),
    "select unknown column": ("a.yaml", y(LLM, top="processors: [{kind: select_columns, "
                                                    "columns: [s, nope]}]\n")),
    "dedup unknown column": ("a.yaml", y(LLM, top="processors: [{kind: dedup, "
                                                   "columns: [sx]}]\n")),
    "filter bad template": ("a.yaml", y(LLM, top="processors: [{kind: filter, "
                                                  "condition: '{% if %}'}]\n")),
    "filter unknown name": ("a.yaml", y(LLM, top="processors: [{kind: filter, "
                                                  "condition: '{{ score > 3 }}'}]\n")),
    "to_chat no name": ("a.yaml", y(LLM, top="processors: [{kind: to_chat, messages: "
                                              "[{role: user, content: '{{ s }}'}]}]\n")),
    "unknown validator": ("a.yaml", y("{name: v, kind: validation, validator: telepathy, "
                                      "target: [topic]}")),
    "code without language": ("a.yaml", y("{name: v, kind: validation, validator: code, "
                                          "target: [topic]}")),
    "validation target": ("a.yaml", y("{name: v, kind: validation, validator: code, "
                                      "language: python, target: [topik]}")),
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
    if isinstance(text, bytes):
        (tmp_path / name).write_bytes(text)
    else:
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


#: case -> the whole message (after "error: <file>: " or "error: "), pinned: the file, the
#: field path and the remedy (hostile-config release check).
PINNED: dict[str, str] = {
    "not utf-8": "cannot read config file 'a.yaml': byte 0xe9 at line 7, column 43 is not "
    "UTF-8; configs are UTF-8 text, so save it as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)",
    "utf-16": "cannot read config file 'a.yaml': it is UTF-16 text; configs are UTF-8 text, "
    "so save it as UTF-8 (e.g. `iconv -f utf-16 -t utf-8`)",
    "json duplicate key": "a.json: invalid JSON: duplicate key 'columns' in one object (the "
    "second would silently replace the first); keep one",
    "yaml huge integer": "a.yaml: the config holds a number with more than 4,300 digits; no "
    "setting takes one that large",
    "json huge integer": "a.json: the config holds a number with more than 4,300 digits; no "
    "setting takes one that large",
    "yaml complex key": "a.yaml: invalid YAML at line 1, column 3: found unhashable key",
    "sandbox escape": "a.yaml: columns[1] 'e' (line 7): expr reaches for '__init__', a Python "
    "internal that the template sandbox blocks; templates read column values only (a field of "
    "a structured column is col.field)",
    "huge constant range": "a.yaml: columns[1] 'e' (line 7): expr calls range() with "
    "1,000,000,000 items, more than the 1,000,000 loop iterations the template sandbox allows "
    "one render",
    "nested constant loops": "a.yaml: columns[1] 'e' (line 7): expr nests loops over constant "
    "ranges that run 10,000,000,000 iterations, more than the 1,000,000 the template sandbox "
    "allows one render",
    "literal bomb": "a.yaml: columns[1] 'e' (line 7): expr repeats a literal 1,000,000,000 "
    "times (1,000,000,000 characters or items), more than the 4,000,000 the template sandbox "
    "allows one value",
    "power bomb": "a.yaml: columns[1] 'e' (line 7): expr computes 2 ** 10000000, a number of "
    "more than 100,000 bits (the sandbox's limit for '**')",
    "endless macro": "a.yaml: columns[1] 'e' (line 7): expr calls the macro 'f' from inside "
    "itself on every call, so it never stops (Python's stack runs out); put the call under an "
    "{% if %}",
    "max_parallel_requests of 10**8": "a.yaml: models[0].max_parallel_requests (line 4): "
    "'max_parallel_requests' must be <= 100000: 100000000",
    "yaml exponent as text": "a.yaml: models[0].timeout (line 4): expected a number, got the "
    "text '1e3' (YAML reads a number in this form as text: write 1.0e+3)",
    "a 200 KB column name": "a.yaml: columns[1].name (line 7): 'name' is 200,000 characters "
    f"long: '{'n' * 56}...; a name may have at most 128 characters, shorten it",
    "tpm below max_tokens": "a.yaml: models[0].tpm (line 4): 'tpm' is 500 tokens per minute, "
    "but every request reserves its max_tokens (800) plus its prompt, so none fits in a "
    "minute's budget; raise tpm or lower inference.max_tokens",
    "extra_body stream": "a.yaml: models[0].inference.extra_body (line 4): 'extra_body' may "
    "not set 'stream': trio_designer reads each answer whole, as one JSON body (a streamed "
    "answer fails every request); remove 'stream'",
}


@pytest.mark.parametrize("case", sorted(PINNED))
def test_hostile_config_messages_are_pinned(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The exact message of each hostile case: what is wrong, where, and what to do."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TD_CANARY_KEY", KEY)
    name, text = MALFORMED[case]
    if isinstance(text, bytes):
        (tmp_path / name).write_bytes(text)
    else:
        (tmp_path / name).write_text(text.replace("URL", "http://127.0.0.1:9/v1"))
    outcome = run_cli(["validate", name], deadline=30)
    assert (outcome.status, outcome.out) == (2, "")
    assert outcome.err == f"error: {PINNED[case]}\n"


def test_a_directory_is_not_a_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A directory named like a config: said so, exit 2 (it used to say "no such file")."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pipeline.yaml").mkdir()
    for argv in (["validate", "pipeline.yaml"], ["run", "pipeline.yaml", "-n", "1"]):
        outcome = run_cli(argv, deadline=30)
        assert (outcome.status, outcome.out) == (2, "")
        assert outcome.err == (
            "error: cannot read config file 'pipeline.yaml': it is a directory; name the "
            "config file\n"
        )
    with pytest.raises(ConfigError, match=r"it is a directory; name the config file$"):
        PipelineConfig.from_file(tmp_path / "pipeline.yaml")


# -- fuzzing the loader: whatever the text or the data, a ConfigError or a config ------------

_PIECES = [*"{}[]:,-&*!|>'\"?#%@`\n\t abc01.\\", "!!python/name:os.system", "&a", "*a",
           "<<", "!!binary", "!!set", "---", "columns", "models", "kind", "\x00", "\ufeff",
           "9" * 5000, "1e9999", ".inf", ".nan", "~", "? [a, b]\n: c\n"]
_KEYS = ["models", "columns", "providers", "run", "seed", "name", "kind", "alias", "model",
         "prompt", "expr", "sampler", "values", "schema", "type", "properties", "timeout",
         "max_parallel_requests", "inference", "extra_body", "depends_on", "base_url"]
_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**20), 10**20), st.floats(), st.text(max_size=8),
    st.sampled_from(["llm_text", "expression", "sampler", "category", "{{ topic }}", "gen",
                     "{{ ''.__class__ }}", "{% for i in range(10**9) %}{% endfor %}"]),
)
_DATA = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(_KEYS), st.text(max_size=4)), inner,
                        max_size=5),
    ),
    max_leaves=30,
)
_COLUMN = st.builds(
    lambda base, extra: {**extra, **base},
    st.fixed_dictionaries({"name": st.sampled_from(["topic", "a", "s"]),
                           "kind": st.sampled_from(["sampler", "expression", "llm_text",
                                                    "llm_structured", "custom"])}),
    st.dictionaries(st.sampled_from(_KEYS), _DATA, max_size=3),
)
_CONFIGS = st.fixed_dictionaries(
    {"models": st.lists(st.fixed_dictionaries({"alias": st.just("gen")},
                                              optional={"model": _DATA, "timeout": _DATA}),
                        max_size=2),
     "columns": st.lists(_COLUMN, min_size=1, max_size=3)},
    optional={"run": _DATA, "providers": _DATA},
)


@settings(max_examples=300, deadline=None)
@given(text=st.lists(st.sampled_from(_PIECES), max_size=40).map("".join),
       fmt=st.sampled_from(["yaml", "json"]))
def test_any_text_is_a_config_or_a_config_error(text: str, fmt: str) -> None:
    """Hostile-config check: no text makes the loader raise anything but ConfigError."""
    load = PipelineConfig.from_yaml if fmt == "yaml" else PipelineConfig.from_json
    with contextlib.suppress(ConfigError):
        load(text)


@settings(max_examples=300, deadline=None)
@given(data=_CONFIGS)
def test_any_data_is_a_config_or_a_config_error(data: dict[str, object]) -> None:
    """Wrong types at every level (hostile-config check): ConfigError, never another error."""
    with contextlib.suppress(ConfigError):
        PipelineConfig.from_dict(data)
