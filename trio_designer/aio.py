"""Run trio_designer from asyncio code and Jupyter notebooks.

The engine runs on Trio, and a Trio coroutine cannot be awaited by asyncio. These coroutines
can: they take the same arguments as :meth:`TrioDesigner.create
<trio_designer.TrioDesigner.create>` and :meth:`~trio_designer.TrioDesigner.preview`, run the
pipeline, and return its :class:`~trio_designer.RunResult`::

    import asyncio
    import trio_designer

    result = asyncio.run(
        trio_designer.aio.create(config, num_records=100, output_dir="out/topics")
    )

and in a notebook cell, where an asyncio loop is already running::

    designer = trio_designer.TrioDesigner(progress=True)
    result = await trio_designer.aio.create(
        config, num_records=100, output_dir="out/topics", designer=designer
    )

Pass ``designer=`` to choose the engine, progress display, ``limiter_factory`` and so on.
Progress is printed to stderr as with ``create``. Several runs may be awaited at once
(``asyncio.gather``). Cancelling the awaiting task (Ctrl-C under ``asyncio.run``, or
``task.cancel()``) cancels the run the way Ctrl-C cancels a CLI run: in-flight cells stop, the
finished row groups stay on disk, ``metadata.json`` says ``interrupted``, and the coroutine
re-raises ``CancelledError`` once that cleanup is done (``resume=True`` continues the run).

What cannot work raises :class:`~trio_designer.EventLoopError` naming what to call instead:
awaiting ``TrioDesigner().create(...)`` under asyncio, calling ``create_sync`` while an asyncio
loop runs in the thread (it would block a notebook for the whole run), or awaiting these
coroutines inside ``trio.run``.

Each run happens in a worker thread of its own, so the callbacks you give the designer
(``on_event``, custom column functions, a ``limiter_factory``) run in that thread, not in the
asyncio loop's. Why a thread rather than Trio's guest mode (measured) is written down in
``trio_designer/_aio.py``.
"""

from __future__ import annotations

from . import _public
from ._aio import create as create
from ._aio import preview as preview

__all__ = ["create", "preview"]

_public.present_as(__name__, globals(), __all__)
