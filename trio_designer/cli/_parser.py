"""The argument parser: every subcommand, its options, and ``--help`` texts with examples."""

from __future__ import annotations

import argparse
from collections.abc import Callable

EXIT_CODES = """\
exit status:
  0    success (a run that dropped some rows still succeeds; the summary counts them)
  1    the run stopped early (too many failures: status early_shutdown), a
       provider that cannot work (refused, DNS, TLS, 401/403: status failed), a
       check that did not pass, or an unexpected error
  2    usage or configuration error, or an output directory that cannot be used
       (a different run in it, unreadable metadata)
  130  interrupted (Ctrl-C); finished row groups are kept, continue with --resume
  143  stopped by SIGTERM; the same as Ctrl-C
"""

MAIN_EXAMPLES = """\
examples:
  {prog} validate pipeline.yaml
  {prog} preview pipeline.yaml -n 3
  {prog} run pipeline.yaml --num-records 1000 --output-dir out/topics
  {prog} run pipeline.yaml --num-records 1000 --output-dir out/topics --resume
  {prog} inspect out/topics
  {prog} run pipeline.yaml -n 200 --trace && {prog} trace out/pipeline
  {prog} simulate --port 8000 --model sim-gen:latency=0.5,capacity=16

Run '{prog} COMMAND --help' for a command's options. CONFIG is a .yaml/.yml or .json
file, or a .py file that defines 'config' (a PipelineConfig) or 'build_config()'.

"""

RUN_EXAMPLES = """\
examples:
  {prog} run pipeline.yaml --num-records 1000
      writes out/pipeline/ (one parquet file per row group + metadata.json)
  {prog} run pipeline.yaml -n 1000 --output-dir out/topics --seed 7 --trace
  {prog} run pipeline.py -n 50 --engine sync --progress plain
  {prog} run pipeline.yaml -n 1000 --output-dir out/fixed --limiter static
  {prog} run pipeline.yaml -n 1000 --output-dir out/topics --resume
      continues a stopped run: keeps its finished row groups, generates the rest

Ctrl-C stops the run cleanly: finished row groups stay on disk and the command prints the
exact --resume command line. A second Ctrl-C quits at once.

"""

PREVIEW_EXAMPLES = """\
examples:
  {prog} preview pipeline.yaml            5 records, printed one block each
  {prog} preview pipeline.yaml -n 2 --max-chars 0      values in full
  {prog} preview pipeline.yaml -n 20 --jsonl | jq .topic

Nothing is written; the models are called as in a real run.
"""

VALIDATE_EXAMPLES = """\
examples:
  {prog} validate pipeline.yaml
      ok: 3 columns, 1 model, graph order: topic -> summary -> n_words
  {prog} validate pipeline.yaml --no-check-env      (CI without API keys)

Checks the structure and every field, references (models, providers, columns), the
dependency graph (template syntax, unknown names and filters, cycles, fields of
structured columns), JSON schemas, each column's generator, and that the providers' API
key variables are set. Sends no request. Every problem is listed; the exit status is
then 2. Custom functions are imported to check them (their module's top-level code
runs), only from the installed environment and python_path / --python-path; the
command prints each module and where it comes from. --no-import only prints that.
"""

CHECK_EXAMPLES = """\
examples:
  {prog} check pipeline.yaml

Sends one small chat request to every model of the config (what a run sends, with a prompt
asking for one word; once, without retries) and prints a table: reachable, auth ok, latency,
the rate limits the endpoint advertises (x-ratelimit-* or RateLimit headers), and the result.
Exit status 0 only when every model passed.
"""

INSPECT_EXAMPLES = """\
examples:
  {prog} inspect out/topics
  {prog} inspect out/topics --json | jq .metadata.status

Shows the status, fingerprint, rows per row group, the schema, the last run's per-column
counts, failures (from failures.jsonl) per column and error class, and model usage.
"""

TRACE_EXAMPLES = """\
examples:
  {prog} trace out/topics
      writes out/topics/trace.chrome.json; open it at https://ui.perfetto.dev
  {prog} trace out/topics --chrome /tmp/topics.json
  {prog} trace out/topics --plot timeline.png
  {prog} trace out/async --compare out/sync --plot compare.svg

The run must have been recorded with --trace (or run: {{trace: true}}). Plotting needs
matplotlib: pip install 'trio_designer[plot]'.
"""

CACHE_EXAMPLES = """\
examples:
  {prog} cache stats
  {prog} cache prune --older-than 30d
  {prog} cache clear
  {prog} cache stats --cache-dir /data/llm-cache

The response cache keeps every paid model answer (see docs/cache.md). Its directory:
--cache-dir, else $XDG_CACHE_HOME/trio_designer, else ~/.cache/trio_designer.
"""

