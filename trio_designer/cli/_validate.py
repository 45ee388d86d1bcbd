"""``validate``: every check that needs no request, all problems at once.

In order: the file loads and every field is valid (structure, cross-references: the loader
reports these together); then, on a config that loads, the execution graph (template syntax,
unknown filters, template references, fields of structured columns, cycles), each column's
generator (custom functions, JSON schemas, judge rubrics...), and the API key variables of the
providers the models use.

Custom code: ``validate`` imports the module of each custom column's ``function`` (its
top-level code runs) because only then can it check that the function exists, is defined
there, and takes the right parameters. It imports only from the installed environment and the
``python_path`` / ``--python-path`` directories, and first prints each module and where it
comes from; ``--no-import`` prints that and imports nothing.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .._exceptions import ConfigError
from ..config import CustomColumn, LLMStructuredColumn, PipelineConfig
from ..config._code import locate_module
from ..config._columns import PluginColumn, ValidationColumn, column_kind
from ..config._plugin_processors import validator_plugin
from ..config._plugins import source_of
from ._format import cap_text, plural
from ._load import load_config

#: How many column names the ``ok`` line lists before it summarises the rest.
ORDER_SHOWN = 12


def cmd_validate(args: argparse.Namespace) -> int:
    """``trio-designer validate CONFIG``: print ``ok: ...`` (exit 0) or raise ``ConfigError``."""
    config = load_config(args.config, python_path=args.python_path)
    try:
        config.code_search()
    except ConfigError as exc:
        raise config.located(exc) from None
    for line in code_lines(config):
        print(line, file=sys.stderr, flush=True)
    order, problems = check(config, check_env=not args.no_check_env, import_code=not args.no_import)
    if problems:
        raise config.located(ConfigError(problems))
    for note in notes(config):
        print(f"note: {cap_text(note)}", file=sys.stderr)
    print(
        f"ok: {plural(len(config.columns), 'column')}, {plural(len(config.models), 'model')}, "
        f"graph order: {order_text(order)}"
    )
    return 0


def order_text(order: tuple[str, ...]) -> str:
    """``a -> b -> c``, or the first :data:`ORDER_SHOWN` names and how many more."""
    if len(order) <= ORDER_SHOWN:
        return " -> ".join(order)
    shown = " -> ".join(order[:ORDER_SHOWN])
    return f"{shown} -> ... ({len(order) - ORDER_SHOWN} more, last {order[-1]})"


def code_lines(config: PipelineConfig) -> list[str]:
    """One ``code:`` line per custom column naming an import path: the module, and where it
    would be imported from (nothing is executed to find out); and one per plugin column: the
    entry point and the package its kind comes from."""
    lines: list[str] = []
    search = config.code_search()
    for index, column in enumerate(config.columns):
        where = f"columns[{index}] {column.name!r}"
        source = source_of(type(column)) if isinstance(column, PluginColumn) else None
        if source is not None:
            lines.append(
                cap_text(
                    f"code: {where} kind {column_kind(column)} -> plugin {source.value} "
                    f"from package {source.distribution} {source.version}"
                )
            )
            continue
        if isinstance(column, ValidationColumn):
            lines.extend(_validator_line(where, column.validator))
        if not isinstance(column, CustomColumn) or not isinstance(column.function, str):
            continue
        module = column.function.partition(":")[0]
        try:
            location = locate_module(module, search, where=where)
        except ConfigError:
            continue  # reported with the other problems
        lines.append(cap_text(f"code: {where} function {column.function} -> {location.describe()}"))
    for index, processor in enumerate(config.processors):
        source = source_of(type(processor))
        if source is not None:
            lines.append(
                cap_text(
                    f"code: processors[{index}] kind {processor.kind} -> plugin {source.value} "
                    f"from package {source.distribution} {source.version}"
                )
            )
    return lines


def _validator_line(where: str, validator: str) -> list[str]:
    """The ``code:`` line of a validation column whose validator a plugin provides."""
    try:
        builder = validator_plugin(validator)
    except ConfigError:
        return []  # a broken plugin: reported with the other problems
    source = None if builder is None else source_of(builder)
    if source is None:
        return []
    return [
        cap_text(
            f"code: {where} validator {validator} -> plugin {source.value} "
            f"from package {source.distribution} {source.version}"
        )
    ]


def check(
    config: PipelineConfig, *, check_env: bool = True, import_code: bool = True
) -> tuple[tuple[str, ...], list[str]]:
    """The graph order and every problem of a config that loaded (empty list: valid).

    Args:
      config: the loaded config.
      check_env: check that the providers' API key variables are set.
      import_code: import custom functions' modules to check them (else only locate them).
    """
    from .._plan import ExecutionGraph
    from .._seed import open_seed
    from ..generators._registry import build_generator
    from ..generators._seed import SeedReader
    from ..models._client import resolve_api_key

    problems: list[str] = []
    order: tuple[str, ...] = ()
    reader = None
    try:
        seed = open_seed(config)
        reader = None if seed is None else SeedReader(seed)
        order = ExecutionGraph.from_config(
            config, seed_columns=None if seed is None else seed.columns
        ).order
    except ConfigError as exc:
        problems.extend(exc.problems)
    broken = {_column_index(problem) for problem in problems}
    search = config.code_search()
    generators: dict[str, Any] = {}
    for index, column in enumerate(config.columns):
        if index in broken:
            continue  # its templates are broken: the generator would only repeat that
        if (
            isinstance(column, CustomColumn)
            and isinstance(column.function, str)
            and not import_code
        ):
            try:
                locate_module(column.function.partition(":")[0], search, where="")
            except ConfigError as exc:
                problems.extend(_located(index, column.name, p) for p in exc.problems)
            continue
        if column.kind == "seed" and reader is None:
            continue  # the seed's own problem is reported
        try:
            generators[column.name] = build_generator(column, code=search, seed=reader)
        except ConfigError as exc:
            problems.extend(_located(index, column.name, p) for p in exc.problems)
    if config.processors and not problems and import_code:
        problems.extend(processor_problems(config, order, generators, search))
    if check_env:
        used = {model.provider for model in config.models}
        for index, provider in enumerate(config.providers):
            if provider.name not in used:
                continue
            try:
                resolve_api_key(provider.api_key_env)
            except ConfigError as exc:
                problems.extend(f"providers[{index}].{p}" for p in exc.problems)
    return order, problems


def processor_problems(
    config: PipelineConfig, order: tuple[str, ...], generators: dict[str, Any], search: Any
) -> list[str]:
    """The problems of the config's processors (the columns and templates they name), checked
    against the columns the run would write."""
    from ..processors._chain import ProcessorChain
    from ..processors._run import output_columns

    configs = {column.name: column for column in config.columns}
    try:
        ProcessorChain(
            config.processors,
            columns=output_columns(order, configs, generators),
            search=search,
        )
    except ConfigError as exc:
        return list(exc.problems)
    return []


def _column_index(problem: str) -> int | None:
    if not problem.startswith("columns["):
        return None
    number = problem[len("columns[") :].partition("]")[0]
    return int(number) if number.isdigit() else None


def _located(index: int, name: str, problem: str) -> str:
    """``column 'x': ...`` (a generator's wording) as ``columns[3] 'x': ...`` (the graph's)."""
    for prefix in (f"column {name!r}: ", ": "):
        if problem.startswith(prefix):
            problem = problem[len(prefix) :]
            break
    return f"columns[{index}] {name!r}: {problem}"


def notes(config: PipelineConfig) -> list[str]:
    """Things that are allowed but worth knowing: models no column uses, and structured
    columns whose schema is sent without ``strict`` (a strict mode would refuse it)."""
    from .._core._jsonschema import strict_problems

    used: set[str] = set()
    for column in config.columns:
        model = getattr(column, "model", None)
        if isinstance(model, str):
            used.add(model)
        used.update(getattr(column, "models", ()))
    found = [
        f"models[{i}] {m.alias!r} is not used by any column"
        for i, m in enumerate(config.models)
        if m.alias not in used
    ]
    for index, column in enumerate(config.columns):
        if isinstance(column, LLMStructuredColumn):
            problems = strict_problems(column.schema)
            if problems:
                shown = "; ".join(problems[:3]) + ("; ..." if len(problems) > 3 else "")
                found.append(
                    f"columns[{index}] {column.name!r}: the schema is sent without strict mode "
                    f"(a strict structured-output mode would refuse it: {shown}); the answers "
                    "are still validated against every keyword"
                )
    return found
