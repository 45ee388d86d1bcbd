"""``validate``: every check that needs no request, all problems at once.

In order: the file loads and every field is valid (structure, cross-references: the loader
reports these together); then, on a config that loads, the execution graph (template syntax,
template references, cycles), each column's generator (custom functions import, JSON schemas,
judge rubrics...), and the API key variables of the providers the models use.
"""

from __future__ import annotations

import argparse
import sys

from .._exceptions import ConfigError
from ..config import PipelineConfig
from ._format import plural
from ._load import load_config


def cmd_validate(args: argparse.Namespace) -> int:
    """``trio-designer validate CONFIG``: print ``ok: ...`` (exit 0) or raise ``ConfigError``."""
    config = load_config(args.config)
    order, problems = check(config, check_env=not args.no_check_env)
    if problems:
        raise ConfigError(problems)
    for note in notes(config):
        print(f"note: {note}", file=sys.stderr)
    print(
        f"ok: {plural(len(config.columns), 'column')}, {plural(len(config.models), 'model')}, "
        f"graph order: {' -> '.join(order)}"
    )
    return 0


def check(config: PipelineConfig, *, check_env: bool = True) -> tuple[tuple[str, ...], list[str]]:
    """The graph order and every problem of a config that loaded (empty list: valid)."""
    from .._plan import ExecutionGraph
    from ..generators._registry import build_generator
    from ..models._client import resolve_api_key

    problems: list[str] = []
    order: tuple[str, ...] = ()
    try:
        order = ExecutionGraph.from_config(config).order
    except ConfigError as exc:
        problems.extend(exc.problems)
    for index, column in enumerate(config.columns):
        if any(p.startswith(f"columns[{index}]") for p in problems):
            continue  # its templates are broken: the generator would only repeat that
        try:
            build_generator(column)
        except ConfigError as exc:
            problems.extend(_located(index, column.name, p) for p in exc.problems)
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


def _located(index: int, name: str, problem: str) -> str:
    """``column 'x': ...`` (a generator's wording) as ``columns[3] 'x': ...`` (the graph's)."""
    prefix = f"column {name!r}: "
    if problem.startswith(prefix):
        problem = problem[len(prefix) :]
    return f"columns[{index}] {name!r}: {problem}"


def notes(config: PipelineConfig) -> list[str]:
    """Things that are allowed but probably not meant: models no column uses."""
    used: set[str] = set()
    for column in config.columns:
        model = getattr(column, "model", None)
        if isinstance(model, str):
            used.add(model)
        used.update(getattr(column, "models", ()))
    return [
        f"models[{i}] {m.alias!r} is not used by any column"
        for i, m in enumerate(config.models)
        if m.alias not in used
    ]