PLUGINS_EXAMPLES = """\
examples:
  {prog} plugins
  {prog} plugins --json | jq '.[] | select(.ok | not)'

Lists every entry point of the groups trio_designer.columns, trio_designer.samplers,
trio_designer.processors and trio_designer.validators in the installed environment (never
the current directory), imports each plugin's module and checks it as a config using it
would: group, kind, package, version, ok or broken (and why). Exit status 1 when a plugin
is broken. Runs that do not use a broken plugin are not affected by it.
"""

EXPORT_EXAMPLES = """\
examples:
  {prog} export out/topics --format jsonl
      writes out/topics.jsonl (next to the output directory)
  {prog} export out/topics --format csv --output /tmp/topics.csv
  {prog} export out/topics --format parquet      one file: out/topics.parquet
  {prog} export out/topics --format hf           out/topics-hf/, for datasets.load_from_disk
  HF_TOKEN=... {prog} export out/topics --format hf --push-to-hub me/topics

Streams one row group at a time. Struct and list columns are nested JSON in jsonl and JSON
text in csv cells. --format hf needs the datasets library: pip install 'trio_designer[hf]'.
The token for --push-to-hub is read from HF_TOKEN only, never stored or printed.
"""

SIMULATE_HELP = """\
serve the simulated OpenAI-compatible endpoint until Ctrl-C (the options are those of
'python -m trio_designer.simulator'; see '{prog} simulate --help'), e.g.
  {prog} simulate --port 8000 --model sim-gen:latency=0.5,capacity=16,mode=gpu
"""


def positive_int(text: str) -> int:
    """An ``argparse`` type: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser(
    prog: str, handlers: dict[str, Callable[[argparse.Namespace], int]]
) -> argparse.ArgumentParser:
    """The ``trio-designer`` parser; ``handlers`` maps each command to its function
    (stored as ``args.handler``)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show tracebacks of errors",
    )
    common.add_argument(
        "--no-plugins",
        action="store_true",
        default=argparse.SUPPRESS,
        help="do not load plugins (kinds installed packages add by entry point); the same as "
        "TRIO_DESIGNER_NO_PLUGINS=1",
    )
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Generate synthetic datasets with LLMs, cell by cell, on Trio.",
        epilog=MAIN_EXAMPLES.format(prog=prog) + EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, summary: str, examples: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name,
            help=summary,
            description=summary[0].upper() + summary[1:] + ".",
            epilog=examples.format(prog=prog) + "\n" + EXIT_CODES,
            formatter_class=argparse.RawDescriptionHelpFormatter,
            parents=[common],
        )
        sub.set_defaults(handler=handlers[name])
        return sub

    _add_run(add("run", "generate a dataset and write it as parquet", RUN_EXAMPLES))
    _add_preview(
        add("preview", "generate a few records in memory and print them", PREVIEW_EXAMPLES)
    )
    _add_validate(add("validate", "check a config without sending any request", VALIDATE_EXAMPLES))
    _config_argument(add("check", "send one small request to every model", CHECK_EXAMPLES))
    _add_inspect(add("inspect", "summarise an output directory", INSPECT_EXAMPLES))
    _add_trace(
        add("trace", "export or plot the trace of a run recorded with --trace", TRACE_EXAMPLES)
    )
    _add_cache(add("cache", "show, prune or clear the response cache", CACHE_EXAMPLES))
    _add_plugins(
        add("plugins", "list the installed plugins and whether they load", PLUGINS_EXAMPLES)
    )
    _add_export(
        add("export", "write a run's dataset as jsonl, csv, parquet or hf", EXPORT_EXAMPLES)
    )
    commands.add_parser(
        "simulate",
        help="serve the simulated OpenAI-compatible endpoint",
        description=SIMULATE_HELP.format(prog=prog),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        add_help=False,
    )
    return parser


def _config_argument(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "config",
        metavar="CONFIG",
        help="pipeline config: .yaml/.yml, .json, or .py defining 'config' or 'build_config()'",
    )
    sub.add_argument(
        "--python-path",
        action="append",
        default=[],
        metavar="DIR",
        help="a directory custom functions (and a .py config's imports) may be imported from, "
        "besides the installed environment and the config's python_path; repeatable. Code next "
        "to the config or in the current directory is never imported otherwise",
    )


def _engine_options(sub: argparse.ArgumentParser, *, progress_default: str) -> None:
    sub.add_argument(
        "--seed", type=int, help="override run.seed (changes the data, and the fingerprint)"
    )
    sub.add_argument(
        "--engine",
        choices=("async", "sync"),
        default="async",
        help="async: cell-level scheduling (default); sync: column at a time (the baseline)",
    )
    sub.add_argument(
        "--limiter",
        choices=("adaptive", "static"),
        default="adaptive",
        help="each model endpoint's concurrency limit: adaptive (default; starts at "
        "max_parallel_requests and adapts to 429s and latency) or static (stays at "
        "max_parallel_requests; still pauses after a 429)",
    )
    sub.add_argument(
        "--progress",
        choices=("auto", "plain", "rich", "none"),
        default=progress_default,
        help="live progress on stderr: auto (bars on a terminal, plain text otherwise), plain, "
        f"rich, none (default: {progress_default})",
    )
    _cache_options(sub)


