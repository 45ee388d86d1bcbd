"""Models: the per-endpoint concurrency limiters, and the model handles custom code calls.

Two kinds of user code meet this package:

* a ``limiter_factory`` (``TrioDesigner(limiter_factory=...)``) builds each endpoint's limiter
  from ``(endpoint_name, max_parallel_requests)`` — :class:`StaticLimiter`,
  :class:`AdaptiveLimiter`, or ``functools.partial(AdaptiveLimiter, policy=LimiterPolicy(...))``;
  anything that satisfies :class:`ModelLimiter` will do (it hands out :class:`Permit` objects
  and reports :class:`LimiterStatistics`; an adaptive limiter reports each
  :class:`LimitChange`)::

      from functools import partial
      from trio_designer import TrioDesigner
      from trio_designer.models import AdaptiveLimiter, LimiterPolicy, StaticLimiter

      TrioDesigner(limiter_factory=StaticLimiter)
      TrioDesigner(limiter_factory=partial(AdaptiveLimiter, policy=LimiterPolicy(cooldown=5.0)))

* a custom column that calls a model reads ``ctx.models`` (a :class:`ModelRegistry`), asks it
  for a :class:`ModelHandle` by alias and awaits ``handle.chat(messages)``, which answers with a
  :class:`ChatResponse`.

The HTTP client, the error map and the registry's plumbing are private (``_client``,
``_errors``, ``_registry``).
"""

from __future__ import annotations

from .. import _public
from .._core._limits import LimitChange as LimitChange
from .._core._limits import LimiterPolicy as LimiterPolicy
from ._client import ChatResponse as ChatResponse
from ._limiter import AdaptiveLimiter as AdaptiveLimiter
from ._limiter import LimiterStatistics as LimiterStatistics
from ._limiter import ModelLimiter as ModelLimiter
from ._limiter import Permit as Permit
from ._limiter import StaticLimiter as StaticLimiter
from ._registry import LimiterFactory as LimiterFactory
from ._registry import ModelHandle as ModelHandle
from ._registry import ModelRegistry as ModelRegistry

__all__ = [
    "AdaptiveLimiter",
    "ChatResponse",
    "LimitChange",
    "LimiterFactory",
    "LimiterPolicy",
    "LimiterStatistics",
    "ModelHandle",
    "ModelLimiter",
    "ModelRegistry",
    "Permit",
    "StaticLimiter",
]

_public.present_as(__name__, globals(), __all__)
