"""``python -m trio_designer.simulator``: serve simulated models until Ctrl-C.

Examples::

    python -m trio_designer.simulator --port 8000 \\
        --model gen:latency=0.5,sigma=0.3,capacity=16,mode=gpu \\
        --model judge:latency=0.2,rpm=600,rate_429=0.05
    python -m trio_designer.simulator --profile sim.yaml
    SIM_KEY=secret python -m trio_designer.simulator --api-key-env SIM_KEY
    python -m trio_designer.simulator --canned gen --canned "judge=Yes."

``--canned NAME[=TEXT]`` serves the canned endpoint instead (``_canned.py``): every chat
completion answered at once with a fixed text per model, at a small fraction of the full
simulator's CPU per request; for benchmarks of the client alone. It cannot be combined with
``--model``, ``--profile`` or ``--api-key-env``.

The first line printed on stdout is the OpenAI base URL (``http://HOST:PORT/v1``), so scripts
can start it with ``--port 0`` and read the port. SIGINT (Ctrl-C) or SIGTERM stops the server;
the exit code is then 0. Invalid options exit with code 2 and a message naming the problem.

The API key is read from an environment variable, never from the command line (where every
user of the machine could read it in the process list), and it is never printed.
"""

from __future__ import annotations

import argparse
import gc
import os
import signal
import sys
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING

import trio

from .._exceptions import ConfigError, MissingDependencyError
from ._clock import PunctualClock
from ._models import SimulatedModel
from ._profile import duplicate_name_problems, parse_model_spec, read_profile
from ._server import Simulator, serve_simulator

if TYPE_CHECKING:
    from ._canned import CannedEndpoint, CannedModel

DEFAULT_MODEL = "simulated"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trio_designer.simulator",
        description="Serve simulated OpenAI-compatible models (see docs/simulator.md).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (0 = any free port)")
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="NAME:key=value,...",
        help="a model, e.g. gen:latency=0.5,sigma=0.3,capacity=16,mode=gpu,rate_429=0.05 "
        "(repeatable)",
    )
    parser.add_argument("--profile", help="a YAML profile with a 'models' list")
    parser.add_argument(
        "--api-key-env",
        metavar="VAR",
        help="require 'Authorization: Bearer <key>', the key being this environment "
        "variable's value (overrides the profile's api_key_env)",
    )
    parser.add_argument(
        "--canned",
        action="append",
        default=[],
        metavar="NAME[=TEXT]",
        help="serve the canned endpoint: every chat completion of model NAME answered at "
        "once with TEXT (default 'A canned answer from NAME.'); repeatable; for benchmarks "
        "of the client alone (see docs/simulator.md)",
    )
    return parser


async def serve_canned_until_signal(models: Sequence[CannedModel], host: str, port: int) -> None:
    """Serve the canned endpoint, print the URL, and return on SIGINT or SIGTERM."""
    from ._canned import serve_canned

    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            endpoint: CannedEndpoint = await nursery.start(
                partial(serve_canned, models, host=host, port=port)
            )
            settle_the_heap()
            print(endpoint.url, flush=True)
            names = ", ".join(m.name for m in models)
            print(f"serving canned {names}; Ctrl-C to stop", file=sys.stderr, flush=True)
            async for _ in signals:
                break
            nursery.cancel_scope.cancel()


def settle_the_heap() -> None:
    """Once the server is up: collect the start-up garbage, then freeze what is left (the
    imported modules, the models, the app) out of the cyclic collector's sight
    (``gc.freeze``). A full collection during a run then walks only what the runs made: over
    the whole start-up heap it took 20-70 ms, and every answer due meanwhile left that much
    late. Only this standalone process does it; the embedded simulator lives in its
    caller's process and leaves that process's collector alone."""
    gc.collect()
    gc.freeze()


def models_from_args(args: argparse.Namespace) -> list[SimulatedModel]:
    """The models named by ``--profile`` and ``--model`` (a default model if neither).

    Raises:
      ConfigError: any model is invalid, or two share a name.
    """
    models = list(read_profile(args.profile).models) if args.profile else []
    models += [parse_model_spec(spec) for spec in args.model]
    if not models:
        models = [SimulatedModel(name=DEFAULT_MODEL)]
    problems = duplicate_name_problems(models)
    if problems:
        raise ConfigError(problems)
    return models


def api_key_from_args(args: argparse.Namespace) -> str | None:
    """The API key named by ``--api-key-env`` (or the profile's ``api_key_env``), or None.

    Raises:
      ConfigError: the variable is not set or empty (its value is never shown).
    """
    variable = args.api_key_env or (
        read_profile(args.profile).api_key_env if args.profile else None
    )
    if variable is None:
        return None
    key = os.environ.get(variable, "").strip()
    if not key:
        raise ConfigError(
            f"the API key variable {variable} is not set or empty; export it, or drop "
            "--api-key-env / api_key_env to accept every request"
        )
    return key


async def serve_until_signal(
    models: Sequence[SimulatedModel], host: str, port: int, api_key: str | None = None
) -> None:
    """Serve, print the URL, and return on SIGINT or SIGTERM."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            simulator: Simulator = await nursery.start(
                partial(serve_simulator, models, host=host, port=port, api_key=api_key)
            )
            settle_the_heap()
            print(simulator.url, flush=True)
            names = ", ".join(m.name for m in models)
            auth = "; API key required" if api_key is not None else ""
            print(f"serving {names}{auth}; Ctrl-C to stop", file=sys.stderr, flush=True)
            async for _ in signals:
                break
            nursery.cancel_scope.cancel()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.canned:
        if args.model or args.profile or args.api_key_env:
            parser.exit(
                2,
                f"{parser.prog}: error: --canned cannot be combined with --model, "
                "--profile or --api-key-env\n",
            )
        try:
            from ._canned import canned_models, parse_canned_spec

            canned = canned_models([parse_canned_spec(spec) for spec in args.canned])
        except (ConfigError, MissingDependencyError) as exc:
            parser.exit(2, f"{parser.prog}: error: {exc}\n")
        try:
            trio.run(
                serve_canned_until_signal, canned, args.host, args.port, clock=PunctualClock()
            )
        except OSError as exc:
            parser.exit(
                1, f"{parser.prog}: error: cannot serve on {args.host}:{args.port}: {exc}\n"
            )
        return 0
    try:
        models = models_from_args(args)
        api_key = api_key_from_args(args)
    except (ConfigError, OSError) as exc:
        parser.exit(2, f"{parser.prog}: error: {exc}\n")
    try:
        trio.run(serve_until_signal, models, args.host, args.port, api_key, clock=PunctualClock())
    except OSError as exc:
        parser.exit(1, f"{parser.prog}: error: cannot serve on {args.host}:{args.port}: {exc}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
