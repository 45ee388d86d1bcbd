"""The identity of what a config generates: its fingerprint, and what the fingerprint covers.

A run resumes only with the same fingerprint, so the fingerprint must change whenever the
values a run would write could change. It is the SHA-256 of canonical JSON of a *basis*::

    {
      "config": {...},                       # the config (what it generates, see below)
      "code":   {"mymod:clean": "sha256:..."},   # each custom function / generator class
      "files":  {}                           # each input file the config reads (none today)
    }

* ``config``: :meth:`PipelineConfig.to_dict` with lenient function names, leaving out what only
  tunes speed or patience (``run.trace``, concurrency limits, salvage and shutdown settings,
  each model's ``max_parallel_requests`` and ``timeout``, each provider's ``transport`` and
  ``http2``) and where code is found (``python_path``): a resumed run may change those.
  Defaults are omitted, so spelling a default out changes nothing.
* ``code``: :func:`~._code.code_digest` of every custom column's function (or generator class),
  validation column's ``function`` and custom processor's ``function``:
  its source, and the same-module helpers and constants it uses. Editing the function changes
  the fingerprint; a resume is then refused, saying ``custom function mymod:clean changed``.
* ``files``: the content hash of every input file a config field names. No field reads a file
  yet; a field that does must add its files here (:func:`input_files`).

The basis is stored in ``metadata.json`` next to the fingerprint, so a refused resume can say
what changed, field by field (:mod:`trio_designer._sink._resume`).
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from ._code import code_digest, resolve_function
from ._columns import CustomColumn, ValidationColumn
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
)
TUNING_MODEL_FIELDS: Final = ("max_parallel_requests", "timeout")
#: Provider settings that change how requests travel, never what is generated.
TUNING_PROVIDER_FIELDS: Final = ("transport", "http2")


def fingerprint_basis(config: PipelineConfig) -> dict[str, Any]:
    """What the fingerprint is the hash of (see the module docstring).

    Raises:
      ConfigError: a custom column's import path does not resolve (its code cannot be
        identified, so neither can the run).
    """
    return {
        "config": _config_part(config),
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


def _config_part(config: PipelineConfig) -> dict[str, Any]:
    data = config.to_dict(lenient=True)
    data.pop("python_path", None)
    run = data.get("run")
    if isinstance(run, dict):
        for key in TUNING_RUN_FIELDS:
            run.pop(key, None)
        if not run:
            del data["run"]
    for model in data.get("models", ()):
        if isinstance(model, dict):
            for key in TUNING_MODEL_FIELDS:
                model.pop(key, None)
    for provider in data.get("providers", ()):
        if isinstance(provider, dict):
            for key in TUNING_PROVIDER_FIELDS:
                provider.pop(key, None)
    return data


def _code_part(config: PipelineConfig) -> dict[str, str]:
    from ._converter import function_path, lenient_functions

    code: dict[str, str] = {}
    search = None
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
    """Config path -> file, for every input file a config field names (none yet)."""
    del config
    return {}


def _files_part(config: PipelineConfig) -> dict[str, str]:
    files: dict[str, str] = {}
    for where, path in input_files(config).items():
        digest = hashlib.sha256()
        with path.open("rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
        files[where] = "sha256:" + digest.hexdigest()
    return files
