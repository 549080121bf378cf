"""The manifests source: a directory of Kubernetes YAML, watched by polling.

Theory of operation
-------------------
``mesh.sources.scan`` reads the directory: which files changed (by ``stat``), their objects
(each file parsed once per change), the exports they make together (``translate``), and
the problems found. A bad file keeps its last good objects; a vanished directory keeps the
last exports (``run`` delivers nothing) until it is back.

``run`` polls every ``poll_interval_s``, and at once when inotify reports a file written,
created, moved or deleted under the directory (``mesh.sources.notify``: an edit is read in
milliseconds instead of half a poll on average). Where the watch sees the whole tree on a
local file system (``DirectoryWatch.complete``), the poll is only a backstop, every
``watched_poll_s``; elsewhere (network file systems, trees past the watch limit) it stays
at ``poll_interval_s`` for what inotify misses;
and calls ``on_change`` with the first exports and
then whenever they differ from the last ones delivered. The scan runs in a worker process
(``mesh.sources.offload``), because parsing a large file takes seconds of CPU: the event
loop only reads the result, a delta against what it holds, in pieces of bounded cost,
turning between pieces (``mesh.sources.delta``). So DNS, SWIM and gossip keep answering
while a 10 MB file is parsed, and services that did not change cost nothing. ``reloading``
names the files being read meanwhile (empty when idle). A worker that dies is replaced at
the next poll; its first answer is the whole state, merged so that unchanged services
keep their objects.

``load`` scans in the calling thread (for tools and tests): it blocks.

Problems go to ``on_problem`` (by default a warning on the ``meshd.manifests`` logger) once
each: a problem present in the previous scan is not reported again, unless its file changed
since. ``problems`` always holds the problems of the latest scan, for a status page.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

from mesh.model import LocalExports
from mesh.sources.notify import DirectoryWatch
from mesh.sources.offload import ScanWorker, WorkerGoneError
from mesh.sources.scan import ManifestDirectoryError, ManifestScanner
from mesh.sources.translate import SourceProblem, parse_documents, translate

__all__ = [
    "ManifestDirectoryError",
    "ManifestSource",
    "SourceProblem",
    "parse_documents",
    "translate",
]

log = logging.getLogger("meshd.manifests")
WORKER_RESTART_S = 1.0  # at most one new worker process a second
# The backstop poll where inotify sees the whole tree (``DirectoryWatch.complete``): it only
# catches a write into a subdirectory made since the last wake-up, before its watch was
# added. Four round trips a second to the scan worker were most of an idle agent's CPU.
WATCHED_POLL_S = 2.0


def _log_problem(problem: SourceProblem) -> None:
    log.warning("%s", problem)


class ManifestSource:
    """Scans ``directory`` for manifests and reports what it exports."""

    def __init__(
        self,
        directory: Path,
        on_change: Callable[[LocalExports], None],
        on_problem: Callable[[SourceProblem], None] | None = None,
        poll_interval_s: float = 0.25,
        on_progress: Callable[[int], None] | None = None,
        watched_poll_s: float = WATCHED_POLL_S,
    ) -> None:
        self.directory = Path(directory)
        self.poll_interval_s = poll_interval_s
        self.watched_poll_s = max(poll_interval_s, watched_poll_s)
        self.problems: list[SourceProblem] = []
        self.reloading: tuple[str, ...] = ()  # files being read and parsed by ``run`` now
        self.scans = 0  # scans completed, by ``load`` or ``run``
        self._on_change = on_change
        self._on_problem = on_problem if on_problem is not None else _log_problem
        self._on_progress = on_progress  # told how many services each piece brought in
        self._reported: set[SourceProblem] = set()
        self._scanner: ManifestScanner | None = None  # ``load``'s, in this process
        self._worker: ScanWorker | None = None  # ``run``'s
        # ``run``'s wake-up on changes; None where inotify is not available (poll only).
        self._watch: DirectoryWatch | None = None
        self._watch_tried = False

    def load(self) -> LocalExports:
        """Scan now, here; report new problems; return the exports. Raises
        ManifestDirectoryError."""
        if self._scanner is None:
            self._scanner = ManifestScanner(self.directory)
        scan = self._scanner.scan()
        self._scanned(scan.problems, scan.touched)
        return scan.exports

    async def run(self) -> None:
        """Scan forever in a worker process, delivering exports when they change; cancel
        to stop (the worker stops with it).

        An exception raised by ``on_change`` or ``on_problem`` ends ``run`` with it.
        """
        delivered: LocalExports | None = None
        try:
            while True:
                if self._worker is None:
                    self._worker = ScanWorker(self.directory)
                    await self._worker.start()
                try:
                    reloaded = await self._worker.scan(
                        delivered, self._on_reading, self._on_progress
                    )
                except ManifestDirectoryError as exc:
                    # Keep the last exports: a vanished directory withdraws nothing.
                    self._scanned([SourceProblem(str(self.directory), str(exc))], [])
                except WorkerGoneError as exc:
                    log.warning("%s; starting a new one", exc)
                    await self._stop_worker()
                    await asyncio.sleep(WORKER_RESTART_S)
                else:
                    self._scanned(reloaded.problems, reloaded.touched)
                    if reloaded.exports is not None:
                        delivered = reloaded.exports
                        self._on_change(delivered)
                finally:
                    self.reloading = ()
                await self._next_scan()
        finally:
            if self._watch is not None:
                self._watch.close()
                self._watch, self._watch_tried = None, False
            await self._stop_worker()

    async def _next_scan(self) -> None:
        """Until the next poll, or less when the directory watch reports a change."""
        if not self._watch_tried:
            self._watch_tried = True
            fresh = DirectoryWatch(self.directory)
            self._watch = fresh if fresh.start() else None
        watch = self._watch
        if watch is None:
            await asyncio.sleep(self.poll_interval_s)
            return
        wait_s = self.watched_poll_s if watch.complete else self.poll_interval_s
        with contextlib.suppress(TimeoutError):
            # asyncio.timeout, not wait_for: 3.11's wait_for can lose a cancellation
            async with asyncio.timeout(wait_s):
                await watch.changed.wait()
        if watch.changed.is_set() or not watch.watching:
            watch.changed.clear()  # before the scan: an edit during it wakes us again
            watch.renew()

    @property
    def worker_pid(self) -> int | None:
        """The process ``run`` scans in, while it runs."""
        return None if self._worker is None else self._worker.pid

    async def _stop_worker(self) -> None:
        worker, self._worker = self._worker, None
        if worker is not None:
            await worker.close()

    def _on_reading(self, paths: list[str]) -> None:
        self.reloading = tuple(paths)

    # ------------------------------------------------------------------ problems

    def _scanned(self, problems: list[SourceProblem], touched: list[str]) -> None:
        """One scan done: files that changed may have their problems reported again."""
        self.scans += 1
        if touched:
            changed = set(touched)
            self._reported = {p for p in self._reported if p.origin not in changed}
        self._publish(problems)

    def _publish(self, problems: list[SourceProblem]) -> None:
        """Make ``problems`` the current ones; report those not reported before."""
        self.problems = problems
        fresh = [p for p in dict.fromkeys(problems) if p not in self._reported]
        self._reported = set(problems)
        for problem in fresh:
            self._on_problem(problem)
