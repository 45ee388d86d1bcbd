"""Live progress: what a frame shows, which reporter is chosen, and both reporters for real.

Three layers:

* pure: the tracker's numbers (rates, ETA, totals after a resume) from a real ``RunState`` at
  explicit times, and one frame rendered to a string at a fixed width — no clock involved;
* in-process, in virtual time: the plain reporter's blocks through ``TrioDesigner``, and the rich
  reporter's redraws, log routing and clean-up on a fake terminal;
* end to end: a small pipeline (sampler, expression, an async custom column that really sleeps,
  an LLM column on the built-in simulator) in a subprocess whose stderr is a real
  pseudo-terminal, and again with stderr on a pipe.
"""

from __future__ import annotations

import io
import logging
import os
import re
import select
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import trio

from trio_designer import (
    CategorySampler,
    ConfigError,
    CustomColumn,
    PipelineConfig,
    RunConfig,
    TrioDesigner,
)
from trio_designer._engine._state import RunState
from trio_designer._observe._progress import make_reporter, resolve_progress
from trio_designer._observe._progress_model import (
    ColumnProgress,
    EndpointProgress,
    ProgressSnapshot,
    ProgressTracker,
    RateMeter,
    format_eta,
    format_rate,
    rows_to_generate,
)
from trio_designer._observe._progress_plain import PlainProgress, format_plain
from trio_designer._plan import ExecutionGraph
from trio_designer._sink import MemorySink
from trio_designer.generators._registry import build_generator
from trio_designer.models._limiter import LimiterStatistics
from trio_designer.models._registry import ModelUsage

# rich is an optional extra (``progress``): skipped only when it is not installed at all; any
# other ImportError (a broken install, or one of our own modules failing) is a failure.
rich = pytest.importorskip(
    "rich", reason="the progress extra (rich) is not installed", exc_type=ModuleNotFoundError
)

from rich.console import Console  # noqa: E402
from rich.file_proxy import FileProxy  # noqa: E402

from trio_designer._observe._progress_rich import RichProgress, render_frame  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
BAR = r"[━╸╺ ]*"  # a bar, any length, any fill
BIG = 10_000


# -- helpers --------------------------------------------------------------------------------------
def make_state(
    names: Sequence[str] = ("a", "b"),
    *,
    num_records: int = 100,
    row_group_size: int = 10,
    skip: frozenset[int] = frozenset(),
    models: Any = None,
) -> RunState:
    """A real run state for sampler columns (its counters are what reporters read)."""
    config = PipelineConfig(
        columns=tuple(CategorySampler(name=n, values=("x", "y")) for n in names),
        run=RunConfig(row_group_size=row_group_size),
    )
    graph = ExecutionGraph.from_config(config)
    return RunState(
        graph=graph,
        generators={n: build_generator(graph.configs[n]) for n in graph.order},
        sink=MemorySink(),
        run=config.run,
        num_records=num_records,
        skip_row_groups=skip,
        models=models,
    )


class FakeRegistry:
    """The three registry calls the tracker makes, with settable numbers."""

    def __init__(self) -> None:
        self.tokens = {"gen": 0, "judge": 0}
        self.stats = LimiterStatistics(
            name="simulator:m",
            limit=6,
            ceiling=16,
            in_flight=6,
            waiting=9,
            cooldown_remaining=0.0,
            rate_limited=2,
            successes=0,
            failures=0,
            baseline_latency=None,
            recent_latency=None,
        )

    def usage(self) -> dict[str, ModelUsage]:
        return {alias: ModelUsage(output_tokens=n) for alias, n in self.tokens.items()}

    def model(self, alias: str) -> Any:
        class Handle:
            provider = "simulator"
            model = "m"
            priced = alias == "gen"

        return Handle()

    def limiters(self) -> dict[str, Any]:
        stats = self.stats

        class Limiter:
            def statistics(self) -> LimiterStatistics:
                return stats

        return {"simulator:m": Limiter()}


