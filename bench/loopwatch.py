"""Run ``meshd`` with every event-loop callback timed, to find what holds the loop.

Usage: ``.venv/bin/python bench/loopwatch.py run --cluster-id ... [any meshd run flags]``
with ``LOOPWATCH_OUT`` (default ``loopwatch.json``): at SIGTERM the agent writes there, per
label, the count of callbacks, their CPU seconds (``time.thread_time``) and the largest
ones, and the stacks sampled while a callback ran longer than ``LOOPWATCH_SAMPLE_MS``
(default 1).

How: uvloop's handles are compiled and cannot be wrapped, so this wrapper runs the agent on
the stock asyncio loop with pure-Python tasks, and wraps ``asyncio.Handle._run``. The Python
work each callback does is the agent's own and the same under uvloop; only the loop's own
overhead differs (so DNS is not measured here: the point is what else runs). A callback's
label is its task's coroutine (``Ring._exchange``...) or its function. A sampler thread
(GIL switch interval lowered to 0.5 ms) looks at the main thread every millisecond; while
one callback has run for longer than the sampling threshold it records the innermost
frames of the project's code, so a long callback says which code made it long.
"""

from __future__ import annotations

import asyncio
import asyncio.events
import asyncio.tasks
import collections
import json
import os
import sys
import threading
import time
from typing import Any

import mesh.daemon.cli
import mesh.daemon.runner

LABEL_FRAMES = 4  # innermost project frames kept per sample
PROJECT_DIRS = ("/mesh/", "/dnsserver/")  # the agent's code, in this checkout or a ref's


def _label(callback: Any) -> str:
    owner = getattr(callback, "__self__", None)
    if isinstance(owner, asyncio.Task):
        coro = owner.get_coro()
        coro = getattr(coro, "wrapped", coro)  # dnsserver.queries_first's wrapper
        return f"task {getattr(coro, '__qualname__', repr(coro))}"
    func = getattr(callback, "func", callback)  # functools.partial
    return str(getattr(func, "__qualname__", type(func).__name__))


class Watch:
    def __init__(self, sample_s: float) -> None:
        self.cpu: collections.Counter[str] = collections.Counter()
        self.count: collections.Counter[str] = collections.Counter()
        # (start, cpu, label, longest stretch of it without a chance for DNS to answer)
        self.durations: list[tuple[float, float, str, float]] = []
        self.mark = 0.0  # thread time when the running callback last let DNS answer
        self.longest = 0.0
        self.samples: collections.Counter[str] = collections.Counter()
        self.applied: collections.Counter[int] = collections.Counter()
        self.notes: collections.Counter[str] = collections.Counter()
        self.current: tuple[str, float] | None = None  # (label, start) of the running one
        self.sample_s = sample_s
        self.started = time.monotonic()
        self.cpu_started = time.process_time()

    def wrap(self) -> None:
        original = asyncio.events.Handle._run
        watch = self

        def _run(handle: asyncio.events.Handle) -> None:
            label = _label(handle._callback)  # type: ignore[attr-defined]
            start, cpu = time.monotonic(), time.thread_time()
            watch.current = (label, start)
            watch.mark, watch.longest = cpu, 0.0
            try:
                original(handle)
            finally:
                watch.current = None
                end = time.thread_time()
                used = end - cpu
                longest = max(watch.longest, end - watch.mark)
                watch.cpu[label] += used
                watch.count[label] += 1
                watch.durations.append((start - watch.started, used, label, longest))

        asyncio.events.Handle._run = _run  # type: ignore[method-assign]

    def sample(self) -> None:
        main_id = threading.main_thread().ident or 0
        while True:
            time.sleep(0.001)
            current = self.current
            if current is None or time.monotonic() - current[1] < self.sample_s:
                continue
            frame = sys._current_frames().get(main_id)
            names: list[str] = []
            while frame is not None and len(names) < LABEL_FRAMES:
                code = frame.f_code
                if any(part in code.co_filename for part in PROJECT_DIRS):
                    names.append(f"{os.path.basename(code.co_filename)}:{code.co_name}")
                frame = frame.f_back
            self.samples[f"{current[0]} | {' < '.join(names)}"] += 1

    def wrap_agent(self) -> None:
        """Count what each zone rebuild applies and what each planner note dirties."""
        from mesh.daemon.rebuilding import ZoneRebuilder
        from mesh.routing.planner import AnswerPlanner

        apply, note = ZoneRebuilder.apply, AnswerPlanner.note
        watch = self

        def counted_apply(rebuilder: Any, updates: list[Any], serial: int) -> None:
            watch.applied[len(updates)] += 1
            apply(rebuilder, updates, serial)

        def counted_note(planner: Any, change: Any) -> None:
            watch.notes[f"cluster={change.cluster} services={len(change.services)}"] += 1
            note(planner, change)

        ZoneRebuilder.apply = counted_apply  # type: ignore[method-assign]
        self._wrap_serve_waiting()
        AnswerPlanner.note = counted_note  # type: ignore[method-assign]

    def _wrap_serve_waiting(self) -> None:
        """Where the agent lets DNS answer inside a callback (``serve_waiting``, when the
        checkout has it), the callback's stretch without DNS ends there."""
        from dnsserver.server import DnsServer

        serve = getattr(DnsServer, "serve_waiting", None)
        if serve is None:
            return
        watch = self

        def marked(server: Any) -> int:
            now = time.thread_time()
            watch.longest = max(watch.longest, now - watch.mark)
            served: int = serve(server)
            watch.mark = time.thread_time()
            return served

        DnsServer.serve_waiting = marked  # type: ignore[method-assign]

    def write(self, path: str) -> None:
        wall = time.monotonic() - self.started
        by_label = {
            label: {"count": self.count[label], "cpu_s": round(self.cpu[label], 4)}
            for label, _ in self.cpu.most_common()
        }
        report = {
            "wall_s": round(wall, 2),
            "process_cpu_s": round(time.process_time() - self.cpu_started, 2),
            "by_label": by_label,
            "callbacks": [
                (round(t, 4), round(c * 1000, 3), lb, round(g * 1000, 3))
                for t, c, lb, g in self.durations
            ],
            "applied_batch_sizes": dict(self.applied.most_common(20)),
            "planner_notes": dict(self.notes.most_common(20)),
            "samples_over_threshold": dict(self.samples.most_common(60)),
        }
        with open(path, "w", encoding="utf-8") as out:
            json.dump(report, out)


def main() -> int:
    watch = Watch(float(os.environ.get("LOOPWATCH_SAMPLE_MS", "1")) / 1000)
    asyncio.tasks.Task = asyncio.tasks._PyTask  # type: ignore[misc, attr-defined]
    asyncio.Task = asyncio.tasks._PyTask  # type: ignore[misc, attr-defined]
    mesh.daemon.runner.new_event_loop = asyncio.new_event_loop  # type: ignore[attr-defined]
    watch.wrap()
    watch.wrap_agent()
    sys.setswitchinterval(0.0005)
    threading.Thread(target=watch.sample, daemon=True).start()
    try:
        return mesh.daemon.cli.main(sys.argv[1:])
    finally:
        watch.write(os.environ.get("LOOPWATCH_OUT", "loopwatch.json"))


if __name__ == "__main__":
    sys.exit(main())
