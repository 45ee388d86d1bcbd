"""The child process of a local sharded run: ``python -m trio_designer._scaleout._child``.

Reads one pickled job from stdin (the config and the shard's coordinates), runs
:func:`~._shard.run_shard_async`, and reports on stdout, one JSON object a line:

* ``{"started": <pid>}`` first;
* ``{"row_group": <id>, "rows": <surviving rows>}`` after each row group is written;
* ``{"limit": <new limit>, "endpoint": ..., "at": <unix time>}`` when an adaptive limit moves;
* ``{"manifest": {...}, "cpu": [<start-up>, <total>]}`` last, when the shard ended (complete
  or not): ``cpu`` is the process's CPU seconds (``time.process_time``) when the shard's run
  began (interpreter start, imports, the job) and at its end (benchmarks read it).

SIGINT and SIGTERM interrupt the shard cleanly (finished row groups kept, the shard's record
says ``interrupted``); the exit status is then 130 / 143, 0 after a complete shard, 1 when the
shard ended otherwise, 2 for a config or output-directory error (the message on stderr).
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import sys
import time
from collections.abc import Mapping
from typing import Any

import trio

from .._designer import TrioDesigner
from .._exceptions import ConfigError, RunInterrupted, SinkError, TrioDesignerError
from ._shard import run_shard_async

_SIGNAL_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}


def _say(obj: Mapping[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def report_for(name: str, fields: Mapping[str, Any]) -> dict[str, Any] | None:
    """The report of a scheduler event a shard passes on to its driver, if any (this
    protocol, shared with the Ray tasks of ``_ray``)."""
    if name == "row_group_checkpointed":
        return {"row_group": fields["row_group"], "rows": fields["rows"]}
    if name == "limit_change":
        return {"limit": fields["new"], "endpoint": fields["endpoint"], "at": time.time()}
    return None


def _on_event(name: str, fields: Mapping[str, Any]) -> None:
    report = report_for(name, fields)
    if report is not None:
        _say(report)


async def _main(job: Mapping[str, Any]) -> int:
    startup_cpu = time.process_time()
    designer = TrioDesigner(on_event=_on_event, limiter_factory=job.get("limiter_factory"))
    stopped: list[signal.Signals] = []
    async with trio.open_nursery() as nursery:
        with trio.open_signal_receiver(*_SIGNAL_EXIT) as signals:

            async def watch() -> None:
                async for signum in signals:
                    stopped.append(signal.Signals(signum))
                    designer.interrupt(signal.Signals(signum).name)

            nursery.start_soon(watch)
            try:
                manifest = await run_shard_async(
                    job["config"],
                    shard=job["shard"],
                    num_shards=job["num_shards"],
                    num_records=job["num_records"],
                    output_dir=job["output_dir"],
                    share_limits=job.get("share_limits", True),
                    designer=designer,
                    limit_slot=job.get("limit_slot"),
                )
            except RunInterrupted:
                nursery.cancel_scope.cancel()
                return _SIGNAL_EXIT[stopped[0]] if stopped else 130
            nursery.cancel_scope.cancel()
    _say({"manifest": manifest.to_json_dict(), "cpu": [startup_cpu, time.process_time()]})
    return 0 if manifest.status == "complete" else 1


def main() -> int:
    job = pickle.loads(sys.stdin.buffer.read())  # our own parent wrote it
    _say({"started": os.getpid()})
    try:
        return trio.run(_main, job)
    except (ConfigError, SinkError) as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    except TrioDesignerError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
