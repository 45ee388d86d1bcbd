"""Plugins by entry point: column kinds and samplers that an installed package adds.

Each test installs fake distributions (a ``*.dist-info`` folder with ``entry_points.txt`` and
their modules, as ``pip install --target`` leaves them) into a temporary folder on
``sys.path`` (``tests/_plugin_fixtures.py``); ``importlib.metadata`` reads them like any
installed package. The slow test of ``examples/plugin`` installs a real package with pip
(``tests/test_plugin_example.py``).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from _cli_harness import create, preview, run_cli
from _plugin_fixtures import GOOD_MODULE, GOOD_POINTS, installed, write_distribution

from trio_designer import (
    ConfigError,
    PipelineBuilder,
    PipelineConfig,
    PluginError,
    RunConfig,
)
from trio_designer.config import CategorySampler
from trio_designer.config._plugins import (
    NO_PLUGINS_ENV,
    find_plugin,
    group_statuses,
    plugins_disabled,
)
from trio_designer.plugins import list_plugins

PIPELINE = """\
run: {seed: 3, row_group_size: 4}
columns:
  - {name: topic, kind: sampler, sampler: category, values: [jazz, tea]}
  - {name: rev, kind: reverse_text, text: 'about {{ topic }}', upper: true}
  - {name: roll, kind: sampler, sampler: dice, sides: 20}
"""

BUILT_IN_ONLY = """\
columns:
  - {name: topic, kind: sampler, sampler: category, values: [jazz, tea]}
  - {name: e, kind: expression, expr: '{{ topic | upper }}'}