class FakeTerminal(io.StringIO):
    """A string buffer that says it is a terminal (rich then draws with escape codes)."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def terminal_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """A plain xterm of 100 × 30, whatever the environment running the tests says."""
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.setenv("COLUMNS", "100")
    monkeypatch.setenv("LINES", "30")
    for var in ("TTY_COMPATIBLE", "TTY_INTERACTIVE", "FORCE_COLOR", "NO_COLOR"):
        monkeypatch.delenv(var, raising=False)


def render(snapshot: ProgressSnapshot, *, width: int = 100, **kwargs: Any) -> list[str]:
    console = Console(file=io.StringIO(), width=width, color_system=None, force_terminal=False)
    console.print(render_frame(snapshot, **kwargs))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    return [line.rstrip() for line in text.splitlines()]


SNAPSHOT = ProgressSnapshot(
    elapsed=12.34,
    total=1000,
    rows_written=400,
    rows_dropped=2,
    columns=(
        ColumnProgress(name="topic", done=1000, total=1000, failed=0, rate=812.3, eta=0.0),
        ColumnProgress(name="summary", done=410, total=1000, failed=2, rate=33.0, eta=17.9),
        ColumnProgress(name="n_words", done=0, total=1000, failed=0, rate=None, eta=None),
    ),
    endpoints=(
        EndpointProgress(
            name="simulator:sim-gen",
            limit=12,
            ceiling=16,
            in_flight=12,
            waiting=30,
            rate_limited=3,
            tokens_per_s=410.2,
            cooldown=1.25,
        ),
    ),
)


# -- measuring ------------------------------------------------------------------------------------
def test_rate_meter_measures_over_the_window() -> None:
    meter = RateMeter(window=10.0)
    assert meter.rate() is None
    meter.add(0.0, 0)
    assert meter.rate() is None
    for t, v in [(5.0, 10), (10.0, 30), (15.0, 70)]:
        meter.add(t, v)
    # The window starts at 5.0: the slope from (5, 10) to (15, 70).
    assert meter.rate() == 6.0


def test_total_excludes_row_groups_a_resumed_run_already_has() -> None:
    # Groups of 10 over 95 rows: group 0 has 10 rows, group 9 (the last) has 5.
    assert rows_to_generate(make_state(num_records=95, skip=frozenset({0, 9}))) == 80
    assert rows_to_generate(make_state(num_records=20, skip=frozenset({0, 1}))) == 0


def test_tracker_reports_counts_recent_rate_and_eta() -> None:
    state = make_state()
    tracker = ProgressTracker(state, start=0.0)
    state.counts["a"].ok, state.counts["a"].skipped = 8, 2
    state.counts["b"].failed = 1
    first = tracker.snapshot(5.0)
    a, b = first.columns
    assert (a.name, a.done, a.total, a.failed) == ("a", 10, 100, 0)
    assert (a.rate, a.eta) == (2.0, 45.0)
    assert (b.done, b.failed, b.rate, b.eta) == (0, 1, 0.0, None)
    state.counts["a"].ok = 28
    tracker.snapshot(10.0)
    state.counts["a"].ok = 68
    a = tracker.snapshot(15.0).columns[0]
    assert (a.done, a.rate, a.eta) == (70, 6.0, 5.0)  # over the last 10 s only


def test_a_complete_column_keeps_its_average_rate() -> None:
    state = make_state()
    tracker = ProgressTracker(state, start=0.0)
    state.counts["a"].ok = 100
    assert tracker.snapshot(20.0).columns[0].rate == 5.0
    later = tracker.snapshot(60.0).columns[0]
    assert (later.rate, later.eta, later.fraction) == (5.0, 0.0, 1.0)


def test_the_final_frame_shows_averages_and_no_eta_for_unfinished_columns() -> None:
    state = make_state()
    tracker = ProgressTracker(state, start=0.0)
    state.counts["a"].ok, state.counts["b"].ok = 100, 40
    state.rows_written, state.rows_dropped = 90, 10
    final = tracker.snapshot(20.0, final=True)
    assert final.final
    assert (final.rows_written, final.rows_dropped) == (90, 10)
    assert [(c.rate, c.eta) for c in final.columns] == [(5.0, 0.0), (2.0, None)]


def test_tracker_reports_each_endpoint_from_its_limiter_and_usage() -> None:
    registry = FakeRegistry()
    state = make_state(models=registry)
    tracker = ProgressTracker(state, start=0.0)
    registry.tokens = {"gen": 300, "judge": 100}  # two aliases of one endpoint add up
    [endpoint] = tracker.snapshot(2.0).endpoints
    assert endpoint == EndpointProgress(
        name="simulator:m",
        limit=6,
        ceiling=16,
        in_flight=6,
        waiting=9,
        rate_limited=2,
        tokens_per_s=200.0,
        cooldown=0.0,
    )


def test_formatting_helpers() -> None:
    assert [format_eta(s) for s in (None, float("inf"), 0.0, 59.6, 61, 3725)] == [
        "-:--",
        "-:--",
        "0:00",
        "1:00",
        "1:01",
        "1:02:05",
    ]
    assert [format_rate(r) for r in (None, 0.0, 12.34, 99.94, 812.3)] == [
        "-",
        "0.0",
        "12.3",
        "99.9",
        "812",
    ]


# -- rendering one frame ---------------------------------------------------------------------------
def test_a_frame_renders_bars_numbers_and_endpoint_lines() -> None:
    lines = render(SNAPSHOT)
    full, part = "━" * 40, "━" * 16
    assert lines == [
        "  12.3s  rows written 400/1000  dropped 2",
        f"topic   {full} 100% 1000/1000  812 rec/s ETA 0:00 0 failed",
        f"summary {part}                          41%  410/1000 33.0 rec/s ETA 0:18 2 failed",
        f"n_words {' ' * 40}   0%    0/1000    - rec/s ETA -:-- 0 failed",
        "model simulator:sim-gen  limit 12/16  in flight 12  waiting 30  429s 3  410 tok/s"
        "  cooling down 1.2s",
    ]


def test_bars_shrink_to_fit_a_narrow_terminal() -> None:
    lines = render(SNAPSHOT, width=60)
    assert all(len(line) <= 60 for line in lines)
    assert lines[1].startswith("topic   ━━━━━━━━ 100%")


def test_too_many_columns_hide_finished_ones_first() -> None:
    lines = render(SNAPSHOT, max_column_rows=2)
    assert lines[1].startswith("summary")
    assert lines[2] == "… 2 more columns (1 complete)"
    assert not any(line.startswith(("topic", "n_words")) for line in lines)


def test_the_plain_block_has_the_same_numbers_and_no_escape_codes() -> None:
    block = format_plain(SNAPSHOT)
    assert "\x1b" not in block
    assert block.splitlines() == [
        "[   12.3s] rows written 400/1000, dropped 2",
        "           topic    1000/1000  100%      812 rec/s  ETA 0:00  0 failed",
        "           summary   410/1000   41%     33.0 rec/s  ETA 0:18  2 failed",
        "           n_words     0/1000    0%        - rec/s  ETA -:--  0 failed",
        "           model simulator:sim-gen  limit 12/16  in flight 12  waiting 30  429s 3  "
        "410 tok/s  cooling down 1.2s",
    ]


# -- choosing a reporter ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (False, (None, 5.0)),
        (0, (None, 5.0)),
        (True, ("auto", 5.0)),
        ("auto", ("auto", 5.0)),
        ("plain", ("plain", 5.0)),
        ("rich", ("rich", 5.0)),
        (2.5, ("plain", 2.5)),
        (1, ("plain", 1.0)),
    ],
)
def test_progress_values(value: object, expected: tuple[str | None, float]) -> None:
    assert resolve_progress(value) == expected


@pytest.mark.parametrize("value", ["fancy", "AUTO", -1, float("nan"), float("inf"), None, [1]])
def test_invalid_progress_values_are_config_errors(value: object) -> None:
    with pytest.raises(ConfigError, match="progress"):
        resolve_progress(value)


async def test_auto_draws_bars_only_on_a_terminal(terminal_env: None) -> None:
    state = make_state()
    assert make_reporter(False, state) is None
    assert isinstance(make_reporter("auto", state, stream=FakeTerminal()), RichProgress)
    assert isinstance(make_reporter(True, state, stream=FakeTerminal()), RichProgress)
    plain = make_reporter("auto", state, stream=io.StringIO())
    assert isinstance(plain, PlainProgress)
    assert plain.interval == 5.0
    numbered = make_reporter(0.5, state, stream=FakeTerminal())
    assert isinstance(numbered, PlainProgress)
    assert numbered.interval == 0.5
    assert isinstance(make_reporter("plain", state, stream=FakeTerminal()), PlainProgress)
    assert isinstance(make_reporter("rich", state, stream=io.StringIO()), RichProgress)


async def test_auto_falls_back_to_plain_on_a_dumb_terminal(
    terminal_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TERM", "dumb")
    assert isinstance(make_reporter("auto", make_state(), stream=FakeTerminal()), PlainProgress)


async def test_without_rich_auto_is_plain_and_rich_is_a_config_error(
    terminal_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "rich", None)  # "import rich" now raises ImportError
    state = make_state()
    assert isinstance(make_reporter("auto", state, stream=FakeTerminal()), PlainProgress)
    with pytest.raises(ConfigError, match=re.escape("pip install 'trio_designer[progress]'")):
        make_reporter("rich", state, stream=FakeTerminal())


# -- the reporters in virtual time -----------------------------------------------------------------
def slow_pipeline(latency: float) -> PipelineConfig:
    async def work(row: Mapping[str, Any]) -> str:
        await trio.sleep(latency)
        return f"{row['topic']}!"

    return PipelineConfig(
        columns=(
            CategorySampler(name="topic", values=("x", "y")),
            CustomColumn(name="work", function=work, depends_on=("topic",)),
        ),
        run=RunConfig(row_group_size=2),
    )


async def test_plain_blocks_every_interval_then_a_final_one(
    autojump_clock: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    with trio.fail_after(BIG):
        result = await TrioDesigner(progress=0.5).preview(slow_pipeline(0.75), num_records=4)
    assert result.num_records_written == 4
    err = capsys.readouterr().err
    assert "\x1b" not in err
    blocks = re.split(r"\n(?=\[)", err.strip())
    assert len(blocks) == 2  # at 0.5 s, then the final one at 0.75 s
    assert blocks[0].startswith("[    0.5s] rows written 0/4, dropped 0")
    assert re.search(r"work\s+0/4\s+0%", blocks[0])
    assert blocks[1].startswith("[    0.8s] rows written 4/4, dropped 0")
    assert re.search(r"topic\s+4/4\s+100%", blocks[1])
    assert re.search(r"work\s+4/4\s+100%\s+5\.3 rec/s  ETA 0:00  0 failed", blocks[1])


async def test_rich_redraws_routes_logs_above_and_restores_everything(
    autojump_clock: Any, terminal_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    logger = logging.getLogger("trio_designer")
    monkeypatch.setattr(logger, "propagate", False)  # as if logging were not configured
    handlers_before = list(logger.handlers)
    stdout_before, stderr_before = sys.stdout, sys.stderr
    state = make_state(("alpha", "beta"))
    screen = FakeTerminal()
    assert isinstance(make_reporter("auto", state, stream=screen), RichProgress)
    # The same reporter, told to keep 10 Hz however slow this machine draws a frame: with
    # max_overhead=1.0 a first frame that took over 0.1 s of real time (rich's lazy imports,
    # compiled afresh on a clean CI machine) stretched the next sleep and lost a frame.
    reporter = RichProgress(state, stream=screen, max_overhead=1e9)
    with trio.fail_after(BIG):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reporter.run)
            await trio.sleep(0.25)  # frames at 0.0, 0.1, 0.2
            assert len(logger.handlers) == len(handlers_before) + 1  # a RichHandler, for now
            state.counts["alpha"].ok = 100
            logging.getLogger("trio_designer.engine").warning("row 7 dropped: boom")
            print("a stray print")
            await trio.sleep(0.1)
            nursery.cancel_scope.cancel()
            reporter.final()
    assert logger.handlers == handlers_before
    assert (sys.stdout, sys.stderr) == (stdout_before, stderr_before)
    out = screen.getvalue()
    assert "\x1b[?25l" in out  # cursor hidden while drawing...
    assert out.endswith("\x1b[?25h")  # ...and shown again at the end
    # Redrawn in place: each redraw moves up over the 3-line frame (2 × "up, erase line"):
    # at 0.1, 0.2, for the log line, for the print, at 0.3 and for the final frame.
    assert out.count("\x1b[1A\x1b[2K") == 6 * 2
    text = ANSI.sub("", out)
    for needle in ("alpha", "beta", "100%", "100/100", "0/100", "row 7 dropped: boom", "a stray"):
        assert needle in text
    log_at = out.index("dropped: boom")  # (rich highlights the 7)
    erased_at = out.rfind("\x1b[2K", 0, log_at)
    assert "rows written" not in out[erased_at:log_at]  # the frame was cleared for the log...
    assert "rows written" in out[log_at:]  # ...and drawn again below it
    assert text.rstrip().endswith("0.0 rec/s ETA -:-- 0 failed")  # beta never started


async def test_rich_swaps_terminal_log_handlers_for_the_run_only(
    autojump_clock: Any, terminal_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    logger = logging.getLogger("trio_designer")
    monkeypatch.setattr(logger, "propagate", False)
    their_terminal = FakeTerminal()
    handler = logging.StreamHandler(their_terminal)
    handler.setFormatter(logging.Formatter("LOG %(levelname)s %(message)s"))
    logger.addHandler(handler)
    try:
        screen = FakeTerminal()
        reporter = RichProgress(make_state(), stream=screen)
        with trio.fail_after(BIG):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(reporter.run)
                await trio.sleep(0.15)
                assert isinstance(handler.stream, FileProxy)
                assert logger.handlers == [handler]  # nothing added: logging is configured
                logger.warning("routed through the display")
                await trio.sleep(0.1)
                nursery.cancel_scope.cancel()  # run() ends first this time
            reporter.final()
        assert handler.stream is their_terminal
        assert "LOG WARNING routed through the display" in screen.getvalue()
        assert their_terminal.getvalue() == ""
    finally:
        logger.removeHandler(handler)


async def test_forced_rich_off_a_terminal_prints_only_the_final_frame(
    autojump_clock: Any, terminal_env: None
) -> None:
    pipe = io.StringIO()
    state = make_state(("only",))
    reporter = make_reporter("rich", state, stream=pipe)
    assert isinstance(reporter, RichProgress)
    with trio.fail_after(BIG):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reporter.run)
            await trio.sleep(0.35)
            state.counts["only"].ok = 100
            nursery.cancel_scope.cancel()
            reporter.final()
    out = pipe.getvalue()
    assert "\x1b" not in out
    assert out.count("rows written") == 1
    assert out.endswith("0 failed\n")
    assert "100/100" in out


async def test_rich_final_without_run_prints_one_frame(
    autojump_clock: Any, terminal_env: None
) -> None:
    screen = FakeTerminal()
    state = make_state(("only",))
    reporter = RichProgress(state, stream=screen)
    state.counts["only"].ok = 100
    reporter.final("complete")
    reporter.final("complete")
    with trio.fail_after(1):  # virtual: a run() that did start would loop until this
        await reporter.run()  # too late: returns at once, draws nothing
    text = ANSI.sub("", screen.getvalue())
    assert text.count("rows written") == 1
    assert "(complete)" in text
    assert "100%" in text


class BrokenTerminal(FakeTerminal):
    """A terminal that went away (a closed SSH session, a pipe whose reader exited)."""

    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


async def test_a_broken_terminal_stops_the_display_not_the_run(
    autojump_clock: Any, terminal_env: None, caplog: pytest.LogCaptureFixture
) -> None:
    logger = logging.getLogger("trio_designer")
    handlers_before = list(logger.handlers)
    stdout_before, stderr_before = sys.stdout, sys.stderr
    reporter = RichProgress(make_state(), stream=BrokenTerminal())
    with trio.fail_after(BIG):
        await reporter.run()  # returns instead of raising into the run's nursery
    reporter.final()
    assert logger.handlers == handlers_before
    assert (sys.stdout, sys.stderr) == (stdout_before, stderr_before)
    [record] = [r for r in caplog.records if r.name == "trio_designer.progress"]
    assert record.levelno == logging.WARNING
    assert "BrokenPipeError" in record.getMessage()


async def test_a_closed_pipe_stops_the_plain_blocks_not_the_run(
    autojump_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    reporter = PlainProgress(make_state(), interval=0.5, stream=BrokenTerminal())
    with trio.fail_after(BIG):
        await reporter.run()
    reporter.final()
    assert [r.name for r in caplog.records] == ["trio_designer.progress"]


# -- end to end, in a real pseudo-terminal ---------------------------------------------------
CHILD = """
import logging

