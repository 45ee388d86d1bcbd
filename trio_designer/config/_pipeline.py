"""The whole pipeline config, its builder, cross-reference checks and fingerprint.

Three ways to get a :class:`PipelineConfig`, all raising one
:class:`~trio_designer.ConfigError` that lists every problem:

* from a file or text (the edge): ``PipelineConfig.from_yaml(text)`` / ``from_json`` /
  ``from_dict`` / ``from_file(path)``;
* fluently in Python::

      config = (
          PipelineBuilder()
          .add_model(ModelConfig(alias="gen", model="sim-gen"))
          .add_column(CategorySampler(name="topic", values=("astronomy", "jazz")))
          .add_column(name="summary", kind="llm_text", model="gen", prompt="About {{ topic }}")
          .with_run(seed=7)
          .build()
      )

* directly, ``PipelineConfig(columns=(...))``, which checks each object's own invariants
  but not the cross-references between them (call :func:`validate_references`, or let
  :meth:`ExecutionGraph.from_config <trio_designer._graph.ExecutionGraph.from_config>` do it).

Parsing and writing (YAML, JSON, plain data) live in :mod:`._converter`, which knows the
parts of a pipeline but not this module: data flows one way, converter → pipeline. This
module assembles a :class:`PipelineConfig` from the converter's sections and adds the
cross-reference checks.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, final

import attrs

from .._core._constraints import referenced_columns
from .._core._suggest import did_you_mean
from .._exceptions import ConfigError
from ._code import CodeSearch, python_path_dirs
from ._columns import (
    COLUMN_BASES,
    ColumnConfig,
    CustomColumn,
    PluginColumn,
    SeedColumn,
    SubcategorySampler,
    TimeDeltaSampler,
    plugin_column_references,
)
from ._converter import (
    dump_json,
    dump_yaml,
    load_file_located,
    load_json,
    load_yaml,
    structure_sections,
    unstructure,
    unstructure_sections,
)
from ._models import SIMULATOR_PROVIDER, ModelConfig, ModelProvider
from ._run import RunConfig
from ._seed import SeedConfig
from ._validators import checked, instance_of, is_tuple_of, non_empty, optional, to_tuple


def _is_column(value: Any) -> bool:
    return isinstance(value, COLUMN_BASES)


def _is_directory_entry(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip()) and "\x00" not in value


@attrs.frozen(kw_only=True)
class PipelineConfig:
    """A complete pipeline: columns, the models they call, endpoints, run settings.

    Attributes:
      columns: the columns, at least one, in declaration order (ties in the topological
        order follow it).
      models: model aliases used by LLM columns (and custom columns' ``models``).
      providers: endpoints named by models; the built-in ``simulator`` needs no entry.
      run: execution settings.
      python_path: directories a custom column's ``function: module:name`` may be imported
        from, besides the installed environment; relative ones are resolved against the
        config file's directory (the current directory for a config built in code). Never
        implied: code next to a config is not imported unless listed here.
      source: the file the config was read from (set by :meth:`from_file`; not part of the
        config's value: it does not take part in equality and is not written out).
      source_lines: for a YAML file, the line of each path near the top
        (``{"columns[3].prompt": 12}``), so later problems can say where they are.
      seed: rows the pipeline starts from (:class:`SeedConfig`); each seed column becomes a
        column of the pipeline. ``None``: no seed.
    """

    columns: tuple[ColumnConfig, ...] = attrs.field(
        converter=to_tuple,
        validator=checked(is_tuple_of(_is_column, "a column config"), non_empty),
    )
    models: tuple[ModelConfig, ...] = attrs.field(
        default=(),
        converter=to_tuple,
        validator=checked(is_tuple_of(lambda m: isinstance(m, ModelConfig), "a ModelConfig")),
    )
    providers: tuple[ModelProvider, ...] = attrs.field(
        default=(),
        converter=to_tuple,
        validator=checked(is_tuple_of(lambda p: isinstance(p, ModelProvider), "a ModelProvider")),
    )
    run: RunConfig = attrs.field(factory=RunConfig, validator=checked(instance_of(RunConfig)))
    python_path: tuple[str, ...] = attrs.field(
        default=(),
        converter=to_tuple,
        validator=checked(is_tuple_of(_is_directory_entry, "a directory path")),
    )
    source: Path | None = attrs.field(default=None, eq=False, repr=False)
    source_lines: Mapping[str, int] = attrs.field(factory=dict, eq=False, repr=False)
    seed: SeedConfig | None = attrs.field(
        default=None, validator=optional(checked(instance_of(SeedConfig)))
    )

    # -- lookups -----------------------------------------------------------------------------
    def column(self, name: str) -> ColumnConfig:
        """The column called ``name``.

        Raises:
          KeyError: no such column.
        """
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(name)

    def model(self, alias: str) -> ModelConfig:
        """The model with ``alias``.

        Raises:
          KeyError: no such alias.
        """
        for model in self.models:
            if model.alias == alias:
                return model
        raise KeyError(alias)

    def located(self, exc: ConfigError) -> ConfigError:
        """``exc`` with the config file named and each problem's line added, when this config
        was read from a file (else ``exc`` itself)."""
        index = {column.name: i for i, column in enumerate(self.columns)}
        problems = [_column_path(problem, index) for problem in exc.problems]
        if problems != list(exc.problems):
            renamed = ConfigError(problems, source=exc.source)
            renamed.__cause__ = exc.__cause__
            exc = renamed
        if self.source is None:
            return exc
        return located_error(exc, source=self.source, lines=self.source_lines)

    def source_folder(self) -> Path | None:
        """The folder of the config file (``None`` for a config built in code): relative
        paths in the config (``python_path``, ``seed.path``) are relative to it."""
        return self.source.parent if self.source is not None else None

    def code_search(self) -> CodeSearch:
        """Where this config's custom functions may be imported from (see :mod:`._code`).

        Raises:
          ConfigError: a ``python_path`` entry is not a directory.
        """
        folder = self.source.parent if self.source is not None else None
        directories = python_path_dirs(self.python_path, folder)
        missing = [
            f"python_path[{index}]: {entry!r} is not a directory ({directory}); name a "
            "directory that holds your modules (relative to the config file)"
            for index, (entry, directory) in enumerate(
                zip(self.python_path, directories, strict=True)
            )
            if not directory.is_dir()
        ]
        if missing:
            raise ConfigError(missing)
        return CodeSearch(
            python_path=directories,
            config_dir=folder,
            config_name=str(self.source) if self.source is not None else None,
        )

    # -- named constructors (the edge) -------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PipelineConfig:
        """Build from plain data (as parsed from YAML/JSON).

        Raises:
          ConfigError: listing every structural and cross-reference problem.
        """
        return _assemble(data)

    @classmethod
    def from_json(cls, text: str) -> PipelineConfig:
        """Parse JSON text. Raises ConfigError (bad JSON, or any problem of :meth:`from_dict`)."""
        return _assemble(load_json(text))

    @classmethod
    def from_yaml(cls, text: str) -> PipelineConfig:
        """Parse YAML text. Raises ConfigError (bad YAML, or any problem of :meth:`from_dict`)."""
        return _assemble(load_yaml(text))

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> PipelineConfig:
        """Read a ``.yaml``/``.yml`` or ``.json`` file.

        Raises:
          ConfigError: unreadable file, unknown suffix, or any problem of :meth:`from_dict`.
        """
        file = Path(path)
        try:
            data, lines = load_file_located(file)
            config = _assemble(data)
        except ConfigError as exc:
            raise located_error(exc, source=file, lines=locals().get("lines") or {}) from None
        return attrs.evolve(config, source=file, source_lines=lines)

    # -- serialization -------------------------------------------------------------------------
    def to_dict(self, *, lenient: bool = False) -> dict[str, Any]:
        """Plain data that :meth:`from_dict` turns back into an equal config.

        Defaults are omitted; each column mapping starts with its ``kind`` (and ``sampler``).

        Args:
          lenient: write a lambda or local custom function as its ``"module:qualname"``
            instead of raising. The result describes the config (metadata, fingerprints) but
            cannot be loaded back.

        Raises:
          ConfigError: a custom column holds a lambda or local function and not ``lenient``.
        """
        return unstructure_sections(
            providers=self.providers,
            models=self.models,
            run=self.run,
            columns=self.columns,
            python_path=self.python_path,
            lenient=lenient,
            seed=self.seed,
        )

    def to_json(self, *, indent: int | None = 2) -> str:
        """Serialize to JSON text. Raises ConfigError like :meth:`to_dict`, or on NaN values."""
        return dump_json(self.to_dict(), indent=indent)

    def to_yaml(self) -> str:
        """Serialize to YAML text. Raises ConfigError like :meth:`to_dict`."""
        return dump_yaml(self.to_dict())


# -- cross-reference checks --------------------------------------------------------------------


def validate_references(
    config: PipelineConfig, *, columns_complete: bool | None = None
) -> list[str]:
    """Cross-field problems that need no graph, each prefixed with its path.

    Checks: duplicate column names, model aliases and provider names; the reserved provider
    name ``simulator``; models naming an unknown provider; LLM columns (and custom columns'
    ``models``) naming an unknown alias; ``depends_on`` and a subcategory's parent naming an
    unknown column or the column itself. Template references are checked by the graph.

    Args:
      config: the pipeline.
      columns_complete: ``config.columns`` are all the columns, so a name outside them is
        unknown. Default: when the config has no seed (a seed's columns are known only once
        it is opened; the execution graph checks again with them).

    Returns:
      The problems, e.g. ``columns[2].model: no model with alias 'gne'; did you mean 'gen'?``;
      empty when there are none.
    """
    return reference_problems(
        list(enumerate(config.columns)),
        list(enumerate(config.models)),
        list(enumerate(config.providers)),
        columns_complete=config.seed is None if columns_complete is None else columns_complete,
    ) + seed_column_problems(list(enumerate(config.columns)), config.seed)


def seed_column_problems(
    columns: Sequence[tuple[int, ColumnConfig]], seed: SeedConfig | None
) -> list[str]:
    """``kind: seed`` columns in a pipeline without a ``seed:`` section."""
    if seed is not None:
        return []
    return [
        f"columns[{index}] {column.name!r}: kind 'seed' reads the pipeline's seed, but there is "
        "no 'seed:' section; add one (seed: {path: rows.parquet}) or change the kind"
        for index, column in columns
        if isinstance(column, SeedColumn)
    ]


def reference_problems(
    columns: Sequence[tuple[int, ColumnConfig]],
    models: Sequence[tuple[int, ModelConfig]],
    providers: Sequence[tuple[int, ModelProvider]],
    *,
    other_column_names: Iterable[str] = (),
    other_aliases: Iterable[str] = (),
    other_providers: Iterable[str] = (),
    columns_complete: bool = True,
) -> list[str]:
    """:func:`validate_references` over possibly incomplete lists.

    The loader calls this with only the items that structured cleanly, keeping their original
    indices for the paths; ``other_*`` are names salvaged from the broken items, so references
    to them are not reported a second time as unknown.
    """
    problems: list[str] = []
    provider_names = _declared("providers", "name", providers, problems, reserved=True)
    provider_names |= {SIMULATOR_PROVIDER, *other_providers}
    aliases = _declared("models", "alias", models, problems) | set(other_aliases)
    names = _declared("columns", "name", columns, problems) | set(other_column_names)
    for index, model in models:
        if model.provider not in provider_names:
            problems.append(
                f"models[{index}].provider: no provider named {model.provider!r}"
                + _hint(model.provider, provider_names, "declare it under 'providers'")
            )
    for index, column in columns:
        problems.extend(_column_references(index, column, names, aliases, columns_complete))
    return problems


def _declared(
    section: str,
    key: str,
    items: Sequence[tuple[int, Any]],
    problems: list[str],
    *,
    reserved: bool = False,
) -> set[str]:
    """The set of ``key`` values of ``items``; duplicates (and reserved names) go to problems."""
    first: dict[str, int] = {}
    for index, item in items:
        value = getattr(item, key)
        if reserved and value == SIMULATOR_PROVIDER:
            problems.append(
                f"{section}[{index}].{key}: {value!r} is the built-in simulated endpoint and "
                "needs no entry; choose another name"
            )
        elif value in first:
            problems.append(
                f"{section}[{index}].{key}: duplicate {key} {value!r} (first used at "
                f"{section}[{first[value]}]); each {key} must be unique"
            )
        else:
            first[value] = index
    return set(first)


def _column_references(
    index: int, column: ColumnConfig, names: set[str], aliases: set[str], complete: bool = True
) -> list[str]:
    problems: list[str] = []
    path = f"columns[{index}]"
    model = getattr(column, "model", None)
    if isinstance(model, str) and model not in aliases:
        problems.append(f"{path}.model: {_unknown_alias(model, aliases)}")
    if isinstance(column, CustomColumn):
        for position, alias in enumerate(column.models):
            if alias not in aliases:
                problems.append(f"{path}.models[{position}]: {_unknown_alias(alias, aliases)}")
    for position, upstream in enumerate(column.depends_on):
        problem = _unknown_column(upstream, column.name, names, complete)
        if problem:
            problems.append(f"{path}.depends_on[{position}]: {problem}")
    if isinstance(column, SubcategorySampler) and column.category != column.name:
        problem = _unknown_column(column.category, column.name, names, complete)
        if problem:
            problems.append(f"{path}.category: {problem}")
    if isinstance(column, PluginColumn):
        for below, upstream in plugin_column_references(column).items():
            problem = _unknown_column(upstream, column.name, names)
            if problem:
                problems.append(f"{path}.{below}: {problem}")
    if isinstance(column, TimeDeltaSampler) and column.reference != column.name:
        problem = _unknown_column(column.reference, column.name, names, complete)
        if problem:
            problems.append(f"{path}.reference: {problem}")
    for upstream in referenced_columns(getattr(column, "constraints", ())):
        problem = _unknown_column(upstream, column.name, names, complete)
        if problem:
            problems.append(f"{path}.constraints: {problem}")
    return problems


def _unknown_alias(alias: str, aliases: set[str]) -> str:
    return f"no model with alias {alias!r}" + _hint(alias, aliases, "declare it under 'models'")


def _unknown_column(
    name: str, own_name: str, names: set[str], complete: bool = True
) -> str | None:
    if name == own_name:
        return "a column cannot depend on itself"
    if name in names or not complete:
        return None
    return f"no column named {name!r}" + _hint(name, names - {own_name}, "check the spelling")


def _hint(word: str, candidates: Iterable[str], otherwise: str) -> str:
    return "; " + did_you_mean(word, candidates, otherwise=otherwise)


# -- builder -----------------------------------------------------------------------------------


@final
class PipelineBuilder:
    """Assemble a :class:`PipelineConfig` step by step; :meth:`build` checks everything at once.

    Each ``add_*`` takes either a config object or its fields as keywords (structured exactly
    like YAML, so ``kind=``/``sampler=`` select the column class)::

        builder = PipelineBuilder()
        builder.add_column(name="topic", kind="sampler", sampler="category", values=["a", "b"])
        builder.add_column(ExpressionColumn(name="shout", expr="{{ topic | upper }}"))
        config = builder.with_run(seed=7).build()

    Methods return the builder, so calls chain. Problems in keyword forms are reported by
    :meth:`build`, together with every other problem, with paths such as
    ``columns[1].prompt``.
    """

    def __init__(self) -> None:
        self._columns: list[Any] = []
        self._models: list[Any] = []
        self._providers: list[Any] = []
        self._run: dict[str, Any] = {}
        self._seed: Any = None

    def add_column(self, column: ColumnConfig | None = None, /, **fields: Any) -> PipelineBuilder:
        """Append a column: a column config, or its fields (``name=``, ``kind=``, ...)."""
        self._columns.append(_one_or_fields("add_column", column, fields))
        return self

    def add_model(self, model: ModelConfig | None = None, /, **fields: Any) -> PipelineBuilder:
        """Append a model alias: a :class:`ModelConfig`, or its fields."""
        self._models.append(_one_or_fields("add_model", model, fields))
        return self

    def add_provider(
        self, provider: ModelProvider | None = None, /, **fields: Any
    ) -> PipelineBuilder:
        """Append an endpoint: a :class:`ModelProvider`, or its fields."""
        self._providers.append(_one_or_fields("add_provider", provider, fields))
        return self

    def with_run(self, run: RunConfig | None = None, /, **overrides: Any) -> PipelineBuilder:
        """Set run settings: start from ``run`` (if given, else what was set before) and apply
        ``overrides`` (``with_run(seed=7, row_group_size=100)``)."""
        if run is not None:
            self._run = unstructure(run)
        self._run.update(overrides)
        return self

    def with_seed(self, seed: SeedConfig | None = None, /, **fields: Any) -> PipelineBuilder:
        """Read rows from a seed: a :class:`SeedConfig`, or its fields
        (``with_seed(path="questions.csv", sampling="shuffle")``)."""
        self._seed = _one_or_fields("with_seed", seed, fields)
        return self

    def build(self) -> PipelineConfig:
        """The finished config.

        Raises:
          ConfigError: listing every problem: invalid fields (also in keyword forms), unknown
            fields, and cross-references (:func:`validate_references`).
        """
        data = {
            "providers": list(self._providers),
            "models": list(self._models),
            "run": dict(self._run),
            "columns": list(self._columns),
        }
        if self._seed is not None:
            data["seed"] = self._seed
        return _assemble(data)


def _assemble(data: Any) -> PipelineConfig:
    """A :class:`PipelineConfig` from plain data (or a mix of data and config objects).

    The converter structures each section and lists its problems; the cross-references are
    checked here, among the items that structured cleanly (names salvaged from broken items
    count as declared, so they are not reported a second time as unknown).

    Raises:
      ConfigError: listing every problem with its path.
    """
    sections = structure_sections(data)
    problems = [
        *sections.problems,
        *reference_problems(
            sections.columns.items,
            sections.models.items,
            sections.providers.items,
            other_column_names=sections.columns.salvaged,
            other_aliases=sections.models.salvaged,
            other_providers=sections.providers.salvaged,
            columns_complete="seed" not in data,
        ),
        *(
            seed_column_problems(sections.columns.items, sections.seed)
            if "seed" not in data
            else []
        ),
    ]
    if problems:
        raise ConfigError(problems)
    return PipelineConfig(
        columns=sections.columns.values(),
        models=sections.models.values(),
        providers=sections.providers.values(),
        run=sections.run,
        python_path=sections.python_path,
        seed=sections.seed,
    )


_PROBLEM_PATH = re.compile(
    r"^(?P<path>[A-Za-z_]\w*(?:\[\d+\]|\.[A-Za-z_]\w*)*)(?P<name> '[^']*')?"
    r"(?P<rest>: (?P<field>[A-Za-z_]\w*)?.*)$",
    re.DOTALL,
)


def located_error(
    exc: ConfigError, *, source: str | os.PathLike[str], lines: Mapping[str, int]
) -> ConfigError:
    """``exc`` naming the config file, each problem with the line of its path when known.

    ``columns[3].prompt: ...`` becomes ``columns[3].prompt (line 12): ...``; a path without a
    line of its own (a missing field) gets its nearest ancestor's.
    """
    if exc.source is not None:
        return exc
    problems = [_with_line(problem, lines) for problem in exc.problems]
    located = ConfigError(problems, source=str(source))
    located.__cause__ = exc.__cause__
    return located


_GENERATOR_WORDING = re.compile(r"^column '(?P<name>[A-Za-z_]\w*)': ")


def _column_path(problem: str, index: Mapping[str, int]) -> str:
    """``column 'x': ...`` (a generator's wording) as ``columns[3] 'x': ...`` (a path)."""
    match = _GENERATOR_WORDING.match(problem)
    if match is None or match.group("name") not in index:
        return problem
    name = match.group("name")
    return f"columns[{index[name]}] {name!r}: {problem[match.end() :]}"


def _with_line(problem: str, lines: Mapping[str, int]) -> str:
    match = _PROBLEM_PATH.match(problem)
    if match is None or not lines:
        return problem
    path, name, rest = match.group("path"), match.group("name") or "", match.group("rest")
    candidates = [f"{path}.{match.group('field')}"] if name and match.group("field") else []
    unknown = re.match(r": unknown field '(\w+)'", rest)
    if unknown is not None:
        candidates.append(f"{path}.{unknown.group(1)}")
    parts = re.split(r"(?=\[)|\.", path)
    candidates += [_join(parts[:end]) for end in range(len(parts), 0, -1)]
    for candidate in candidates:
        if candidate in lines:
            return f"{path}{name} (line {lines[candidate]}){rest}"
    return problem


def _join(parts: Sequence[str]) -> str:
    return "".join(p if p.startswith("[") or i == 0 else f".{p}" for i, p in enumerate(parts))


def _one_or_fields(method: str, item: Any, fields: dict[str, Any]) -> Any:
    if item is not None and fields:
        raise TypeError(f"{method}() takes a config object or keyword fields, not both")
    if item is None and not fields:
        raise TypeError(f"{method}() needs a config object or keyword fields")
    return item if item is not None else fields
