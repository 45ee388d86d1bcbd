"""Loading a pipeline config from the command line: YAML, JSON, or a Python file.

A Python config file is imported as a module and must expose either ``config`` (a
:class:`~trio_designer.config.PipelineConfig`) or ``build_config()`` returning one::

    # pipeline.py
    from trio_designer import PipelineBuilder, ModelConfig

    def build_config():
        return PipelineBuilder().add_model(...).add_column(...).build()

Nothing is imported implicitly from the config's directory or the current directory: a YAML
file's ``function: "my_columns:word_count"`` finds ``my_columns.py`` next to the config only
when the config says ``python_path: .`` (or the command line passes ``--python-path DIR``), and
a Python config's own imports see the installed environment plus the ``--python-path``
directories (see ``trio_designer/config/_code.py`` and ``docs/security.md``).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import attrs

from .._exceptions import ConfigError
from ..config import PipelineConfig
from ._format import remember_secret_env

SUFFIXES = (".yaml", ".yml", ".json", ".py")
"""Config file suffixes the CLI reads."""


def load_config(path: str | os.PathLike[str], *, python_path: Sequence[str] = ()) -> PipelineConfig:
    """Read a pipeline config from a ``.yaml``/``.yml``/``.json`` or ``.py`` file.

    Args:
      path: the config file.
      python_path: ``--python-path`` directories (relative to the current directory): added
        to the config's own ``python_path``, and importable by a Python config file.

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
    if file.is_dir():
        raise ConfigError(
            f"cannot read config file {str(file)!r}: it is a directory; name the config file"
        )
    if not file.is_file():
        raise ConfigError(f"cannot read config file {str(file)!r}: no such file")
    extra = tuple(str(Path(entry).expanduser().resolve()) for entry in python_path)
    for entry, folder in zip(python_path, extra, strict=True):
        if not Path(folder).is_dir():
            raise ConfigError(
                f"--python-path {entry!r}: no such directory ({folder}); name a directory "
                "holding your modules"
            )
    if suffix == ".py":
        config = _load_python(file, extra)
    else:
        config = PipelineConfig.from_file(file)
    remember_secret_env(provider.api_key_env for provider in config.providers)
    return attrs.evolve(config, source=file, python_path=(*config.python_path, *extra))


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


def _load_python(file: Path, python_path: Sequence[str]) -> PipelineConfig:
    name = module_name(file)
    for folder in reversed(python_path):  # the user named them: the config may import from them
        if folder not in sys.path:
            sys.path.insert(0, folder)
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
            f"{file}: importing the config file failed with {type(exc).__name__}: {exc}"
            f"{_beside_hint(exc, file)} (rerun with --debug for the traceback)"
        ) from exc
    return module


def _beside_hint(exc: Exception, file: Path) -> str:
    """For a module that is missing but lies next to the config: how to allow it."""
    missing = getattr(exc, "name", None) if isinstance(exc, ModuleNotFoundError) else None
    if not missing:
        return ""
    top = missing.partition(".")[0]
    folder = file.resolve().parent
    if (folder / f"{top}.py").is_file() or (folder / top / "__init__.py").is_file():
        return (
            f"; {top!r} lies beside the config file, but modules are never imported from the "
            f"config's directory implicitly: pass --python-path {shlex.quote(str(file.parent))} "
            "if you trust that code"
        )
    return ""


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
