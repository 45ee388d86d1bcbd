"""The identity of what a config generates: its fingerprint, and what the fingerprint covers.

A run resumes only with the same fingerprint, so the fingerprint must change whenever the
values a run would write could change. It is the SHA-256 of canonical JSON of a *basis*::

    {
      "config": {...},                       # the config (what it generates, see below)
      "code":   {"mymod:clean": "sha256:..."},   # each custom function / generator class
      "files":  {"seed.path": "sha256:..."}  # each input file the config reads
    }

* ``config``: :meth:`PipelineConfig.to_dict` with lenient function names, leaving out what only
  tunes speed, patience or spending (``run.trace``, concurrency limits, salvage and shutdown
  settings, budgets, each model's ``max_parallel_requests``, ``timeout`` and ``price``, each
  provider's ``transport`` and ``http2``) and where code is found (``python_path``): a resumed
  run may change those.
  Defaults are omitted, so spelling a default out changes nothing.
* ``code``: :func:`~._code.code_digest` of every custom column's function (or generator class),
  and of every plugin column's config and generator classes, every
  validation column's ``function`` and custom processor's ``function``, and of a plugin
  processor's config and processor classes and a plugin validator's class:
  its source, and the same-module helpers and constants it uses. Editing the function changes
  the fingerprint; a resume is then refused, saying ``custom function mymod:clean changed``.
* ``files``: the content hash of every input file a config field names: the seed's file(s)
  (:func:`input_files`; a file over 256 MiB by its size, first and last 8 MiB). A run adds a
  Hugging Face seed's identity (``seed.hf``: name, split, revision and the ``datasets``
  fingerprint of the cached data), which needs the dataset opened.

The basis is stored in ``metadata.json`` next to the fingerprint, so a refused resume can say
what changed, field by field (:mod:`trio_designer._sink._resume`).
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from ._code import code_digest, resolve_function
from ._columns import CustomColumn, PluginColumn, ValidationColumn
from ._plugin_processors import validator_plugin
from ._plugins import source_of
from ._processors import CustomProcessor

if TYPE_CHECKING:
    from ._pipeline import PipelineConfig

__all__ = ["config_fingerprint", "fingerprint_basis", "fingerprint_of", "input_files"]

#: Settings that change how fast or how patiently a run goes, never what it generates: they are
#: left out of the fingerprint, so a resumed run may retune them.
TUNING_RUN_FIELDS: Final = (
    "trace",
    "max_row_groups_in_flight",
    "max_submitted_tasks",
    "max_llm_wait_tasks",
    "salvage_max_rounds",
    "shutdown_error_rate",
    "shutdown_error_window",
    "non_llm_concurrency",
    "cache_dir",
    "max_cost",
    "max_tokens",
    "max_requests",
)
TUNING_MODEL_FIELDS: Final = ("max_parallel_requests", "timeout", "price")
#: Provider settings that change how requests travel, never what is generated.
TUNING_PROVIDER_FIELDS: Final = ("transport", "http2")


def fingerprint_basis(
    config: PipelineConfig, *, config_dict: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """What the fingerprint is the hash of (see the module docstring).

    Args:
      config: the pipeline.
      config_dict: ``config.to_dict(lenient=True)`` when the caller has it already (a run
        stores it in its record): used instead of a second conversion, and left unchanged.

    Raises:
      ConfigError: a custom column's import path does not resolve (its code cannot be
        identified, so neither can the run).
    """
    return {
        "config": _config_part(config, config_dict),
        "code": _code_part(config),
        "files": _files_part(config),
    }


def fingerprint_of(basis: dict[str, Any]) -> str:
    """``"sha256:<hex>"`` of a basis (canonical JSON: sorted keys, no whitespace)."""
    canonical = json.dumps(basis, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def config_fingerprint(config: PipelineConfig) -> str:
    """A stable identity of what the config generates: ``"sha256:<hex>"``.

    Covers the config (minus tuning settings), the code of every custom function and generator
    class, and the content of every input file (see the module docstring). Stable across
    processes and Python versions as long as the code's source is (bytecode, the fallback for
    functions without source, is specific to a Python version).

    Raises:
      ConfigError: a custom column's import path does not resolve.
    """
    return fingerprint_of(fingerprint_basis(config))


def _config_part(config: PipelineConfig, full: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The config without its tuning settings. ``full`` (``config.to_dict(lenient=True)``)
    is not changed: what is filtered is copied (shallow copies of the touched mappings)."""
    data = dict(config.to_dict(lenient=True) if full is None else full)
    data.pop("python_path", None)
    run = data.get("run")
    if isinstance(run, dict):
        run = {key: value for key, value in run.items() if key not in TUNING_RUN_FIELDS}
        if run:
            data["run"] = run
        else:
            del data["run"]
    for section, tuning in (("models", TUNING_MODEL_FIELDS), ("providers", TUNING_PROVIDER_FIELDS)):
        if section in data:
            data[section] = [_without(item, tuning) for item in data[section]]
    return data


