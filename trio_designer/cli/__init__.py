"""The command line: ``trio-designer`` (also ``python -m trio_designer``).

Commands: ``run``, ``preview``, ``validate``, ``check``, ``simulate``, ``inspect``, ``trace``,
``cache``, ``plugins``, ``export`` — see
``docs/cli.md`` or ``trio-designer --help``. Each command is a function of the parsed
arguments returning the exit status; :func:`main` turns errors into one readable line on
stderr (with the traceback only under ``--debug``) and an exit status:

* 0: success (a run that dropped rows still succeeds; the summary counts them);
* 1: a run stopped by the error-rate gate (``early_shutdown``) or by a provider that cannot
  work (:class:`~trio_designer.ProviderError`: a runtime failure, the config may be fine), a
  ``check`` that did not pass, or an unexpected error;
* 2: usage or configuration error (:class:`~trio_designer.ConfigError`), an unusable output
  directory (:class:`~trio_designer.SinkError`), a missing optional dependency;
* 130: interrupted by Ctrl-C, 143: by SIGTERM (finished row groups are kept; ``--resume``
  continues).

Library messages speak Python (``resume=True``); :func:`._errors.in_flags` tells them here in
flags (``--resume``).

Nothing else in the package imports this module.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import traceback
from collections.abc import Callable, Sequence

from .._exceptions import ConfigError, MissingDependencyError, SinkError, TrioDesignerError
from ._errors import CommandError, in_flags
from ._format import Redactor, config_error_text

__all__ = ["main"]

DEFAULT_PROG = "trio-designer"

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """Run one ``trio-designer`` command and return its exit status.

    Args:
      argv: the arguments after the program name (default: ``sys.argv[1:]``).
      prog: the program name shown in help and hints (default ``trio-designer``).

    Returns:
      The exit status (see the module docstring); never raises for a failed command.
    """
    arguments = list(sys.argv[1:] if argv is None else argv)
    prog = prog or DEFAULT_PROG
    simulator_args = _simulate_arguments(arguments)
    if simulator_args is not None:
        return _simulate(simulator_args)
    from ._parser import build_parser

    parser = build_parser(prog, _handlers())
    try:
        args = parser.parse_args(arguments)
    except SystemExit as exc:  # --help, or a usage error argparse has already printed
        return _exit_status(exc.code)
    args.prog = prog
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        with _plugins_switch(args):
            return handler(args)
    except BrokenPipeError:  # the reader went away (``... | head``): stop quietly
        _silence_stdout()
        return EXIT_OK
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BaseExceptionGroup as group:  # raised through a nursery: report what is inside
        return _report(_leaf(group), group, args)
    except Exception as exc:
        return _report(exc, exc, args)


def _plugins_switch(args: argparse.Namespace) -> contextlib.AbstractContextManager[None]:
    """``--no-plugins``: no plugin is discovered while the command runs."""
    if not getattr(args, "no_plugins", False):
        return contextlib.nullcontext()
    from ..config._plugins import plugins_disabled

    return plugins_disabled()


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def _handlers() -> dict[str, Callable[[argparse.Namespace], int]]:
    from ._cache import cmd_cache
    from ._check import cmd_check
    from ._export import cmd_export
    from ._inspect import cmd_inspect
    from ._plugins import cmd_plugins
    from ._run import cmd_preview, cmd_run
    from ._trace import cmd_trace
    from ._validate import cmd_validate

    return {
        "run": cmd_run,
        "preview": cmd_preview,
        "validate": cmd_validate,
        "check": cmd_check,
        "inspect": cmd_inspect,
        "trace": cmd_trace,
        "cache": cmd_cache,
        "plugins": cmd_plugins,
        "export": cmd_export,
    }


def _report(exc: BaseException, raised: BaseException, args: argparse.Namespace) -> int:
    """Print one readable ``error:`` message (after the traceback, with ``--debug``).

    Both pass through the redactor: no secret reaches the terminal, not even in a traceback.
    """
    if isinstance(exc, KeyboardInterrupt):
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    debug = getattr(args, "debug", False)
    redact = Redactor()
    if debug:
        print(redact("".join(traceback.format_exception(raised))), file=sys.stderr, end="")
    if isinstance(exc, CommandError):
        status = exc.exit_code
        message = str(exc)
    elif isinstance(exc, ConfigError):
        source = exc.source or getattr(args, "config", None)
        status, message = EXIT_USAGE, in_flags(config_error_text(exc.problems, source))
    elif isinstance(exc, SinkError | MissingDependencyError):
        status, message = EXIT_USAGE, in_flags(str(exc))
    elif isinstance(exc, TrioDesignerError):
        status, message = EXIT_FAILURE, in_flags(str(exc))
    else:
        status = EXIT_FAILURE
        message = f"unexpected {type(exc).__name__}: {exc}"
        if not debug:
            message += " (rerun with --debug for the traceback)"
    print(f"error: {redact(message)}", file=sys.stderr, flush=True)
    return status


def _leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The exception worth reporting inside a (nested) group: an interrupt first, then our
    own errors, then anything."""
    leaves = list(_leaves(group))
    for kind in (KeyboardInterrupt, TrioDesignerError, CommandError):
        for leaf in leaves:
            if isinstance(leaf, kind):
                return leaf
    return leaves[0] if leaves else group


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _exit_status(code: object) -> int:
    if code is None:
        return EXIT_OK
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return EXIT_USAGE


def _simulate_arguments(arguments: list[str]) -> list[str] | None:
    """The arguments after ``simulate`` when that is the command (its options are the
    simulator's own, passed through untouched), else ``None``."""
    for index, argument in enumerate(arguments):
        if argument.startswith("-"):
            if argument in ("-h", "--help"):
                return None
            continue
        return arguments[index + 1 :] if argument == "simulate" else None
    return None


def _simulate(arguments: list[str]) -> int:
    from ..simulator.__main__ import main as simulator_main

    try:
        return simulator_main(arguments)
    except SystemExit as exc:
        return _exit_status(exc.code)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
