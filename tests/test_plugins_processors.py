"""Plugins by entry point: processors (``trio_designer.processors``) and validators
(``trio_designer.validators``) that an installed package adds.

Fake distributions as in ``tests/test_plugins.py`` (``tests/_plugin_fixtures.py``); the slow
test of ``examples/plugin`` installs a real package with pip (``tests/test_plugin_example.py``).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from _cli_harness import preview, run_cli
from _plugin_fixtures import installed, write_distribution

from trio_designer import ConfigError, PipelineConfig
from trio_designer.config._fingerprint import fingerprint_basis
from trio_designer.config._plugins import NO_PLUGINS_ENV, PROCESSORS, VALIDATORS
from trio_designer.plugins import list_plugins

MODULE = '''
from typing import Any, ClassVar

import attrs
import pyarrow.compute as pc
import trio

from trio_designer.config import ProcessorBase


class ShoutProcessor:
    def __init__(self, config: Any, label: str, search: Any) -> None:
        self.label = label
        self.column = config.column

    def check(self, columns: Any) -> Any:
        return columns

    def process(self, batch: Any) -> Any:
        table = batch.table
        index = table.schema.get_field_index(self.column)
        return table.set_column(index, self.column, pc.utf8_upper(table.column(self.column)))


@attrs.frozen(kw_only=True)
class Shout(ProcessorBase):
    kind: ClassVar[str] = "shout"
    processor_class: ClassVar[type] = ShoutProcessor

    column: str
    times: int = attrs.field(default=1, validator=attrs.validators.ge(1))


class Short:
    batched = True

    def __init__(self, config: Any, search: Any) -> None:
        self.limit = int(config.options.get("max", 3))

    async def validate(self, rows: Any, ctx: Any) -> list[Any]:
        await trio.lowlevel.checkpoint()
        return [
            {"is_valid": all(len(str(v)) <= self.limit for v in row.values()),
             "messages": []}
            for row in rows
        ]
'''

POINTS = {PROCESSORS: {"shout": "td_steps:Shout"}, VALIDATORS: {"short": "td_steps:Short"}}

PIPELINE = """\
run: {seed: 3, row_group_size: 4}
columns:
  - {name: topic, kind: sampler, sampler: category, values: [jazz, tea]}
  - {name: ok, kind: validation, validator: short, target: [topic], options: {max: 3}}
processors:
  - {kind: shout, column: topic}
"""

BUILT_IN_ONLY = """\
columns:
  - {name: topic, kind: sampler, sampler: category, values: [jazz, tea]}
  - {name: ok, kind: validation, validator: code, language: json, target: [topic]}
processors:
  - {kind: drop_columns, columns: [ok]}
"""


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "site"
    write_distribution(folder, "td-steps", POINTS, {"td_steps": MODULE}, version="1.2")
    with installed(folder):
        yield folder


def test_a_plugin_processor_and_validator_run_like_built_in_ones(site: Path) -> None:
    config = PipelineConfig.from_yaml(PIPELINE)
    assert type(config.processors[0]).__name__ == "Shout"
    assert PipelineConfig.from_yaml(config.to_yaml()) == config  # round trip
    rows = preview(config, 6).table.to_pylist()
    assert len(rows) == 6
    for row in rows:
        assert row["topic"] in ("JAZZ", "TEA")  # the processor ran after the validator
        assert row["ok"]["is_valid"] is (row["topic"] == "TEA")
    code = fingerprint_basis(config)["code"]
    assert {"td_steps:Shout", "td_steps:ShoutProcessor", "td_steps:Short"} <= set(code)


def test_plugin_processor_fields_are_checked_like_built_in_ones(site: Path) -> None:
    cases = {
        "{kind: shout, column: topic, loud: true}": "processors[0]: unknown field 'loud'",
        "{kind: shout, column: [1]}": "processors[0].column",
        "{kind: shout, column: topic, times: 0}": "'times' must be >= 1: 0",
        "{kind: shot, column: topic}": "unknown processor kind 'shot'; expected one of",
    }
    for processor, excerpt in cases.items():
        text = PIPELINE.replace("{kind: shout, column: topic}", processor)
        with pytest.raises(ConfigError) as caught:
            PipelineConfig.from_yaml(text)
        assert excerpt in str(caught.value), (processor, str(caught.value))
    with pytest.raises(ConfigError, match="'shout'"):  # the plugin is listed as a choice
        PipelineConfig.from_yaml(PIPELINE.replace("kind: shout", "kind: shot"))


def test_validate_names_where_plugin_code_comes_from(site: Path, tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(PIPELINE)
    outcome = run_cli(["validate", str(tmp_path / "p.yaml")])
    assert outcome.status == 0, outcome.err
    assert (
        "code: processors[0] kind shout -> plugin td_steps:Shout from package td-steps 1.2"
        in outcome.err
    )
    assert (
        "code: columns[1] 'ok' validator short -> plugin td_steps:Short from package td-steps 1.2"
        in outcome.err
    )
    # An unknown validator lists the installed ones.
    (tmp_path / "q.yaml").write_text(PIPELINE.replace("validator: short", "validator: shor"))
    outcome = run_cli(["validate", str(tmp_path / "q.yaml")])
    assert outcome.status == 2
    assert "unknown validator 'shor'; use one of callable, code, remote, short" in outcome.err


def test_processor_and_validator_plugins_can_be_turned_off(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(NO_PLUGINS_ENV, "1")
    with pytest.raises(ConfigError, match="unknown processor kind 'shout'"):
        PipelineConfig.from_yaml(PIPELINE)
    config = PipelineConfig.from_yaml(PIPELINE.replace("processors:\n", "").replace(
        "  - {kind: shout, column: topic}\n", ""))
    with pytest.raises(ConfigError, match="unknown validator 'short'"):
        preview(config, 2)
    assert "td_steps" not in sys.modules


_BASE = """
from typing import Any, ClassVar
import attrs
from trio_designer.config import ProcessorBase