import trio
import trio.testing

from trio_designer import (
    CategorySampler, CustomColumn, ExpressionColumn, LLMTextColumn, ModelConfig,
    PipelineConfig, RunConfig, TrioDesigner,
)
from trio_designer.simulator import Latency, SimulatedModel


async def shout(row, ctx):
    await trio.sleep(0.02)  # virtual time: the display gets to redraw a few times
    if ctx.row_index == 13:
        logging.getLogger("trio_designer.child").warning("row 13 is about to fail on purpose")
        raise ValueError("boom on purpose")
    return row["topic"].upper()


config = PipelineConfig(
    columns=(
        CategorySampler(name="topic", values=("astronomy", "cooking", "jazz")),
        CustomColumn(name="shout", function=shout, depends_on=("topic",)),
        ExpressionColumn(name="shout_len", expr="{{ shout | length }}", dtype="int"),
        LLMTextColumn(name="blurb", model="gen", prompt="One line about {{ topic }}."),
    ),
    models=(ModelConfig(alias="gen", model="sim-gen", max_parallel_requests=4),),
    run=RunConfig(row_group_size=10, max_submitted_tasks=4, seed=1),
)
designer = TrioDesigner(
    progress="auto",
    simulator_models=[SimulatedModel(name="sim-gen", latency=Latency(median=0.05, sigma=0.0))],
)