def _without(item: Any, keys: tuple[str, ...]) -> Any:
    if not isinstance(item, dict):
        return item
    return {key: value for key, value in item.items() if key not in keys}


def _code_part(config: PipelineConfig) -> dict[str, str]:
    from ._converter import function_path, lenient_functions

    code: dict[str, str] = {}
    search = None
    for column in config.columns:
        if isinstance(column, PluginColumn):
            code.update(_plugin_code(type(column)))
        if isinstance(column, ValidationColumn):
            code.update(_code_of(validator_plugin(column.validator)))
    for processor in config.processors:
        if source_of(type(processor)) is not None:
            kind = type(processor)
            code.update(_code_of(kind, getattr(kind, "processor_class", None)))
    # Custom columns, validation columns' functions and custom processors: their code is
    # part of what a run generates.
    functions: list[tuple[str, str, Any]] = [
        (f"columns[{index}] {column.name!r}", column.name, column.function)
        for index, column in enumerate(config.columns)
        if isinstance(column, CustomColumn | ValidationColumn) and column.function is not None
    ]
    functions += [
        (f"processors[{index}]", processor.name or processor.kind, processor.function)
        for index, processor in enumerate(config.processors)
        if isinstance(processor, CustomProcessor)
    ]
    for where, name, function in functions:
        if isinstance(function, str):
            search = search or config.code_search()
            target = resolve_function(function, search, where=where)
            code[function] = code_digest(target)
        else:
            with lenient_functions(True):
                path = function_path(function, column=name)
            code[path] = _digest_of_callable(function)
    return code


def _plugin_code(cls: type[PluginColumn]) -> dict[str, str]:
    """The code of a plugin column: its config class and its generator class (each with the
    same-module helpers it uses), keyed ``module:Class``."""
    return {
        f"{target.__module__}:{target.__qualname__}": code_digest(target)
        for target in (cls, cls.generator_class)
        if isinstance(target, type)
    }


def _code_of(*targets: Any) -> dict[str, str]:
    """The code of a plugin processor's or validator's classes (or functions), keyed
    ``module:name``; ``None`` targets are skipped (a validator no plugin provides)."""
    return {
        f"{target.__module__}:{target.__qualname__}": code_digest(target)
        for target in targets
        if inspect.isclass(target) or inspect.isfunction(target)
    }


def _digest_of_callable(function: Any) -> str:
    if isinstance(function, functools.partial):
        inner = _digest_of_callable(function.func)
        extra = repr((function.args, sorted(function.keywords.items())))
        return "sha256:" + hashlib.sha256(f"{inner}|{extra}".encode()).hexdigest()
    if inspect.isfunction(function) or inspect.isclass(function):
        return code_digest(function)
    method = getattr(function, "__func__", None)  # a bound method
    if inspect.isfunction(method):
        return code_digest(method)
    return code_digest(type(function))  # a callable object: its class's code


def input_files(config: PipelineConfig) -> dict[str, Path]:
    """Config path -> file, for every input file a config field names: the seed's file, or
    each file of a seed folder (``seed.path/part-0.parquet``), skipping names that start with
    ``.`` or ``_`` as ``pyarrow.dataset`` does. Files that do not exist are left out (opening
    the seed reports them)."""
    seed = config.seed
    path = None if seed is None else seed.location(config.source_folder())
    if path is None:
        return {}
    if path.is_file():
        return {"seed.path": path}
    if not path.is_dir():
        return {}
    return {
        f"seed.path/{file.relative_to(path).as_posix()}": file
        for file in sorted(path.rglob("*"))
        if file.is_file()
        and not any(part.startswith((".", "_")) for part in file.relative_to(path).parts)
    }


#: Files up to this size are hashed whole; larger ones by their size, first and last
#: :data:`SAMPLED_BYTES` (a parquet file's footer, with every row group's statistics, is in
#: its last bytes), so that resuming a run over a 10 GB seed does not read 10 GB first.
WHOLE_HASH_LIMIT: Final = 256 << 20
SAMPLED_BYTES: Final = 8 << 20


def _files_part(config: PipelineConfig) -> dict[str, str]:
    return {where: file_digest(path) for where, path in input_files(config).items()}


def file_digest(path: Path) -> str:
    """``sha256:<hex>`` of the file (see :data:`WHOLE_HASH_LIMIT`; larger files give
    ``sampled-sha256:<hex>``)."""
    size = path.stat().st_size
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        if size <= WHOLE_HASH_LIMIT:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
            return "sha256:" + digest.hexdigest()
        digest.update(f"{size}\x00".encode())
        digest.update(stream.read(SAMPLED_BYTES))
        stream.seek(size - SAMPLED_BYTES)
        digest.update(stream.read(SAMPLED_BYTES))
    return "sampled-sha256:" + digest.hexdigest()
