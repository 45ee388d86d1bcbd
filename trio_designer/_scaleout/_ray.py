"""Shards as Ray tasks (``trio_designer.ray``): filled in by the Ray commit."""

from __future__ import annotations

from typing import Any

__all__ = ["run_on_ray"]


def run_on_ray(*args: Any, **kwargs: Any) -> Any:
    from .._exceptions import ConfigError

    raise ConfigError("--ray: not available yet in this build")