def _cache_options(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--cache-dir",
        metavar="DIR",
        help="the response cache's directory (overrides run.cache_dir; default "
        "$XDG_CACHE_HOME/trio_designer, else ~/.cache/trio_designer)",
    )
    sub.add_argument(
        "--no-cache",
        action="store_true",
        help="neither read nor write the response cache: every request is sent",
    )


def _add_run(sub: argparse.ArgumentParser) -> None:
    _config_argument(sub)
    sub.add_argument(
        "-n",
        "--num-records",
        type=positive_int,
        required=True,
        metavar="N",
        help="rows to generate (required)",
    )
    sub.add_argument(
        "-o",
        "--output-dir",
        metavar="DIR",
        help="where to write (default: out/<config file name without suffix>)",
    )
    _engine_options(sub, progress_default="auto")
    sub.add_argument(
        "--trace",
        action="store_true",
        help="record every task and scheduler event in OUTPUT_DIR/trace.json (sets run.trace)",
    )
    sub.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --output-dir: keep its finished row groups (the config "
        "must be the same: same fingerprint)",
    )
    sub.add_argument(
        "--force-resume",
        action="store_true",
        help="continue the run in --output-dir even though the config or custom code changed "
        "(the rows already written keep their old values; recorded in metadata.json)",
    )


def _add_preview(sub: argparse.ArgumentParser) -> None:
    _config_argument(sub)
    sub.add_argument(
        "-n",
        "--num-records",
        type=positive_int,
        default=5,
        metavar="N",
        help="records to generate (default 5)",
    )
    _engine_options(sub, progress_default="none")
    sub.add_argument(
        "--max-chars",
        type=int,
        default=300,
        metavar="N",
        help="cut each value after N characters (default 300; 0 = never)",
    )
    sub.add_argument(
        "--jsonl", action="store_true", help="print one JSON object per record instead"
    )


def _add_validate(sub: argparse.ArgumentParser) -> None:
    _config_argument(sub)
    sub.add_argument(
        "--no-check-env",
        action="store_true",
        help="do not check that the providers' API key variables are set",
    )
    sub.add_argument(
        "--no-import",
        action="store_true",
        help="only show where custom functions would be imported from; do not import them "
        "(so do not check that they exist)",
    )


def _add_inspect(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("output_dir", metavar="OUTPUT_DIR", help="the output directory of a run")
    sub.add_argument(
        "--json", action="store_true", help="print metadata and failures as one JSON document"
    )


def _add_trace(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "output_dir",
        metavar="OUTPUT_DIR",
        help="the output directory of a run recorded with --trace",
    )
    sub.add_argument(
        "--chrome",
        metavar="PATH",
        help="write Chrome trace-event JSON here (default when no option is given: "
        "OUTPUT_DIR/trace.chrome.json)",
    )
    sub.add_argument("--plot", metavar="PATH", help="draw the timeline as a picture (.png or .svg)")
    sub.add_argument(
        "--compare",
        metavar="OTHER_OUTPUT_DIR",
        help="plot this run next to another (say the sync engine on the same config); "
        "without --plot the picture goes to OUTPUT_DIR/timeline.png",
    )


def _add_cache(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--cache-dir",
        metavar="DIR",
        help="the cache's directory (default $XDG_CACHE_HOME/trio_designer, else "
        "~/.cache/trio_designer)",
    )
    actions = sub.add_subparsers(dest="cache_action", metavar="ACTION", required=True)
    stats = actions.add_parser(
        "stats", help="print the path, entries, size, oldest and newest entry"
    )
    prune = actions.add_parser("prune", help="delete entries older than a duration")
    clear = actions.add_parser("clear", help="delete every entry")
    for action in (stats, prune, clear):  # --cache-dir after the action works too
        action.add_argument("--cache-dir", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    prune.add_argument(
        "--older-than",
        required=True,
        metavar="DURATION",
        help="a number and a unit: s, m, h, d or w (90m, 12h, 30d, 2w)",
    )


def _add_plugins(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--json", action="store_true", help="print the list as JSON")


def _add_export(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("output_dir", metavar="OUTPUT_DIR", help="the output directory of a run")
    sub.add_argument(
        "--format",
        required=True,
        choices=("jsonl", "csv", "parquet", "hf"),
        help="jsonl, csv, parquet (one file) or hf (a datasets directory)",
    )
    sub.add_argument(
        "--output",
        metavar="PATH",
        help="where to write (default: next to OUTPUT_DIR, e.g. out/topics.jsonl)",
    )
    sub.add_argument("--overwrite", action="store_true", help="replace an existing PATH")
    sub.add_argument(
        "--push-to-hub",
        metavar="REPO",
        help="with --format hf: push the dataset to the Hugging Face Hub repository REPO "
        "(token from HF_TOKEN)",
    )

