"""``check``: one small request per model, a table of what each endpoint answered.

Exit 0 only when every model answered with a usable chat completion; 1 otherwise (an endpoint
that does not work is a runtime condition, not a mistake in the file: the same config may pass
in five minutes); 2 for a config that does not load, as everywhere.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import Any

import trio

from ._format import Redactor, table
from ._load import load_config

EXIT_OK = 0
EXIT_FAILED = 1


def cmd_check(args: argparse.Namespace) -> int:
    """``trio-designer check CONFIG``."""
    from ..models._check import check_models

    config = load_config(args.config)
    results = trio.run(check_models, config)
    redact = Redactor()
    print(redact(check_table(results)))
    failed = [r for r in results if not r.ok]
    for result in failed:
        print(redact(f"{result.alias}: {result.problem}"))
    passed = len(results) - len(failed)
    print(f"{passed} of {len(results)} model{'s' if len(results) != 1 else ''} passed")
    return EXIT_FAILED if failed else EXIT_OK


def check_table(results: Sequence[Any]) -> str:
    """The table of ``check``: one row per model alias."""
    rows = [
        [
            r.alias,
            r.provider,
            r.base_url,
            _yes_no(r.reachable),
            "-" if r.auth_ok is None else ("ok" if r.auth_ok else "rejected"),
            _latency(r),
            limits_summary(dict(r.limits)),
            "ok" if r.ok else _status(r.status),
        ]
        for r in results
    ]
    headers = ["model", "provider", "base_url", "reachable", "auth", "latency", "limits", "result"]
    return table(headers, rows, align="lllllrll")


def limits_summary(headers: Mapping[str, str]) -> str:
    """The advertised rate limits in a few words: OpenAI's ``x-ratelimit-*`` as remaining of
    limit per budget, the IETF draft's ``RateLimit-Policy`` as sent; ``-`` when none."""
    parts = []
    for budget in ("requests", "tokens"):
        limit = headers.get(f"x-ratelimit-limit-{budget}")
        if limit is None:
            continue
        remaining = headers.get(f"x-ratelimit-remaining-{budget}")
        left = f"{remaining} of " if remaining is not None else ""
        parts.append(f"{budget}: {left}{limit} left")
    if not parts and "ratelimit-policy" in headers:
        parts.append(f"policy {headers['ratelimit-policy']}")
    return "; ".join(parts) if parts else "-"


def _yes_no(value: bool) -> str:
    return "yes" if value else "no"


def _latency(result: Any) -> str:
    return f"{result.latency * 1000:.0f} ms" if result.reachable else "-"


def _status(status: int | None) -> str:
    return "failed" if status is None else f"failed (HTTP {status})"
