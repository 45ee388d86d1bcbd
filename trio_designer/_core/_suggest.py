"""The one rule for "did you mean ...?": suggesting the name the user probably meant.

Every message about an unknown name (a config field, a column, a model alias, a provider, a
simulator key) ends with a hint. The hint comes from here, so every message suggests the same
way::

    >>> did_you_mean("promt", ["prompt", "model"], otherwise="expected one of 'model', 'prompt'")
    "did you mean 'prompt'?"
    >>> did_you_mean("xyz", ["prompt", "model"], otherwise="expected one of 'model', 'prompt'")
    "expected one of 'model', 'prompt'"

The rule is :func:`difflib.get_close_matches` with its default cutoff (0.6 similarity), over the
candidates sorted, so the suggestion does not depend on the order they were declared in.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["closest", "did_you_mean"]

_CUTOFF = 0.6
"""How similar (difflib ratio, 0..1) a candidate must be to be suggested."""


def closest(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate most similar to ``word``, or ``None`` if none is similar enough.

    Args:
      word: what the user wrote.
      candidates: the names that exist.
    """
    matches = difflib.get_close_matches(word, sorted(candidates), n=1, cutoff=_CUTOFF)
    return matches[0] if matches else None


def did_you_mean(word: str, candidates: Iterable[str], *, otherwise: str) -> str:
    """``"did you mean 'x'?"`` for the closest candidate, else ``otherwise``.

    Args:
      word: what the user wrote.
      candidates: the names that exist.
      otherwise: the hint to give when no candidate is close (say, the list of valid names,
        or where to declare one).
    """
    match = closest(word, candidates)
    return f"did you mean {match!r}?" if match is not None else otherwise