"""


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Path]:
    """A folder on ``sys.path`` holding the working plugin package ``td-good``."""
    folder = tmp_path / "site"
    write_distribution(folder, "td-good", GOOD_POINTS, {"td_good": GOOD_MODULE})
    with installed(folder):
        yield folder


# -- item 1: usable like a built-in ----------------------------------------------------------------


def test_a_plugin_kind_loads_from_yaml_and_round_trips(site: Path) -> None:
    config = PipelineConfig.from_yaml(PIPELINE)
    rev, roll = config.columns[1], config.columns[2]
    assert type(rev).__name__ == "ReverseText"
    assert rev.text == "about {{ topic }}"
    assert type(roll).__name__ == "Dice"
    assert roll.sides == 20
    assert PipelineConfig.from_yaml(config.to_yaml()) == config
    data = config.to_dict()
    assert data["columns"][1] == {
        "kind": "reverse_text", "name": "rev", "text": "about {{ topic }}", "upper": True
    }
    assert data["columns"][2] == {"kind": "sampler", "sampler": "dice", "name": "roll", "sides": 20}


def test_a_plugin_kind_is_usable_from_python(site: Path) -> None:
    built = (
        PipelineBuilder()
        .add_column(CategorySampler(name="topic", values=("jazz",)))
        .add_column(name="rev", kind="reverse_text", text="{{ topic }}")
        .build()
    )
    cls = find_plugin("trio_designer.columns", "reverse_text")
    assert built.columns[1] == cls(name="rev", text="{{ topic }}")
    direct = PipelineConfig(columns=(built.columns[0], cls(name="rev", text="{{ topic }}")))
    assert direct == built


def test_plugin_fields_are_checked_like_built_in_ones(site: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        PipelineConfig.from_yaml(
            "columns:\n"
            "  - {name: rev, kind: reverse_text, upper: 3, txt: a}\n"
            "  - {name: roll, kind: sampler, sampler: dice, sides: 1}\n"
        )
    problems = caught.value.problems
    assert any("columns[0]: unknown field 'txt'" in p for p in problems), problems
    assert any("columns[0].upper: expected true or false, got 3" in p for p in problems)
    assert "columns[1]: 'sides' must be >= 2: 1" in problems, problems


def test_a_plugin_template_field_is_a_dependency_and_is_validated(site: Path) -> None:
    with pytest.raises(ConfigError, match=r"text references 'topc', which is not a column"):
        preview(PipelineConfig.from_yaml(PIPELINE.replace("{{ topic }}", "{{ topc }}")), 2)


def test_plugin_columns_run_like_built_in_ones_and_are_deterministic(site: Path) -> None:
    config = PipelineConfig.from_yaml(PIPELINE)
    first = preview(config, 8)
    rows = first.table.to_pylist()
    assert [row["rev"] for row in rows] == [
        f"about {row['topic']}"[::-1].upper() for row in rows
    ]
    assert all(1 <= row["roll"] <= 20 for row in rows)
    assert len({row["roll"] for row in rows}) > 1
    assert preview(config, 8).table.to_pylist() == rows  # seeded from ctx.rng_for
    assert first.columns["rev"].ok == 8
    assert first.columns["roll"].ok == 8


ASYNC_MODULE = '''
from typing import Any, ClassVar

import attrs
import trio

from trio_designer import RetryableGenerationError
from trio_designer.plugins import ColumnGenerator, PluginColumn

class FlakyGenerator(ColumnGenerator):
    """Async, per cell: the first attempt of every cell fails with a retryable error."""

    def __init__(self, config: "Flaky") -> None:
        self.config = config
        self.attempts: dict[int, int] = {}

    async def agenerate(self, ctx: Any) -> Any:
        await trio.sleep(0.01)
        self.attempts[ctx.row_index] = self.attempts.get(ctx.row_index, 0) + 1
        if self.attempts[ctx.row_index] == 1:
            raise RetryableGenerationError("busy, try again")
        return f"{ctx.row['topic']}{self.config.suffix}"


@attrs.frozen(kw_only=True)
class Flaky(PluginColumn):
    kind: ClassVar[str] = "flaky"
    generator_class: ClassVar[type] = FlakyGenerator

    suffix: str = "!"
'''


def test_an_async_plugin_is_retried_traced_and_resumed(tmp_path: Path) -> None:
    folder = tmp_path / "site"
    write_distribution(
        folder, "td-flaky", {"trio_designer.columns": {"flaky": "td_flaky:Flaky"}},
        {"td_flaky": ASYNC_MODULE},
    )
    text = (
        "run: {seed: 1, row_group_size: 3, trace: true}\n"
        "columns:\n"
        "  - {name: topic, kind: sampler, sampler: category, values: [jazz, tea]}\n"
        "  - {name: f, kind: flaky, depends_on: [topic]}\n"
    )
    with installed(folder):
        config = PipelineConfig.from_yaml(text)
        out = tmp_path / "out"
        result = create(config, num_records=6, output_dir=out)
        assert result.num_records_written == 6
        assert [row["f"] for row in result.table.to_pylist()] == [
            f"{row['topic']}!" for row in result.table.to_pylist()
        ]
        assert result.columns["f"].retried == 6
        assert {trace.column for trace in result.traces} >= {"f"}
        # Resume: the same config continues; a changed plugin class is a different run.
        again = create(config, num_records=9, output_dir=out, resume=True)
        assert again.num_records_written == 3
        basis_key = "td_flaky:FlakyGenerator"
        from trio_designer.config._fingerprint import fingerprint_basis

        assert basis_key in fingerprint_basis(config)["code"]


def test_a_run_without_plugin_kinds_never_discovers_plugins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lazy: built-in kinds never read entry points, let alone import a plugin."""
    folder = tmp_path / "site"
    write_distribution(
        folder, "td-bomb", {"trio_designer.columns": {"bomb": "td_bomb:Bomb"}},
        {"td_bomb": "raise SystemExit('a plugin module was imported')\n"},
    )
    with installed(folder):
        import importlib.metadata

        def refuse(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError("entry points were read")

        monkeypatch.setattr(importlib.metadata, "distributions", refuse)
        result = preview(PipelineConfig.from_yaml(BUILT_IN_ONLY), 2)
        assert result.num_records_written == 2
        assert "td_bomb" not in sys.modules


def test_only_the_plugin_a_config_uses_is_imported(site: Path, tmp_path: Path) -> None:
    write_distribution(
        site, "td-other", {"trio_designer.columns": {"other": "td_other:Other"}},
        {"td_other": "raise RuntimeError('td_other was imported')\n"},
    )
    with installed(site):
        PipelineConfig.from_yaml(PIPELINE)
        assert "td_good" in sys.modules
        assert "td_other" not in sys.modules


def test_unknown_kinds_list_the_installed_plugins(site: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        PipelineConfig.from_yaml("columns:\n  - {name: a, kind: reverse}\n")
    assert "unknown column kind 'reverse'" in str(caught.value)
    assert "'reverse_text'" in str(caught.value)
    with pytest.raises(ConfigError, match=r"unknown sampler 'die'; expected one of .*'dice'"):
        PipelineConfig.from_yaml("columns:\n  - {name: a, kind: sampler, sampler: die}\n")


def test_plugins_can_be_turned_off(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with plugins_disabled(), pytest.raises(ConfigError, match="unknown column kind"):
        PipelineConfig.from_yaml(PIPELINE)
    monkeypatch.setenv(NO_PLUGINS_ENV, "1")
    with pytest.raises(ConfigError, match="unknown column kind 'reverse_text'"):
        PipelineConfig.from_yaml(PIPELINE)
    assert list_plugins() == ()
    monkeypatch.setenv(NO_PLUGINS_ENV, "0")
    assert PipelineConfig.from_yaml(PIPELINE).columns[1].kind == "reverse_text"


def test_entry_points_in_the_current_directory_are_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dist-info folder lying in the current directory is not an installed package, even when
    the current directory is on sys.path (``python -m`` puts it there)."""
    folder = tmp_path / "here"
    write_distribution(folder, "td-good", GOOD_POINTS, {"td_good": GOOD_MODULE})
    monkeypatch.chdir(folder)
    with installed(folder):
        sys.path.insert(0, "")
        try:
            with pytest.raises(ConfigError, match="unknown column kind 'reverse_text'"):
                PipelineConfig.from_yaml(PIPELINE)
        finally:
            sys.path.remove("")
    assert "td_good" not in sys.modules


def test_list_plugins_reports_every_plugin(site: Path) -> None:
    infos = list_plugins()
    assert [(i.group, i.name, i.distribution, i.version, i.ok) for i in infos] == [
        ("trio_designer.columns", "reverse_text", "td-good", "0.1.0", True),
        ("trio_designer.samplers", "dice", "td-good", "0.1.0", True),
    ]


# -- item 2: broken plugins ----------------------------------------------------------------------

_BASE = """
from typing import Any, ClassVar
import attrs
from trio_designer.plugins import ColumnGenerator, PluginColumn, PluginSampler

class Gen(ColumnGenerator):
    inline = True
    def __init__(self, config: Any) -> None:
        pass
    def generate(self, ctx: Any) -> Any:
        return 1
"""

#: name -> (module source after _BASE, entry point value, excerpt of the reason)
BROKEN: dict[str, tuple[str, str, str]] = {
    "import-error": (
        "import td_no_such_module\n", "td_broken:Thing",
        "importing its module 'td_broken' failed with ModuleNotFoundError: No module named "
        "'td_no_such_module'",
    ),
    "missing-attribute": ("", "td_broken:Nope", "module 'td_broken' has no 'Nope'"),
    "not-a-class": ("thing = 3\n", "td_broken:thing", "names a int, not a config class"),
    "not-a-plugin-column": (
        "@attrs.frozen\nclass Thing:\n    x: int = 1\n", "td_broken:Thing",
        "does not subclass trio_designer.plugins.PluginColumn",
    ),
    "not-attrs": (
        "class Thing(PluginColumn):\n    kind = 'broken'\n    generator_class = Gen\n",
        "td_broken:Thing", "is not an attrs class of its own",
    ),
    "wrong-kind": (
        "@attrs.frozen(kw_only=True)\nclass Thing(PluginColumn):\n"
        "    kind: ClassVar[str] = 'other'\n    generator_class: ClassVar[type] = Gen\n",
        "td_broken:Thing", "td_broken.Thing.kind is 'other', not the entry point's name 'broken'",
    ),
    "no-generator": (
        "@attrs.frozen(kw_only=True)\nclass Thing(PluginColumn):\n"
        "    kind: ClassVar[str] = 'broken'\n",
        "td_broken:Thing", "generator_class must be a ColumnGenerator subclass",
    ),
    "reserved-field": (
        "@attrs.frozen(kw_only=True)\nclass Thing(PluginColumn):\n"
        "    kind: ClassVar[str] = 'broken'\n    generator_class: ClassVar[type] = Gen\n"
        "    sampler: str = 'x'\n",
        "td_broken:Thing", "has a field named 'sampler', which configs use as the tag",
    ),
    "generator-not-a-column-generator": (
        "class Plain:\n    strategy = 'cell'\n    def generate(self, ctx): return 1\n"
        "@attrs.frozen(kw_only=True)\nclass Thing(PluginColumn):\n"
        "    kind: ClassVar[str] = 'broken'\n    generator_class: ClassVar[type] = Plain\n",
        "td_broken:Thing",
        "Thing.generator_class must be a subclass of trio_designer.plugins.ColumnGenerator",
    ),
    "generator-without-methods": (
        "class Lazy(ColumnGenerator):\n    strategy = 'full_column'\n"
        "    def generate(self, ctx): return 1\n"
        "@attrs.frozen(kw_only=True)\nclass Thing(PluginColumn):\n"
        "    kind: ClassVar[str] = 'broken'\n    generator_class: ClassVar[type] = Lazy\n",
        "td_broken:Thing",
        "Lazy implements neither agenerate_column(ctx) nor generate_column(ctx)",
    ),
    "generator-init-fails": (
        "class Boom(Gen):\n    def __init__(self, config):\n        raise KeyError('x')\n"
        "@attrs.frozen(kw_only=True)\nclass Thing(PluginColumn):\n"
        "    kind: ClassVar[str] = 'broken'\n    generator_class: ClassVar[type] = Boom\n",
        "td_broken:Thing", "building its generator failed: KeyError: 'x'",
    ),
}

USES_BROKEN = (
    "columns:\n"
    "  - {name: topic, kind: sampler, sampler: category, values: [jazz, tea]}\n"
    "  - {name: b, kind: broken}\n"
)


@pytest.mark.parametrize("defect", sorted(BROKEN))
def test_a_broken_plugin_is_one_clear_error_and_harms_no_other_run(
    defect: str, tmp_path: Path
) -> None:
    source, value, excerpt = BROKEN[defect]
    folder = tmp_path / "site"
    write_distribution(
        folder, "td-broken", {"trio_designer.columns": {"broken": value}},
        {"td_broken": _BASE + source}, version="2.0",
    )
    with installed(folder):
        # A run that does not use the plugin does not see it.
        assert preview(PipelineConfig.from_yaml(BUILT_IN_ONLY), 2).num_records_written == 2
        with pytest.raises(ConfigError) as caught:
            preview(PipelineConfig.from_yaml(USES_BROKEN), 2)
        message = str(caught.value)
        assert excerpt in message, message
        assert "plugin 'broken' is broken" in message
        assert f"entry point 'broken = {value}'" in message
        assert "from package td-broken 2.0" in message
        (info,) = list_plugins()
        if defect == "generator-init-fails":  # only a config's values reach __init__
            assert info.ok
        else:
            assert not info.ok
            assert info.reason is not None
            assert excerpt in info.reason
        assert (info.distribution, info.version, info.value) == ("td-broken", "2.0", value)
        # The command line: exit 2, one message, no traceback.
        (tmp_path / "c.yaml").write_text(USES_BROKEN)
        (tmp_path / "ok.yaml").write_text(BUILT_IN_ONLY)
        outcome = run_cli(["validate", str(tmp_path / "c.yaml")])
        assert outcome.status == 2
        assert excerpt in outcome.err
        assert "Traceback" not in outcome.err
        assert outcome.err.count("error:") == 1
        assert run_cli(["validate", str(tmp_path / "ok.yaml")]).status == 0


def test_a_plugin_may_not_take_a_built_in_name(tmp_path: Path) -> None:
    folder = tmp_path / "site"
    write_distribution(
        folder, "td-clash",
        {"trio_designer.columns": {"expression": "td_good:ReverseText"},
         "trio_designer.samplers": {"category": "td_good:Dice"}},
        {"td_good": GOOD_MODULE},
    )
    with installed(folder):
        config = PipelineConfig.from_yaml(BUILT_IN_ONLY)  # the built-in wins, silently
        assert type(config.columns[1]).__name__ == "ExpressionColumn"
        reasons = {info.name: info.reason for info in list_plugins()}
        assert "'expression' is a built-in column kind of trio_designer" in reasons["expression"]
        assert "'category' is a built-in sampler of trio_designer" in reasons["category"]
        assert "td_good" not in sys.modules


def test_two_packages_registering_one_kind_are_both_refused(tmp_path: Path) -> None:
    folder = tmp_path / "site"
    write_distribution(folder, "td-good", GOOD_POINTS, {"td_good": GOOD_MODULE})
    write_distribution(
        folder, "td-copy", {"trio_designer.columns": {"reverse_text": "td_good:ReverseText"}}, {}
    )
    with installed(folder):
        with pytest.raises(ConfigError) as caught:
            PipelineConfig.from_yaml(PIPELINE)
        message = str(caught.value)
        assert "2 packages register 'reverse_text'" in message
        assert "td-copy 0.1.0" in message
        assert "td-good 0.1.0" in message
        assert "uninstall all but one" in message
        # The sampler of td-good, which nobody else registers, still works.
        dice = PipelineConfig.from_yaml(
            "columns:\n  - {name: roll, kind: sampler, sampler: dice}\n"
        )
        assert dice.columns[0].sides == 6


def test_a_sampler_registered_as_a_column_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "site"
    write_distribution(
        folder, "td-mixed", {"trio_designer.columns": {"dice": "td_good:Dice"}},
        {"td_good": GOOD_MODULE},
    )
    with installed(folder), pytest.raises(PluginError, match="is a PluginSampler"):
        find_plugin("trio_designer.columns", "dice")


def test_a_group_without_a_registry_says_so(tmp_path: Path) -> None:
    """A group a later version may add (no module registered it): found, never imported."""
    group = "trio_designer.exporters"
    folder = tmp_path / "site"
    write_distribution(
        folder, "td-proc", {group: {"shout": "td_proc:Shout"}}, {"td_proc": "Shout = 1\n"}
    )
    with installed(folder):
        (status,) = group_statuses(group)
        assert status.error is not None
        assert "no registry of that group" in status.error.reason
        assert "td_proc" not in sys.modules


def test_plugin_error_is_a_config_error_naming_everything() -> None:
    error = PluginError(
        group="trio_designer.columns", name="k", value="m:C", distribution="d", version="1",
        reason="it broke",
    )
    assert isinstance(error, ConfigError)
    assert str(error) == (
        "plugin 'k' is broken: it broke (entry point 'k = m:C' in group "
        "'trio_designer.columns', from package d 1); fix or upgrade d, or uninstall it and stop "
        "using 'k'"
    )


def test_run_config_still_defaults(site: Path) -> None:
    """Sanity: plugin discovery does not touch the other sections."""
    assert PipelineConfig.from_yaml(PIPELINE).run == RunConfig(seed=3, row_group_size=4)


def test_trio_run_inherits_the_opt_out() -> None:
    async def inside() -> bool:
        from trio_designer.config._plugins import discovery_enabled

        return discovery_enabled()

    with plugins_disabled():
        assert trio.run(_within_deadline, inside) is False


async def _within_deadline(fn: Any) -> Any:
    with trio.fail_after(5):
        return await fn()


# -- item 3: trio-designer plugins ---------------------------------------------------------------


def test_the_plugins_command_lists_every_plugin(site: Path) -> None:
    write_distribution(
        site, "td-broken", {"trio_designer.columns": {"broken": "td_broken:Nope"}},
        {"td_broken": "x = 1\n"}, version="2.0",
    )
    with installed(site):
        outcome = run_cli(["plugins"])
    assert outcome.status == 1, outcome
    lines = outcome.out.splitlines()
    assert lines[0].split() == ["group", "kind", "package", "version", "status"]
    assert lines[1].split() == ["columns", "broken", "td-broken", "2.0", "broken"]
    assert lines[2].split() == ["columns", "reverse_text", "td-good", "0.1.0", "ok"]
    assert lines[3].split() == ["samplers", "sampler:", "dice", "td-good", "0.1.0", "ok"]
    assert lines[4] == "broken (td-broken 2.0, td_broken:Nope): module 'td_broken' has no 'Nope'"
    assert lines[5] == "3 plugins, 1 broken"


def test_the_plugins_command_speaks_json_and_obeys_no_plugins(site: Path) -> None:
    import json

    outcome = run_cli(["plugins", "--json"])
    assert outcome.status == 0
    assert [(p["name"], p["ok"]) for p in json.loads(outcome.out)] == [
        ("reverse_text", True), ("dice", True)
    ]
    outcome = run_cli(["plugins", "--no-plugins"])
    assert (outcome.status, outcome.out.split(";")[0]) == (
        0, "plugins are turned off (--no-plugins or TRIO_DESIGNER_NO_PLUGINS)"
    )


def test_no_plugins_makes_a_plugin_kind_unknown_on_the_command_line(
    site: Path, tmp_path: Path
) -> None:
    (tmp_path / "p.yaml").write_text(PIPELINE)
    outcome = run_cli(["validate", str(tmp_path / "p.yaml")])
    assert outcome.status == 0
    assert outcome.err.splitlines() == [
        "code: columns[1] 'rev' kind reverse_text -> plugin td_good:ReverseText from package "
        "td-good 0.1.0",
        "code: columns[2] 'roll' kind sampler:dice -> plugin td_good:Dice from package td-good "
        "0.1.0",
    ]
    outcome = run_cli(["validate", "--no-plugins", str(tmp_path / "p.yaml")])
    assert outcome.status == 2
    assert "unknown column kind 'reverse_text'" in outcome.err


def test_the_sync_engine_writes_the_same_plugin_values(site: Path) -> None:
    """Both engines call the same generator protocol; values come from ctx.rng_for, so the
    column-at-a-time baseline writes what the async engine writes."""
    from trio_designer import TrioDesigner

    config = PipelineConfig.from_yaml(PIPELINE)

    async def both() -> tuple[list[Any], list[Any]]:
        with trio.fail_after(20):
            sync = await TrioDesigner(engine="sync").preview(config, num_records=8)
            fast = await TrioDesigner(engine="async").preview(config, num_records=8)
            return sync.table.to_pylist(), fast.table.to_pylist()

    sync_rows, async_rows = trio.run(both)
    assert sync_rows == async_rows
    assert len({row["roll"] for row in sync_rows}) > 1
