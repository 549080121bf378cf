"""Queries first on a shared event loop: every task step begins by answering waiting queries.

Theory of operation. With ``--dns-workers 0`` (the default) the agent answers DNS on the
event loop that also gossips, merges and rebuilds. uvloop runs every callback that is ready
in one iteration before it looks at the sockets again, so when a change wakes ten gossip
exchanges at once their steps run back to back (2-3 ms in all on a small host: a request
built and a gRPC call started per peer, then each reply taken) and a query that arrived
meanwhile waits for all of them, though no one callback is long.

uvloop's callbacks are compiled and cannot be wrapped, but its tasks can: ``install`` sets a
task factory whose tasks drive their coroutine through ``QueriesFirst``, which calls
``serve`` (``DnsServer.serve_waiting``: one non-blocking recvmmsg(2) through the C fast
path, about a microsecond when nothing waits) before each step. A query then waits inside
the agent for at most one step of one task, not one iteration of the loop. Only tasks
created after ``install`` are covered (the agent installs it before it starts any); plain
callbacks (gRPC's completion queue, timers) are short and stay as they are.

Why this is safe: a step boundary is a callback boundary, where the loop itself may answer
DNS; the zone is whole there (every zone update is one synchronous call). ``serve`` must not
raise; ``DnsServer.serve_waiting`` counts its own errors and returns.

Adapter: it touches the running loop, nothing else.
"""

from __future__ import annotations

import asyncio
import collections.abc
import contextvars
import functools
import weakref
from collections.abc import Callable, Coroutine, Generator
from types import TracebackType
from typing import Any


class QueriesFirst(collections.abc.Coroutine[Any, Any, Any]):
    """A coroutine that calls ``serve`` before each step of the one it wraps."""

    __slots__ = ("_serve", "wrapped")

    def __init__(self, wrapped: Coroutine[Any, Any, Any], serve: Callable[[], object]) -> None:
        self.wrapped = wrapped
        self._serve = serve

    def send(self, value: Any) -> Any:
        self._serve()
        return self.wrapped.send(value)

    # Both forms: the one-argument one asyncio uses, and the (type, value, traceback) one.
    def throw(
        self,
        typ: type[BaseException] | BaseException,
        val: BaseException | object = None,
        tb: TracebackType | None = None,
    ) -> Any:
        self._serve()
        if val is None and tb is None:
            return self.wrapped.throw(typ)
        return self.wrapped.throw(typ, val, tb)  # type: ignore[arg-type]

    def close(self) -> None:
        self.wrapped.close()

    def __await__(self) -> Generator[Any, None, Any]:
        return self.wrapped.__await__()

    def __getattr__(self, name: str) -> Any:
        # What asyncio and debuggers read of a task's coroutine (``__qualname__``,
        # ``cr_frame``...) is the wrapped one's; only reached for names not defined here
        # (and never for ``wrapped`` itself, say on an instance made without __init__).
        if name == "wrapped":
            raise AttributeError(name)
        return getattr(self.wrapped, name)

    def __repr__(self) -> str:
        return repr(self.wrapped)


class _Serving:
    """The ``serve`` callables of the DNS servers on one loop (tests run several agents in
    one loop; an agent runs one)."""

    __slots__ = ("serves",)

    def __init__(self) -> None:
        self.serves: list[Callable[[], object]] = []

    def __call__(self) -> None:
        for serve in self.serves:
            serve()


_SERVING: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Serving] = (
    weakref.WeakKeyDictionary()
)


def install(loop: asyncio.AbstractEventLoop, serve: Callable[[], object]) -> bool:
    """Make every task created on ``loop`` from now on call ``serve`` before each step.

    Several servers may install on one loop. A task factory set by someone else is left
    alone (they know better): False, and queries wait for the loop's turn as before."""
    serving = _SERVING.get(loop)
    if serving is None:
        if loop.get_task_factory() is not None:
            return False
        serving = _SERVING[loop] = _Serving()
        loop.set_task_factory(functools.partial(_task, serving))
    serving.serves.append(serve)
    return True


def uninstall(loop: asyncio.AbstractEventLoop, serve: Callable[[], object]) -> None:
    """``serve`` is no longer called (its socket is closing); with none left, tasks created
    from now on are plain tasks again."""
    serving = _SERVING.get(loop)
    if serving is None or serve not in serving.serves:
        return
    serving.serves.remove(serve)
    if not serving.serves:
        del _SERVING[loop]
        loop.set_task_factory(None)


def _task(
    serving: _Serving,
    loop: asyncio.AbstractEventLoop,
    coro: Coroutine[Any, Any, Any],
    *,
    context: contextvars.Context | None = None,
) -> asyncio.Task[Any]:
    return asyncio.Task(QueriesFirst(coro, serving), loop=loop, context=context)