class Runs:
    def __init__(self, config: Any, label: str, search: Any) -> None:
        self.label = label
    def check(self, columns: Any) -> Any:
        return columns
    def process(self, batch: Any) -> Any:
        return batch.table
"""

#: name -> (group, module source after _BASE, entry point value, excerpt of the reason)
BROKEN: dict[str, tuple[str, str, str, str]] = {
    "processor-import-error": (
        PROCESSORS, "import td_no_such_module\n", "td_broken:Thing",
        "importing its module 'td_broken' failed with ModuleNotFoundError",
    ),
    "processor-not-a-class": (
        PROCESSORS, "thing = 3\n", "td_broken:thing", "names a int, not a config class",
    ),
    "processor-not-a-processor-config": (
        PROCESSORS, "@attrs.frozen\nclass Thing:\n    x: int = 1\n", "td_broken:Thing",
        "does not subclass trio_designer.config.ProcessorBase",
    ),
    "processor-not-attrs": (
        PROCESSORS,
        "class Thing(ProcessorBase):\n    kind = 'broken'\n    processor_class = Runs\n",
        "td_broken:Thing", "is not an attrs class of its own",
    ),
    "processor-wrong-kind": (
        PROCESSORS,
        "@attrs.frozen(kw_only=True)\nclass Thing(ProcessorBase):\n"
        "    kind: ClassVar[str] = 'other'\n    processor_class: ClassVar[type] = Runs\n",
        "td_broken:Thing", "td_broken.Thing.kind is 'other', not the entry point's name 'broken'",
    ),
    "processor-without-processor-class": (
        PROCESSORS,
        "@attrs.frozen(kw_only=True)\nclass Thing(ProcessorBase):\n"
        "    kind: ClassVar[str] = 'broken'\n",
        "td_broken:Thing", "td_broken.Thing.processor_class must be a class",
    ),
    "processor-class-without-process": (
        PROCESSORS,
        "class Half:\n    def check(self, columns): return columns\n"
        "@attrs.frozen(kw_only=True)\nclass Thing(ProcessorBase):\n"
        "    kind: ClassVar[str] = 'broken'\n    processor_class: ClassVar[type] = Half\n",
        "td_broken:Thing", "td_broken.Half has no process method",
    ),
    "validator-import-error": (
        VALIDATORS, "raise RuntimeError('boom')\n", "td_broken:Thing",
        "importing its module 'td_broken' failed with RuntimeError: boom",
    ),
    "validator-not-callable": (
        VALIDATORS, "thing = 3\n", "td_broken:thing",
        "names a int, not a validator class or builder",
    ),
    "validator-sync-validate": (
        VALIDATORS,
        "class Thing:\n    batched = True\n    def validate(self, rows, ctx): return []\n",
        "td_broken:Thing", "td_broken.Thing has no 'async def validate(self, rows, ctx)' method",
    ),
    "validator-batched-not-bool": (
        VALIDATORS,
        "class Thing:\n    batched = 'yes'\n    async def validate(self, rows, ctx): return []\n",
        "td_broken:Thing", "td_broken.Thing.batched must be True or False",
    ),
}

USES = {
    PROCESSORS: (
        "columns:\n  - {name: topic, kind: sampler, sampler: category, values: [jazz]}\n"
        "processors:\n  - {kind: broken}\n"
    ),
    VALIDATORS: (
        "columns:\n  - {name: topic, kind: sampler, sampler: category, values: [jazz]}\n"
        "  - {name: ok, kind: validation, validator: broken, target: [topic]}\n"
    ),
}


@pytest.mark.parametrize("defect", sorted(BROKEN))
def test_a_broken_processor_or_validator_plugin_is_one_clear_error(
    defect: str, tmp_path: Path
) -> None:
    group, source, value, excerpt = BROKEN[defect]
    folder = tmp_path / "site"
    write_distribution(
        folder, "td-broken", {group: {"broken": value}}, {"td_broken": _BASE + source},
        version="2.0",
    )
    with installed(folder):
        # A run that does not use the plugin does not see it.
        assert preview(PipelineConfig.from_yaml(BUILT_IN_ONLY), 2).num_records_written == 2
        assert "td_broken" not in sys.modules
        with pytest.raises(ConfigError) as caught:
            preview(PipelineConfig.from_yaml(USES[group]), 2)
        message = str(caught.value)
        assert excerpt in message, message
        assert "plugin 'broken' is broken" in message
        assert f"entry point 'broken = {value}' in group '{group}'" in message
        assert "from package td-broken 2.0" in message
        (info,) = list_plugins()
        assert (info.group, info.ok) == (group, False)
        assert info.reason is not None
        assert excerpt in info.reason
        # The command line: exit 2, one message, no traceback.
        (tmp_path / "c.yaml").write_text(USES[group])
        (tmp_path / "ok.yaml").write_text(BUILT_IN_ONLY)
        outcome = run_cli(["validate", str(tmp_path / "c.yaml")])
        assert outcome.status == 2
        assert excerpt in outcome.err
        assert "Traceback" not in outcome.err
        assert outcome.err.count("error:") == 1
        assert run_cli(["validate", str(tmp_path / "ok.yaml")]).status == 0


def test_processor_and_validator_plugins_may_not_take_built_in_names(tmp_path: Path) -> None:
    folder = tmp_path / "site"
    write_distribution(
        folder, "td-clash",
        {PROCESSORS: {"filter": "td_steps:Shout"}, VALIDATORS: {"code": "td_steps:Short"}},
        {"td_steps": MODULE},
    )
    with installed(folder):
        config = PipelineConfig.from_yaml(BUILT_IN_ONLY)  # the built-ins win, silently
        assert preview(config, 2).num_records_written == 2
        reasons = {info.name: info.reason or "" for info in list_plugins()}
        assert "'filter' is a built-in processor kind of trio_designer" in reasons["filter"]
        assert "'code' is a built-in validator of trio_designer" in reasons["code"]


def test_built_in_processors_and_validators_never_discover_plugins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lazy: only a kind nobody built in reads entry points."""
    folder = tmp_path / "site"
    write_distribution(
        folder, "td-bomb", {PROCESSORS: {"bomb": "td_bomb:Bomb"}, VALIDATORS: {"b": "td_bomb:B"}},
        {"td_bomb": "raise SystemExit('a plugin module was imported')\n"},
    )
    with installed(folder):
        import importlib.metadata

        def refuse(*args: object, **kwargs: object) -> object:
            raise AssertionError("entry points were read")

        monkeypatch.setattr(importlib.metadata, "distributions", refuse)
        config = PipelineConfig.from_yaml(BUILT_IN_ONLY)
        assert preview(config, 2).num_records_written == 2
        assert fingerprint_basis(config)["code"] == {}
        (tmp_path / "ok.yaml").write_text(BUILT_IN_ONLY)
        assert run_cli(["validate", str(tmp_path / "ok.yaml")]).status == 0
        assert "td_bomb" not in sys.modules
