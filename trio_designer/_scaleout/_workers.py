"""A sharded run on this machine: each shard in a child process, driven from trio.

:func:`run_workers` runs ``num_shards`` shards (default: one per worker), at most ``workers``
at a time, each as ``python -m trio_designer._scaleout._child`` (a fresh interpreter per shard:
a crash of one shard takes nothing else down, and the standard library's process pool would
mark itself broken on the first dead worker). Each child reports its finished row groups on a
pipe; :class:`MergedProgress` turns the reports of all shards into one progress display.

Failure semantics:

* a child that dies (a signal, an ``exit`` without its final report) is started again, up to
  ``retries`` times; the new child resumes the shard from its finished row groups;
* a shard that ends without crashing but incomplete (``early_shutdown``: its error-rate gate
  tripped) is not retried: running it again would fail again;
* a config or output-directory error in a child (exit status 2) stops the run with that
  message;
* a child stopped cleanly by SIGINT or SIGTERM (exit status 130 / 143: a Ctrl-C in the
  terminal reaches every process of its group) is not started again: the run is incomplete
  and the next call resumes it;
* cancelling :func:`run_workers` (Ctrl-C, SIGTERM on the command line) sends SIGTERM to every
  child and waits for them to drain: each keeps its finished row groups, and the same call
  resumes every shard.

When every shard is complete, the shards are merged (:func:`~._merge.merge`).
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

import attrs
import trio

from .._core._shares import shard_row_groups
from .._exceptions import ConfigError, SinkError, TrioDesignerError
from .._sink._layout import shard_dir
from ..config import PipelineConfig
from ._merge import MergeResult, merge
from ._shard import ShardManifest, _read_json

__all__ = ["MergedProgress", "ShardedRunResult", "run_workers"]

logger = logging.getLogger("trio_designer.scaleout")

#: How long children get to drain after SIGTERM before they are killed.
DRAIN_SECONDS = 60.0


@attrs.frozen(kw_only=True)
class ShardedRunResult:
    """What a sharded run produced.

    Attributes:
      status: ``complete`` (every shard complete, merged) or ``incomplete`` (a shard ended
        early: its error-rate gate tripped, or it failed too often; not merged).
      output_dir: the run's output directory.
      manifests: the last manifest of each shard, by index (``None``: no report).
      attempts: processes started per shard (1 when no shard crashed).
      merged: the merge, when the run was complete.
      elapsed: wall seconds.
      limits: every adaptive-limit change of every shard: ``(seconds since the start, shard,
        endpoint, new limit)``.
      finished: every row group this call wrote: ``(seconds since the start, shard, row
        group)``.
      child_cpu: each shard's last child process's CPU seconds, ``(start-up, total)``:
        start-up is what it used before the shard's run began (interpreter, imports, the
        job); ``None`` when the child sent no final report.
    """

    status: str
    output_dir: Path
    manifests: tuple[ShardManifest | None, ...]
    attempts: tuple[int, ...]
    merged: MergeResult | None
    elapsed: float
    limits: tuple[tuple[float, int, str, int], ...] = ()
    finished: tuple[tuple[float, int, int], ...] = ()
    child_cpu: tuple[tuple[float, float] | None, ...] = ()


class MergedProgress:
    """One progress display for the shards of a run: row groups and rows done, in all.

    Fed by :meth:`found` (row groups already on disk when a shard starts) and :meth:`done`
    (a row group written); :meth:`run` prints a plain line every ``interval`` seconds to
    ``stream`` (nothing when ``interval`` is ``None``), :meth:`note` prints a line now.
    """

    def __init__(
        self,
        *,
        num_records: int,
        row_group_size: int,
        num_shards: int,
        interval: float | None = 5.0,
        stream: TextIO | None = None,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self.num_records = num_records
        self.size = row_group_size
        self.num_shards = num_shards
        self.interval = interval
        self.stream = stream if stream is not None else sys.stderr
        self.written: set[int] = set()
        self.rows = 0
        self.shards_done: set[int] = set()
        #: Every row group written: (seconds since start, shard, row group).
        self.finished: list[tuple[float, int, int]] = []
        #: Every limit change of every shard: (seconds since start, shard, endpoint, limit).
        self.limits: list[tuple[float, int, str, int]] = []
        self._clock = clock
        self._start = clock()
        self._last_tick = self._start
        self._found_rows = 0

    def _rows_of(self, row_group: int) -> int:
        return max(0, min(self.size, self.num_records - row_group * self.size))

    def found(self, row_groups: Sequence[int]) -> None:
        for rg in row_groups:
            if rg not in self.written:
                self.written.add(rg)
                self.rows += self._rows_of(rg)
                self._found_rows += self._rows_of(rg)

    def done(self, shard: int, row_group: int) -> None:
        self.finished.append((self._clock() - self._start, shard, row_group))
        if row_group not in self.written:
            self.written.add(row_group)
            self.rows += self._rows_of(row_group)

    def shard_finished(self, shard: int) -> None:
        self.shards_done.add(shard)

    def limit(self, shard: int, endpoint: str, limit: int) -> None:
        """An adaptive limit of ``shard`` moved (kept with the time, for benchmarks)."""
        self.limits.append((self._clock() - self._start, shard, endpoint, limit))

    def line(self) -> str:
        elapsed = max(self._clock() - self._start, 1e-9)
        rate = (self.rows - self._found_rows) / elapsed
        percent = 100.0 * self.rows / self.num_records
        return (
            f"shards {len(self.shards_done)}/{self.num_shards} done, rows {self.rows}/"
            f"{self.num_records} ({percent:.0f}%), {rate:.0f} rows/s, {elapsed:.0f}s"
        )

    def note(self, message: str) -> None:
        if self.interval is not None:
            print(message, file=self.stream, flush=True)

    async def run(self) -> None:
        if self.interval is None:
            return
        while True:
            await trio.sleep(self.interval)
            self.note(self.line())

    def tick(self) -> None:
        """Print the progress line when ``interval`` has passed since the last one (for a
        caller without trio, polling)."""
        now = self._clock()
        if self.interval is not None and now - self._last_tick >= self.interval:
            self._last_tick = now
            self.note(self.line())

    def message(self, shard: int, message: Mapping[str, Any]) -> None:
        """One report of a shard (the ``_child`` protocol): a row group, a limit change."""
        if "row_group" in message:
            self.done(shard, int(message["row_group"]))
        elif "limit" in message:
            self.limit(shard, str(message["endpoint"]), int(message["limit"]))


def _child_env() -> dict[str, str]:
    """The environment of a child: ours, with our ``sys.path`` (so it imports the same
    trio_designer and the same modules of custom functions)."""
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[2])
    paths = [package_root, *(p for p in sys.path if p)]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return env


class _ShardFailed(TrioDesignerError):
    pass


async def _read_lines(stream: trio.abc.ReceiveStream, on_line: Callable[[str], None]) -> None:
    buffer = b""
    async for chunk in stream:
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            on_line(line.decode("utf-8", "replace"))
    if buffer:
        on_line(buffer.decode("utf-8", "replace"))


async def _run_child(
    job: Mapping[str, Any], progress: MergedProgress, started: Callable[[int], None]
) -> tuple[int, ShardManifest | None, str, tuple[float, float] | None]:
    """One child process for one shard: ``(exit status, its manifest or None, stderr tail,
    its CPU seconds (start-up, total) or None)``."""
    shard = int(job["shard"])
    manifest: list[ShardManifest] = []
    cpu: list[tuple[float, float]] = []
    stderr_tail = bytearray()

    def on_line(line: str) -> None:
        try:
            message = json.loads(line)
        except ValueError:
            return
        if "row_group" in message or "limit" in message:
            progress.message(shard, message)
        elif "started" in message:
            started(int(message["started"]))
        elif "manifest" in message:
            manifest.append(
                ShardManifest.from_json_dict(
                    message["manifest"], output_dir=Path(job["output_dir"]) / shard_dir(shard)
                )
            )
            if "cpu" in message:
                cpu.append((float(message["cpu"][0]), float(message["cpu"][1])))

    async def read_stderr(stream: trio.abc.ReceiveStream) -> None:
        async for chunk in stream:
            stderr_tail.extend(chunk)
            del stderr_tail[:-4000]

    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "trio_designer._scaleout._child"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_child_env(),
    )
    assert process.stdin is not None
    assert process.stdout is not None
    assert process.stderr is not None
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_read_lines, process.stdout, on_line)
            nursery.start_soon(read_stderr, process.stderr)
            await process.stdin.send_all(pickle.dumps(dict(job)))
            await process.stdin.aclose()
            await process.wait()
    except BaseException:
        with trio.CancelScope(shield=True):
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
                with trio.move_on_after(DRAIN_SECONDS):
                    await process.wait()
                if process.returncode is None:
                    process.kill()
                    await process.wait()
        raise
    code = process.returncode
    assert code is not None
    tail = bytes(stderr_tail).decode("utf-8", "replace")
    return code, (manifest[-1] if manifest else None), tail, (cpu[-1] if cpu else None)


async def run_workers(
    config: PipelineConfig,
    *,
    num_records: int,
    output_dir: str | os.PathLike[str],
    workers: int,
    num_shards: int | None = None,
    retries: int = 2,
    share_limits: bool = True,
    progress_interval: float | None = 5.0,
    limiter_factory: Any = None,
    compact: bool = False,
    on_child: Callable[[int, int], None] | None = None,
) -> ShardedRunResult:
    """Run the shards of a run as child processes of this machine, then merge them.

    Args:
      config: the pipeline (each model's limits are the run's totals).
      num_records: rows of the whole run.
      output_dir: the run's output directory.
      workers: child processes at once.
      num_shards: shards (default ``workers``); more shards than workers run in turn.
      retries: how often a crashed shard is started again.
      share_limits: split each model's limits over the shards running at once.
      progress_interval: seconds between progress lines on stderr (``None``: none).
      limiter_factory: each child's limiter factory (picklable), ``None`` for the default.
      compact: merge with compacted parquet files too.
      on_child: called with ``(shard, pid)`` when a child process of a shard started.

    Raises:
      ConfigError, SinkError: a child refused its config or its directory.
      trio.Cancelled: propagated after the children drained (their row groups are kept).
    """
    if not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers: must be a positive integer, got {workers!r}")
    shards = workers if num_shards is None else num_shards
    if not isinstance(shards, int) or shards < 1:
        raise ConfigError(f"num_shards: must be a positive integer, got {shards!r}")
    start = trio.current_time()
    size = config.run.row_group_size
    total_groups = -(-num_records // size)
    progress = MergedProgress(
        num_records=num_records,
        row_group_size=size,
        num_shards=shards,
        interval=progress_interval,
    )
    out = Path(output_dir)
    for shard in range(shards):
        meta = _read_json(out / shard_dir(shard) / "metadata.json")
        mine = set(shard_row_groups(total_groups, shard, shards))
        progress.found([int(k) for k in (meta.get("row_groups") or {}) if int(k) in mine])
    manifests: list[ShardManifest | None] = [None] * shards
    attempts = [0] * shards
    child_cpu: list[tuple[float, float] | None] = [None] * shards
    slots = trio.CapacityLimiter(workers)
    # The limits are shared by the shards that run at once: with more shards than workers,
    # each running shard gets 1/workers of the totals.
    share_over = min(workers, shards)

    # Which share each running shard holds: shares of shards that run at once are distinct,
    # so together they never exceed the totals.
    free_shares = list(range(share_over))

    async def one_shard(shard: int) -> None:
        async with slots:
            share = free_shares.pop(0)
            try:
                await attempts_of(shard, share)
            finally:
                free_shares.append(share)
                free_shares.sort()

    async def attempts_of(shard: int, share: int) -> None:
        while True:
            attempts[shard] += 1
            job = {
                "config": config,
                "shard": shard,
                "num_shards": shards,
                "num_records": num_records,
                "output_dir": str(out),
                "share_limits": share_limits,
                "limit_slot": (share, share_over),
                "limiter_factory": limiter_factory,
            }

            def started(pid: int, shard: int = shard) -> None:
                if on_child is not None:
                    on_child(shard, pid)

            code, manifest, stderr, cpu = await _run_child(job, progress, started)
            child_cpu[shard] = cpu
            if manifest is not None:
                manifests[shard] = manifest
            if code == 0 and manifest is not None:
                progress.shard_finished(shard)
                return
            if code == 2:
                message = stderr.strip().splitlines()[-1:] or [f"shard {shard} failed"]
                raise SinkError(message[0].removeprefix("error: "))
            if code == 1 and manifest is not None:
                progress.note(f"shard {shard} ended {manifest.status}; not retried")
                return
            if code in (130, 143):
                # Stopped cleanly by SIGINT/SIGTERM (a Ctrl-C reaches every process of the
                # terminal's group): an interruption, not a crash; the next run resumes it.
                progress.note(f"shard {shard} was interrupted; not retried")
                return
            if attempts[shard] > retries:
                tail = stderr.strip()[-500:]
                raise _ShardFailed(
                    f"shard {shard} failed {attempts[shard]} times (last exit status "
                    f"{code}); its finished row groups are kept, run the same command "
                    f"again to resume{': ' + tail if tail else ''}"
                )
            progress.note(
                f"shard {shard}: its process exited with status {code}; starting it again "
                f"(attempt {attempts[shard] + 1} of {retries + 1}), it resumes from its "
                "finished row groups"
            )

    async with trio.open_nursery() as nursery:
        nursery.start_soon(progress.run)
        async with trio.open_nursery() as shard_nursery:
            for shard in range(shards):
                shard_nursery.start_soon(one_shard, shard)
        nursery.cancel_scope.cancel()
    complete = all(m is not None and m.status == "complete" for m in manifests)
    merged = None
    if complete:
        merged = await trio.to_thread.run_sync(lambda: merge(out, compact=compact))
    progress.note(progress.line())
    return ShardedRunResult(
        status="complete" if complete else "incomplete",
        output_dir=out,
        manifests=tuple(manifests),
        attempts=tuple(attempts),
        merged=merged,
        elapsed=trio.current_time() - start,
        limits=tuple(progress.limits),
        finished=tuple(progress.finished),
        child_cpu=tuple(child_cpu),
    )
