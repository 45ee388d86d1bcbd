"""Text formatting for the CLI: tables, records, durations, and keeping secrets out.

Everything here is pure (strings in, strings out), so the commands stay short and the
formatting is testable without running anything.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

_SECRET_NAME = re.compile(r"(API_?KEY|TOKEN|SECRET|PASSWORD)", re.IGNORECASE)
_MIN_SECRET_LENGTH = 6
_secret_env_names: set[str] = set()


def remember_secret_env(names: Iterable[str | None]) -> None:
    """Treat the values of these environment variables as secrets from now on (the
    ``api_key_env`` names of a loaded config)."""
    _secret_env_names.update(name for name in names if name)


class Redactor:
    """Replaces secret values (API keys from the environment) with ``***`` in text.

    The library never puts a key into a message on purpose; this is the CLI's second line of
    defence for anything it prints. Secrets are the values of the environment variables named
    by the config's providers (``api_key_env``, see :func:`remember_secret_env`) and of any
    variable whose name looks like a
    credential (``*API_KEY*``, ``*TOKEN*``, ``*SECRET*``, ``*PASSWORD*``).
    """

    def __init__(self, env_names: Iterable[str] = ()) -> None:
        names = {name for name in os.environ if _SECRET_NAME.search(name)}
        names |= _secret_env_names | set(env_names)
        values = {os.environ.get(name, "") for name in names}
        self._values = frozenset(v for v in values if v)
        # Each secret also as JSON spells it inside a string (quotes, backslashes, non-ASCII).
        spellings = set(self._values)
        spellings |= {json.dumps(v)[1:-1] for v in self._values}
        spellings |= {json.dumps(v, ensure_ascii=False)[1:-1] for v in self._values}
        # Longest first, so a key that contains another is replaced whole.
        self._secrets = sorted(
            (v for v in spellings if len(v) >= _MIN_SECRET_LENGTH), key=len, reverse=True
        )

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def value(self, value: Any) -> Any:
        """``"***"`` for a value equal to a secret (however short), else the value itself:
        for showing data (``preview``), where a cell may hold a key whole."""
        if isinstance(value, str) and value.strip() in self._values:
            return "***"
        return value


MAX_PROBLEM_CHARS = 400
"""The longest single problem line the CLI prints (a config can make any message long: a
10,000-column chain, a huge value quoted back)."""

MAX_PROBLEMS_SHOWN = 40
"""How many problems of one config error the CLI lists before summarising the rest."""


def cap_text(text: str, limit: int = MAX_PROBLEM_CHARS) -> str:
    """``text`` cut to ``limit`` characters, saying how many were left out."""
    if len(text) <= limit:
        return text
    return f"{text[: limit - 30].rstrip()}… [{len(text) - limit + 30} more chars]"


def config_error_text(problems: Sequence[str], source: str | None) -> str:
    """A config error as the CLI prints it: the file, then each problem (capped in length
    and number)."""
    where = f"{source}: " if source and not any(source in p for p in problems) else ""
    if len(problems) == 1:
        return where + cap_text(problems[0])
    shown = [f"  - {cap_text(problem)}" for problem in problems[:MAX_PROBLEMS_SHOWN]]
    if len(problems) > MAX_PROBLEMS_SHOWN:
        shown.append(f"  ... and {len(problems) - MAX_PROBLEMS_SHOWN} more problems")
    return f"{where}the configuration has {len(problems)} problems:\n" + "\n".join(shown)


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """``"1 column"``, ``"3 columns"``."""
    return f"{count} {noun if count == 1 else (nouns or noun + 's')}"


def duration(seconds: float) -> str:
    """``"0.42 s"``, ``"12.3 s"``, ``"4 min 05 s"``."""
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s"


def table(
    headers: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    align: str | None = None,
    indent: str = "  ",
) -> str:
    """A plain-text table.

    Args:
      headers: the column titles.
      rows: the cells (anything, shown with ``str``).
      align: one letter per column, ``l`` or ``r``; default: the first column left, the
        others right.
      indent: put before every line.
    """
    cells = [list(map(str, headers))] + [[str(c) for c in row] for row in rows]
    align = align or "l" + "r" * (len(headers) - 1)
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        parts = [
            c.ljust(w) if a == "l" else c.rjust(w)
            for c, w, a in zip(row, widths, align, strict=True)
        ]
        lines.append(indent + "  ".join(parts).rstrip())
    return "\n".join(lines)


def usage_line(alias: str, usage: Mapping[str, Any]) -> str:
    """One model's usage: requests by outcome and tokens."""
    ok = int(usage.get("requests_ok", 0))
    failed = int(usage.get("requests_failed", 0))
    limited = int(usage.get("requests_rate_limited", 0))
    text = (
        f"{alias}: {plural(ok + failed + limited, 'request')} ({ok} ok, {failed} failed, "
        f"{limited} rate-limited), {usage.get('input_tokens', 0)} input + "
        f"{usage.get('output_tokens', 0)} output tokens"
    )
    reasoning = int(usage.get("reasoning_tokens", 0))
    text += f" ({reasoning} reasoning)" if reasoning else ""
    cost = usage.get("cost")
    return text + (f", cost {cost:.4f}" if isinstance(cost, int | float) else "")


def terminal_width() -> int:
    """The terminal's width, clamped to 60..120 columns (100 when unknown)."""
    return max(60, min(120, shutil.get_terminal_size((100, 24)).columns))


def value_text(value: Any) -> str:
    """A cell value as text: strings as they are, structures as JSON, the rest with ``str``."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def truncate(text: str, max_chars: int) -> str:
    """``text`` cut to ``max_chars`` characters with a note of how much was left out
    (``max_chars <= 0``: no limit)."""
    if max_chars <= 0 or len(text) <= max_chars:
        return text
    return f"{text[:max_chars].rstrip()}… [{len(text) - max_chars} more chars]"


def record_block(number: int, record: Mapping[str, Any], *, width: int, max_chars: int) -> str:
    """One record as a readable block: a rule with its number, then ``name : value`` lines,
    long values wrapped under their first line."""
    head = f"── record {number} "
    lines = [head + "─" * max(0, width - len(head))]
    key_width = max((len(k) for k in record), default=0)
    indent = " " * (key_width + 3)
    for key, value in record.items():
        text = truncate(value_text(value), max_chars)
        wrapped: list[str] = []
        for paragraph in text.splitlines() or [""]:
            wrapped.extend(
                textwrap.wrap(
                    paragraph,
                    width=max(20, width - len(indent)),
                    replace_whitespace=False,
                    drop_whitespace=True,
                )
                or [""]
            )
        lines.append(f"{key.ljust(key_width)} : {wrapped[0]}")
        lines.extend(indent + line for line in wrapped[1:])
    return "\n".join(lines)
