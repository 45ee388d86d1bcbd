"""Every code snippet of the documentation runs: README.md and every page of docs/.

What runs, page by page, in document order, in a fresh temporary directory per page:

* a ```` ```python ```` block is executed in a fresh namespace, so it must carry its own
  imports. A block with a top-level ``await`` runs under Trio, or under asyncio when it uses
  ``trio_designer.aio`` (the notebook entry point). Functions it defines named ``test_*`` are
  then called, as pytest would (``async`` ones under ``trio.run``; a parameter named
  ``autojump_clock`` gets pytest-trio's autojumping ``MockClock``);
* a ```` ```sh ````/```` ```bash ````/```` ```console ```` block whose commands run
  ``trio-designer`` or ``python -m trio_designer...`` is run by ``bash -e -o pipefail`` with
  the project's ``.venv/bin`` first on ``PATH`` (console blocks: the lines after ``$ ``).
  Shell blocks of other programs (``make``, ``pip``, ``python -m benches``) are not run;
* a block whose first line is ``# <path>.yaml`` (``.yml``, ``.json``, ``.py``) is a file: it is
  written to that path for the blocks after it (a ``.py`` file is compiled, not run).

Blocks of a page share its directory, so a later block reads what an earlier one wrote (a CLI
``run`` then ``inspect``). Each directory starts as a new user's checkout would look from the
repository root: ``pipeline.yaml`` is the README's short-tour pipeline (on the built-in
``simulator`` provider), ``examples/`` and ``.venv`` link to the repository's, ``docs/img/`` is
an empty folder (so commands that regenerate a picture write into the temporary copy).

Two HTML comments, on the line just before a fence, change that:

* ``<!-- not-run: REASON -->``: the block is not run; the test is skipped with REASON. Keep
  these rare: a server that runs until Ctrl-C, a listing that is not code;
* ``<!-- needs: MODULE -->``: the block runs when MODULE is installed (pandas, polars, duckdb:
  not dependencies of trio_designer), and is skipped saying so otherwise.

Each page runs in one subprocess (``python tests/test_docs_snippets.py PAGE DIR RESULTS``), two
pages at a time; every block there has a wall-clock deadline (:data:`BLOCK_DEADLINE`), after
which the runner dumps every thread's stack and exits, so a hanging snippet fails its page in
minutes, not never. Each block is one pytest test (``test_snippet_runs[docs/cli.md:60]``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import faulthandler
import importlib.util
import inspect
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import traceback
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
PAGES = [REPO / "README.md", *sorted(DOCS.glob("*.md"))]

#: Wall-clock seconds one block may take before its page's runner gives up on it.
BLOCK_DEADLINE = 240.0
#: Pages run at the same time (the CI machine has two cores).
PARALLEL_PAGES = 2

_FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})(?P<info>[^`\s]*)\s*$")
_MARKER = re.compile(r"^\s*<!--\s*(?P<kind>not-run|needs)\s*:\s*(?P<text>.*?)\s*-->\s*$")
_FILE_HEADER = re.compile(r"^# (?P<path>[\w./-]+\.(?:ya?ml|json|py))\s*$")
_CLI = re.compile(r"^(?:\.venv/bin/)?(?:trio-designer|python3? -m trio_designer)\b")
_PYTHON = {"python", "py", "python3"}
_SHELL = {"sh", "bash", "shell", "console"}


# -- finding the blocks ----------------------------------------------------------------------------


@attrs.frozen
class Block:
    """One fenced code block of a page.

    Attributes:
      page: the page, relative to the repository (``docs/cli.md``).
      line: the line of its opening fence (1-based).
      lang: the fence's language tag (``""`` when it has none).
      body: its text, the fence's indentation removed.
      marker: ``(kind, text)`` of a ``not-run``/``needs`` comment just before the fence.
    """

    page: str
    line: int
    lang: str
    body: str
    marker: tuple[str, str] | None = None

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def file(self) -> str | None:
        """The path a file block is written to (``# pipeline.yaml`` as its first line)."""
        first = self.body.split("\n", 1)[0]
        match = _FILE_HEADER.match(first)
        if match and (self.lang in _PYTHON or self.lang in {"yaml", "yml", "json"}):
            return match["path"]
        return None

    @property
    def commands(self) -> list[str]:
        """A shell block's command lines (continuations joined, comments and blanks dropped)."""
        commands: list[str] = []
        pending = ""
        for line in self.body.splitlines():
            if self.lang == "console" and not pending:
                if not line.startswith("$ "):
                    continue  # output
                line = line[2:]
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            command = (pending + line).strip()
            pending = ""
            if command and not command.startswith("#"):
                commands.append(command)
        return commands

    @property
    def kind(self) -> str:
        """``file``, ``python``, ``cli`` (runs trio-designer), ``shell`` (other programs, not
        run) or ``text`` (anything else: YAML, JSON, output)."""
        if self.file is not None:
            return "file"
        if self.lang in _PYTHON:
            return "python"
        if self.lang in _SHELL:
            return "cli" if any(_CLI.match(c) for c in self.commands) else "shell"
        return "text"


def blocks(text: str, page: str) -> list[Block]:
    """Every fenced block of ``text`` (indented fences inside list items included)."""
    lines = text.splitlines()
    found = []
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        fence, indent = opening["fence"], len(opening["indent"])
        start = index
        body = []
        index += 1
        while index < len(lines) and lines[index].strip() != fence:
            line = lines[index]
            body.append(line[indent:] if not line[:indent].strip() else line)
            index += 1
        previous = next((lines[i] for i in range(start - 1, -1, -1) if lines[i].strip()), "")
        marker = _MARKER.match(previous)
        found.append(
            Block(
                page=page,
                line=start + 1,
                lang=opening["info"].lower(),
                body="\n".join(body) + "\n",
                marker=(marker["kind"], marker["text"]) if marker else None,
            )
        )
        index += 1
    return found


def page_blocks(path: Path) -> list[Block]:
    name = path.relative_to(REPO).as_posix() if path.is_relative_to(REPO) else path.name
    return blocks(path.read_text(encoding="utf-8"), name)


def runnable(all_blocks: list[Block]) -> list[Block]:
    return [b for b in all_blocks if b.kind in ("python", "cli")]


# -- running one page (in a subprocess) ------------------------------------------------------------


def _prepare_directory(workdir: Path) -> None:
    """A new user's view from the repository root (see the module docstring)."""
    tour = next(b for b in page_blocks(REPO / "README.md") if b.file == "pipeline.yaml")
    (workdir / "pipeline.yaml").write_text(tour.body, encoding="utf-8")
    (workdir / "examples").symlink_to(REPO / "examples", target_is_directory=True)
    (workdir / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    (workdir / "docs" / "img").mkdir(parents=True)


#: Seconds (on the snippet's own trio clock) a documented snippet may take: a deadlock in one
#: fails the page instead of hanging it.
SNIPPET_DEADLINE = 86_400


async def _under_deadline(fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
    """``await fn(*args)`` under the snippet deadline (a deadlock fails, never hangs)."""
    with trio.fail_after(SNIPPET_DEADLINE):
        await fn(*args)


def _call_tests(namespace: dict[str, Any]) -> None:
    """Call the ``test_*`` functions a block defined, as pytest (with pytest-trio) would."""
    import trio
    import trio.testing

    for name, fn in list(namespace.items()):
        if not (name.startswith("test_") and inspect.isfunction(fn)):
            continue
        parameters = list(inspect.signature(fn).parameters)
        if inspect.iscoroutinefunction(fn):
            clock = trio.testing.MockClock(autojump_threshold=0)
            args = [clock if p == "autojump_clock" else None for p in parameters]

            trio.run(_under_deadline, fn, *args, clock=clock)
        else:
            fn()


def _run_python(source: str, where: str) -> None:
    import trio

    flags = __import__("ast").PyCF_ALLOW_TOP_LEVEL_AWAIT
    code = compile(source, where, "exec", flags=flags)
    namespace: dict[str, Any] = {"__name__": "__main__"}
    if code.co_flags & inspect.CO_COROUTINE:
        if "trio_designer.aio" in source:

            async def under_asyncio() -> None:
                await eval(code, namespace)

            asyncio.run(under_asyncio())
        else:

            async def under_trio() -> None:
                await eval(code, namespace)

            trio.run(_under_deadline, under_trio)
    else:
        exec(code, namespace)
    _call_tests(namespace)


def _run_cli(block: Block, workdir: Path) -> str | None:
    """Run a shell block; ``None``, or why it was skipped. Raises on failure."""
    for command in block.commands:
        for segment in command.split("|")[1:]:
            tool = shlex.split(segment)[0]
            if shutil.which(tool) is None:
                return f"needs {tool!r}, which is not installed"
    env = {
        **os.environ,
        "PATH": f"{Path(sys.prefix) / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "COLUMNS": "100",
    }
    done = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", "\n".join(block.commands)],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=BLOCK_DEADLINE,
        stdin=subprocess.DEVNULL,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"exit status {done.returncode}\n--- stdout (end) ---\n{done.stdout[-3000:]}"
            f"\n--- stderr (end) ---\n{done.stderr[-3000:]}"
        )
    return None


def run_page(page: Path, workdir: Path, results: Path) -> None:
    """Run every block of ``page`` in ``workdir``; one JSON line per block into ``results``."""
    os.chdir(workdir)
    sys.path[0] = str(workdir)  # a snippet imports the files earlier blocks wrote, like a script
    _prepare_directory(workdir)
    with results.open("a", encoding="utf-8") as out:
        for block in page_blocks(page):
            outcome, detail = "passed", ""
            print(f"--- {block.id} ({block.kind})", file=sys.stderr, flush=True)
            faulthandler.dump_traceback_later(BLOCK_DEADLINE, exit=True)
            try:
                if block.kind == "file":
                    path = workdir / str(block.file)
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(block.body, encoding="utf-8")
                    if path.suffix == ".py":
                        compile(block.body, str(path), "exec")
                    outcome = "written"
                elif block.kind not in ("python", "cli"):
                    continue
                elif block.marker and block.marker[0] == "not-run":
                    outcome, detail = "not-run", block.marker[1]
                elif block.marker and importlib.util.find_spec(block.marker[1]) is None:
                    outcome, detail = "skipped", f"needs {block.marker[1]}, which is not installed"
                elif block.kind == "python":
                    _run_python(block.body, f"{block.id}")
                else:
                    skipped = _run_cli(block, workdir)
                    if skipped is not None:
                        outcome, detail = "skipped", skipped
            except BaseException:
                outcome, detail = "failed", traceback.format_exc(limit=-8)
            finally:
                faulthandler.cancel_dump_traceback_later()
                os.chdir(workdir)  # a block may have changed it
            out.write(json.dumps({"line": block.line, "outcome": outcome, "detail": detail}))
            out.write("\n")
            out.flush()


# -- the pytest side -------------------------------------------------------------------------------


@attrs.frozen
class PageRun:
    """The runner's results for one page: per block line, ``(outcome, detail)``."""

    results: dict[int, tuple[str, str]]
    returncode: int
    stderr: str


def launch(page: Path, workdir: Path) -> PageRun:
    """Run ``page``'s blocks in a subprocess (see :func:`run_page`)."""
    workdir.mkdir(parents=True)
    results = workdir.parent / f"{workdir.name}.results.jsonl"
    deadline = BLOCK_DEADLINE * max(len(runnable(page_blocks(page))), 1) + 60
    done = subprocess.run(
        [sys.executable, __file__, str(page), str(workdir), str(results)],
        capture_output=True,
        text=True,
        timeout=deadline,
        stdin=subprocess.DEVNULL,
    )
    found: dict[int, tuple[str, str]] = {}
    if results.exists():
        for line in results.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            found[record["line"]] = (record["outcome"], record["detail"])
    return PageRun(found, done.returncode, done.stderr)


def _cost(page: Path) -> int:
    """A rough cost of running ``page``, to start the slow pages first: a shell command
    starts a process and often a run; a Python block is cheaper."""
    found = runnable(page_blocks(page))
    return sum(3 * len(b.commands) if b.kind == "cli" else 1 for b in found)


class PageRuns:
    """Runs every page once, :data:`PARALLEL_PAGES` at a time, started on first use."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._futures: dict[str, concurrent.futures.Future[PageRun]] = {}

    def get(self, page: str) -> PageRun:
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(PARALLEL_PAGES)
            for number, path in sorted(enumerate(PAGES), key=lambda item: -_cost(item[1])):
                name = path.relative_to(REPO).as_posix()
                workdir = self._root / f"page{number:02d}"
                self._futures[name] = self._pool.submit(launch, path, workdir)
        return self._futures[page].result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture(scope="module")
def page_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PageRuns]:
    runs = PageRuns(tmp_path_factory.mktemp("docs-snippets"))
    yield runs
    runs.close()


ALL_BLOCKS = [block for page in PAGES for block in page_blocks(page)]
RUNNABLE = runnable(ALL_BLOCKS)


@pytest.mark.parametrize("block", RUNNABLE, ids=lambda b: b.id)
def test_snippet_runs(block: Block, page_runs: PageRuns) -> None:
    run = page_runs.get(block.page)
    if block.line not in run.results:
        pytest.fail(
            f"the runner never reached {block.id} (exit status {run.returncode}); its stderr "
            f"ends:\n{run.stderr[-4000:]}"
        )
    outcome, detail = run.results[block.line]
    if outcome in ("not-run", "skipped"):
        pytest.skip(f"{outcome}: {detail}")
    assert outcome == "passed", f"{block.id} ({block.kind}) failed:\n{detail}"


# -- the collection itself -------------------------------------------------------------------------


def test_the_documentation_has_the_snippets_we_expect() -> None:
    kinds = [b.kind for b in RUNNABLE]
    assert kinds.count("python") >= 25
    assert kinds.count("cli") >= 12
    assert {b.page for b in RUNNABLE} >= {"README.md", "docs/getting-started.md", "docs/cli.md"}


def test_markers_are_few_have_reasons_and_sit_on_runnable_blocks() -> None:
    marked = [b for b in ALL_BLOCKS if b.marker is not None]
    assert all(b.kind in ("python", "cli") for b in marked), [b.id for b in marked]
    assert all(b.marker and b.marker[1] for b in marked)
    not_run = [b for b in marked if b.marker and b.marker[0] == "not-run"]
    assert len(not_run) <= 5, [b.id for b in not_run]  # rare, by design


def test_a_stray_marker_is_not_read() -> None:
    """An HTML comment anywhere but just before a fence does not count."""
    text = "<!-- not-run: far away -->\n\nSome text.\n\n```python\nprint(1)\n```\n"
    [block] = blocks(text, "x.md")
    assert block.marker is None


def test_blocks_are_read_like_a_markdown_renderer() -> None:
    text = "\n".join(
        [
            "* a list item with code:",
            "",
            "  ```python",
            "  x = 1",
            "  ```",
            "",
            "<!-- needs: polars -->",
            "```python",
            "import polars",
            "```",
            "",
            "```yaml",
            "# conf/p.yaml",
            "columns: []",
            "```",
            "",
            "```bash",
            "make run   # not ours",
            "```",
            "",
            "```console",
            "$ trio-designer validate p.yaml \\",
            "    --no-check-env",
            "ok: 3 columns",
            "```",
            "",
            "```",
            "status: complete",
            "```",
        ]
    )
    found = blocks(text, "x.md")
    assert [(b.line, b.kind) for b in found] == [
        (3, "python"),
        (8, "python"),
        (12, "file"),
        (17, "shell"),
        (21, "cli"),
        (27, "text"),
    ]
    assert found[0].body == "x = 1\n"
    assert found[1].marker == ("needs", "polars")
    assert found[2].file == "conf/p.yaml"
    assert found[4].commands == ["trio-designer validate p.yaml      --no-check-env"]


def test_a_failing_snippet_fails_and_markers_skip(tmp_path: Path) -> None:
    """The runner reports what breaks (so the tests above can fail)."""
    page = tmp_path / "page.md"
    page.write_text(
        "\n".join(
            [
                "```python",
                "import trio_designer",
                "raise ValueError('this snippet is wrong')",
                "```",
                "",
                "```python",
                "print(undefined_name)  # no import: a fresh namespace per block",
                "```",
                "",
                "```bash",
                "trio-designer validate no-such-file.yaml",
                "```",
                "",
                "<!-- not-run: serves until Ctrl-C -->",
                "```bash",
                "trio-designer simulate --port 8000",
                "```",
                "",
                "<!-- needs: no_such_module_td -->",
                "```python",
                "import no_such_module_td",
                "```",
                "",
                "```python",
                "import trio",
                "async def test_virtual(autojump_clock):",
                "    await trio.sleep(3600)",
                "    assert trio.current_time() == 3600",
                "```",
            ]
        )
        + "\n"
    )
    run = launch(page, tmp_path / "work")
    outcomes = {line: outcome for line, (outcome, _) in run.results.items()}
    assert outcomes == {
        1: "failed",
        6: "failed",
        10: "failed",
        15: "not-run",
        20: "skipped",
        24: "passed",
    }, run.stderr
    assert "ValueError: this snippet is wrong" in run.results[1][1]
    assert "NameError: name 'undefined_name' is not defined" in run.results[6][1]
    assert "exit status 2" in run.results[10][1]
    assert "cannot read config file 'no-such-file.yaml'" in run.results[10][1]
    assert run.results[15][1] == "serves until Ctrl-C"


if __name__ == "__main__":
    run_page(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
