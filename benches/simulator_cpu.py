"""The simulator's own CPU cost per request: ``python -m benches.simulator_cpu [--requests N]``.

Two figures per scenario, each from a separate process:

* **served**: ``python -m trio_designer.simulator`` in its own process (zero latency) receives
  ``--requests`` chat completions from this process (httpx on trio, ``--concurrency`` at once);
  the *server process's* CPU time (user + system, from ``/proc/PID/stat``) is read before and
  after, so the figure is the simulator's whole cost: hypercorn, h11, our ASGI app, the answer.
  A warm-up of 200 requests is not counted (imports, first connections). Noisy on a shared
  machine: compare runs taken side by side.
* **app**: our ASGI app alone, called directly with in-memory ``receive``/``send`` (no
  sockets, no hypercorn), ``--requests`` times in one ``trio.run``: the part of the cost a
  change to the simulator's own code moves, measured with ``time.process_time``.

Run it before and after a change to the simulator (``--source DIR`` points at another checkout's
root, e.g. ``git archive main trio_designer | tar -x -C /tmp/before``): the hot path must not get
slower, because every bench's client-side figures share the machine with it. Linux only.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import trio

ROOT = Path(__file__).resolve().parent.parent
WARM_UP = 200

SCENARIOS: dict[str, str] = {
    "plain": "m:latency=0,capacity=100000",
    "budgets": "m:latency=0,capacity=100000,rpm=100000000,tpm=1000000000",
}


def server_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return ticks / os.sysconf("SC_CLK_TCK")


async def drive(url: str, requests: int, concurrency: int) -> None:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "Write a sentence about owls and bats."}],
        "max_tokens": 200,
    }
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        left = requests

        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                (await client.post("/chat/completions", json=body)).raise_for_status()

        async with trio.open_nursery() as nursery:
            for _ in range(concurrency):
                nursery.start_soon(worker)


def measure(spec: str, requests: int, concurrency: int, source: Path) -> tuple[float, float]:
    """(server µs of CPU per request, client-seen requests/s) for one ``--model`` spec."""
    command = [sys.executable, "-m", "trio_designer.simulator", "--port", "0", "--model", spec]
    process = subprocess.Popen(
        command,
        cwd=source,
        env={**os.environ, "PYTHONPATH": str(source)},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        trio.run(drive, url, WARM_UP, concurrency)
        cpu_before, wall_before = server_cpu_seconds(process.pid), time.perf_counter()
        trio.run(drive, url, requests, concurrency)
        cpu = server_cpu_seconds(process.pid) - cpu_before
        wall = time.perf_counter() - wall_before
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
    return cpu / requests * 1e6, requests / wall


APP_ONLY = """
import json, sys, time, trio
from trio_designer.simulator._app import SimulatorApp
from trio_designer.simulator import parse_model_spec

async def main(spec, requests):
    app = SimulatorApp([parse_model_spec(spec)])
    body = json.dumps({
        "model": "m",
        "messages": [{"role": "user", "content": "Write a sentence about owls and bats."}],
        "max_tokens": 200,
    }).encode()
    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions",
             "headers": [(b"content-type", b"application/json")]}
    sent = []

    async def receive_body():
        return {"type": "http.request", "body": body, "more_body": False}

    async def receive_nothing_more():  # the client stays connected
        await trio.sleep_forever()

    async def send(message):
        sent.append(message)

    start = time.process_time()
    for _ in range(requests):
        reads = iter([receive_body, receive_nothing_more])
        await app(scope, lambda: next(reads)(), send)
    assert sent[-2]["status"] == 200, sent[-2]
    return (time.process_time() - start) / requests * 1e6

print(trio.run(main, sys.argv[1], int(sys.argv[2])))
"""


def measure_app(spec: str, requests: int, source: Path) -> float:
    """µs of CPU per request of the ASGI app alone (run in a process importing ``source``)."""
    output = subprocess.run(
        [sys.executable, "-c", APP_ONLY, spec, str(requests)],
        cwd=source,
        env={**os.environ, "PYTHONPATH": str(source)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return float(output.strip())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benches.simulator_cpu")
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), action="append")
    parser.add_argument(
        "--source", type=Path, default=ROOT, help="the checkout whose simulator to measure"
    )
    parser.add_argument("--app-only", action="store_true", help="skip the served figure")
    args = parser.parse_args(argv)
    for name in args.scenario or list(SCENARIOS):
        app = measure_app(SCENARIOS[name], args.requests, args.source)
        line = f"{name:8s} {args.requests} requests: app {app:5.0f} µs CPU/request"
        if not args.app_only:
            served, rate = measure(SCENARIOS[name], args.requests, args.concurrency, args.source)
            line += (
                f"; served ({args.concurrency} concurrent) {served:5.0f} µs CPU/request,"
                f" {rate:4.0f} requests/s"
            )
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
