"""Loading a pipeline config from the command line: YAML, JSON, or a Python file.

A Python config file is imported as a module and must expose either ``config`` (a
:class:`~trio_designer.config.PipelineConfig`) or ``build_config()`` returning one::

    # pipeline.py
    from trio_designer import PipelineBuilder, ModelConfig

    def build_config():
        return PipelineBuilder().add_model(...).add_column(...).build()

Before loading, the config file's directory and the current directory are put at the front of
``sys.path``, so a YAML file's ``function: "my_columns:word_count"`` and a Python file's own
imports find modules that sit next to the config (the same with ``trio-designer`` as with
``python -m trio_designer``).
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import attrs

from .._exceptions import ConfigError
from ..config import PipelineConfig
from ._format import remember_secret_env

SUFFIXES = (".yaml", ".yml", ".json", ".py")
"""Config file suffixes the CLI reads."""


def load_config(path: str | os.PathLike[str]) -> PipelineConfig:
    """Read a pipeline config from a ``.yaml``/``.yml``/``.json`` or ``.py`` file.

    Raises:
      ConfigError: unknown suffix, missing or unreadable file, a Python file that fails to
        import or exposes no config, or any problem of :meth:`PipelineConfig.from_file`.
    """
    file = Path(path)
    suffix = file.suffix.lower()
    if suffix not in SUFFIXES:
        raise ConfigError(
            f"cannot tell the format of {str(file)!r}: use a .yaml, .yml, .json or .py file"
        )
    if not file.is_file():
        raise ConfigError(f"cannot read config file {str(file)!r}: no such file")
    if suffix == ".py":
        config = _load_python(file)
    else:
        _extend_import_path(file)
        config = PipelineConfig.from_file(file)
    remember_secret_env(provider.api_key_env for provider in config.providers)
    return config


def with_overrides(
    config: PipelineConfig, *, seed: int | None = None, trace: bool = False
) -> PipelineConfig:
    """``config`` with the command line's run overrides applied (``--seed``, ``--trace``)."""
    run = config.run
    if seed is not None:
        run = attrs.evolve(run, seed=seed)
    if trace:
        run = attrs.evolve(run, trace=True)
    return config if run is config.run else attrs.evolve(config, run=run)


def _extend_import_path(file: Path) -> None:
    for folder in (os.getcwd(), str(file.resolve().parent)):
        if folder not in sys.path:
            sys.path.insert(0, folder)


def _load_python(file: Path) -> PipelineConfig:
    name = module_name(file)  # before extending sys.path: the file must not find itself
    _extend_import_path(file)
    module = _import_file(file, name)
    where = str(file)
    if hasattr(module, "config"):
        config: Any = module.config
        source = "'config'"
    elif callable(getattr(module, "build_config", None)):
        config = _call_builder(module, where)
        source = "build_config()"
    else:
        raise ConfigError(
            f"{where}: defines neither 'config' (a PipelineConfig) nor 'build_config()'; "
            "add one of them"
        )
    if not isinstance(config, PipelineConfig):
        raise ConfigError(
            f"{where}: {source} is a {type(config).__name__}, not a PipelineConfig; build it "
            "with PipelineBuilder().build() or PipelineConfig.from_file(...)"
        )
    return config


def _call_builder(module: ModuleType, where: str) -> Any:
    try:
        return module.build_config()
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(
            f"{where}: build_config() raised {type(exc).__name__}: {exc} (rerun with --debug "
            "for the traceback)"
        ) from exc


def _import_file(file: Path, name: str) -> ModuleType:
    """Import ``file`` as the module ``name``, registered in ``sys.modules``."""
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:  # pragma: no cover - .py files always get a spec
        raise ConfigError(f"cannot import config file {str(file)!r}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except ConfigError:
        raise
    except Exception as exc:
        del sys.modules[name]
        raise ConfigError(
            f"{file}: importing the config file failed with {type(exc).__name__}: {exc} "
            "(rerun with --debug for the traceback)"
        ) from exc
    return module


def module_name(file: Path) -> str:
    """The module name a Python config file is imported under.

    Its stem (``pipeline.py`` → ``pipeline``) when that names no other module, so custom
    functions defined in it are recorded as ``pipeline:function`` — the same in every process,
    which keeps the config fingerprint (and ``--resume``) stable. Otherwise (a stem such as
    ``json`` or ``my-config``) a private name that cannot shadow anything.
    """
    stem = file.stem
    resolved = file.resolve()
    if stem.isidentifier() and stem not in sys.modules:
        try:
            spec = importlib.util.find_spec(stem)
        except (ImportError, ValueError):
            spec = None
        if spec is None or (spec.origin is not None and Path(spec.origin).resolve() == resolved):
            return stem
    return "_trio_designer_config_" + re.sub(r"\W", "_", stem)
