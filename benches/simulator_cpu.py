"""The simulator's own CPU cost per request: ``python -m benches.simulator_cpu [--requests N]``.

Starts ``python -m trio_designer.simulator`` in its own process (zero latency), sends it
``--requests`` chat completions from this process (httpx on trio, ``--concurrency`` at once),
and reads the *server process's* CPU time (user + system, from ``/proc/PID/stat``) before and
after, so the figure is the simulator's cost alone: hypercorn, h11, our ASGI app and the answer.
A warm-up of 200 requests runs first and is not counted (imports, first connections).

Run it before and after a change to the simulator: the hot path must not get slower, because
every bench's client-side figures share the machine with it. Linux only (``/proc``).

Prints one line per scenario: µs of server CPU per request, and requests/s seen by the client
(bounded by this client process, not by the server).
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


def measure(spec: str, requests: int, concurrency: int) -> tuple[float, float]:
    """(server µs of CPU per request, client-seen requests/s) for one ``--model`` spec."""
    command = [sys.executable, "-m", "trio_designer.simulator", "--port", "0", "--model", spec]
    process = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benches.simulator_cpu")
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), action="append")
    args = parser.parse_args(argv)
    for name in args.scenario or list(SCENARIOS):
        per_request, rate = measure(SCENARIOS[name], args.requests, args.concurrency)
        print(
            f"{name:8s} {args.requests} requests, {args.concurrency} concurrent: "
            f"{per_request:6.0f} µs server CPU/request, {rate:5.0f} requests/s",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