async def main():
    with trio.fail_after(60):  # virtual seconds; the run takes about one
        return await designer.preview(config, num_records=40)


# Virtual time: preview (no parquet, so no worker threads) under an autojumping clock, with
# the simulator in the same trio.run: every sleep and every frame tick costs no real time.
result = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
print(f"status={result.status} written={result.num_records_written}", flush=True)
"""


def child_env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("TTY_COMPATIBLE", "TTY_INTERACTIVE", "FORCE_COLOR", "NO_COLOR")
        and k not in ("COLUMNS", "LINES")
    }
    env["TERM"] = "xterm-256color"
    env["PYTHONPATH"] = str(REPO)
    return env


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal")
def test_sticky_bars_in_a_real_pseudo_terminal(tmp_path: Path) -> None:
    import fcntl
    import pty
    import struct
    import termios

    script = tmp_path / "child.py"
    script.write_text(CHILD)
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))  # 30 × 100
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
        env=child_env(),
        cwd=tmp_path,
    )
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child exited and the terminal closed
                break
            if not data:
                break
            chunks.append(data)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    out = b"".join(chunks).decode("utf-8", "replace")
    text = ANSI.sub("", out)
    assert "status=complete written=39" in text, text[-2000:]
    # Drawn in place with cursor control, not scrolled: hide cursor, up + erase line, show cursor.
    assert "\x1b[?25l" in out
    assert "\x1b[?25h" in out
    # At least two full redraws of the frame in place. (How many frames a run shows depends on
    # the real cost of drawing one, so a loaded machine shows fewer: 15 lines, not 20+, seen.)
    assert out.count("\x1b[1A\x1b[2K") >= 2 * 4
    for column in ("topic", "shout", "shout_len", "blurb"):
        assert re.search(rf"\n{column}\s+{BAR}\s+\d+%\s+\d+/40", text), column
    assert re.search(rf"topic\s+{BAR}\s+100%\s+40/40", text)
    assert re.search(rf"shout\s+{BAR}\s+98%\s+39/40 .* 1 failed", text)
    assert "model simulator:sim-gen  limit 4/4" in text
    assert "rows written 39/40  dropped 1  (complete)" in text
    # The log line printed above the bars, which came back below it.
    log_at = out.index("is about to fail on purpose")
    erased_at = out.rfind("\x1b[2K", 0, log_at)
    assert erased_at != -1
    assert "rows written" not in out[erased_at:log_at]
    assert "rows written" in out[log_at:]


@pytest.mark.slow
def test_plain_text_when_stderr_is_not_a_terminal(tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    proc = subprocess.run(
        [sys.executable, str(script)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=child_env(),
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "status=complete written=39"
    err = proc.stderr
    assert "\x1b" not in err
    assert "row 13 is about to fail on purpose" in err
    final = err[err.rindex("rows written") :]
    assert final.startswith("rows written 39/40, dropped 1")
    assert re.search(r"topic\s+40/40\s+100%", final)
    assert re.search(r"shout\s+39/40\s+98%.*1 failed", final)
    assert "model simulator:sim-gen  limit 4/4" in final
