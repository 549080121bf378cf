"""The manifests scan in a worker process, so that parsing never stalls the agent's loop.

Why a process: parsing 10 MB of YAML takes seconds of CPU, nearly all of it in Python
(PyYAML's constructor runs in Python even over the C parser). In a thread it would hold
the GIL: the loop would get it back only every switch interval (5 ms per turn), and the
garbage collector, run by the parser's millions of allocations, stops every thread for
up to half a second at a time (``bench/RESULTS.md``). In a process it costs the loop
nothing but reading the result. The worker runs at a lower CPU priority (nice 10): on a
host with few cores, DNS and SWIM in the agent come before the parse. It scans with the
garbage collector paused, then freezes what it keeps: a scan makes no reference cycles
(none found after scanning 20,000 services), while collector passes over the parser's
objects made an edit's scan several times slower.

Theory of operation. ``ScanWorker`` starts ``python -c ... _worker_main`` (only
``mesh.sources`` is imported there) and asks it for a scan whenever the source polls. The
worker holds a ``mesh.sources.scan.ManifestScanner`` (its cache of files and objects) and
the exports it last sent, and answers with a ``mesh.sources.delta.Delta`` against those:
so an idle poll carries a few bytes, and a one-line edit one service. The changed services
come in pieces of bounded cost; the loop reads each piece, unpickles and merges it
(``mesh.sources.delta.Merge``), and turns between pieces.

The worker is started with ``posix_spawn``, not ``fork`` (see ``ScanWorker.start``).
Messages, each a pickle behind a 4-byte big-endian length, on the worker's stdin and
stdout (its stderr is the agent's, for a traceback; anything it prints goes there too):

- agent to worker: ``"scan"``;
- worker to agent: ``("reading", [path, ...])`` when files changed and are about to be
  parsed (may be absent); then ``("error", message)`` when the directory cannot be listed,
  or ``("scan", namespaces, removed, problems, touched, pieces, full)`` followed by
  ``pieces`` messages, each a list of ``ExportedService``.

Failure: the worker exits when its stdin closes (the agent stopped, or died); it ignores
SIGINT and SIGTERM, which reach the agent's whole process group, so that it stops when
the agent is done with it (``close`` kills one that is still busy). A worker that dies, or
answers out of protocol, makes ``scan`` raise ``WorkerGoneError``; the source starts a new
one, whose first delta is full (it knows nothing of what was delivered).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import pickle
import signal
import struct
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from mesh.model import LocalExports
from mesh.sources.delta import Merge, chunks, delta
from mesh.sources.scan import ManifestDirectoryError, ManifestScanner, SourceProblem

__all__ = ["Reloaded", "ScanWorker", "WorkerGoneError"]

_HEADER = struct.Struct(">I")
MAX_MESSAGE = 1 << 30  # a sanity bound on one message, far above any piece
STOP_TIMEOUT_S = 5.0
WORKER_NICE = 10  # a parse is background work: DNS and SWIM in the agent come first
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])  # where ``mesh`` is importable


class WorkerGoneError(Exception):
    """The worker process exited or broke the protocol; the message says how."""


@dataclass(frozen=True)
class Reloaded:
    """One scan's outcome on the agent's side. ``exports`` None: the same as ``held``."""

    exports: LocalExports | None
    problems: list[SourceProblem]
    touched: list[str]


@dataclass
class _Pipes:
    """The worker process and the asyncio ends of its stdin and stdout."""

    process: subprocess.Popen[bytes]
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    read_transport: asyncio.BaseTransport


class ScanWorker:
    """One worker process scanning ``directory``; ``start``, then ``scan`` as often as
    wanted (one at a time), then ``close``."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._pipes: _Pipes | None = None

    @property
    def pid(self) -> int | None:
        return None if self._pipes is None else self._pipes.process.pid

    async def start(self) -> None:
        """Start the worker with ``posix_spawn`` (what ``subprocess`` uses for this call:
        pipes, ``close_fds=False``; CPython's own descriptors are not inheritable): unlike
        ``fork``, it runs no fork handlers in an agent that already has gRPC threads, and
        copies nothing of a large agent's memory."""
        code = (  # at a lower priority from the start: its imports are background work too
            f"import os, sys; os.nice({WORKER_NICE}); sys.path.insert(0, {_PACKAGE_ROOT!r}); "
            "from mesh.sources.offload import _worker_main; _worker_main(sys.argv[1])"
        )
        argv = [sys.executable, "-c", code, os.fspath(self.directory)]
        process = subprocess.Popen(  # noqa: ASYNC220 - posix_spawn returns at once
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=False
        )
        assert process.stdin is not None
        assert process.stdout is not None
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        read_transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), process.stdout
        )
        transport, protocol = await loop.connect_write_pipe(
            asyncio.streams.FlowControlMixin, process.stdin
        )
        writer = asyncio.StreamWriter(transport, protocol, None, loop)
        self._pipes = _Pipes(process, reader, writer, read_transport)

    async def scan(
        self,
        held: LocalExports | None,
        on_reading: Callable[[list[str]], None],
        on_piece: Callable[[int], None] | None = None,
    ) -> Reloaded:
        """Scan once; ``held`` is what the agent holds (what the worker's delta builds on).
        ``on_reading`` is called with the changed files before they are parsed, ``on_piece``
        with the number of services of each piece merged. Raises
        ``ManifestDirectoryError`` and ``WorkerGoneError``."""
        await self._send("scan")
        message = await self._receive()
        if message[0] == "reading":
            on_reading(list(message[1]))
            message = await self._receive()
        if message[0] == "error":
            raise ManifestDirectoryError(str(message[1]))
        if message[0] != "scan" or len(message) != 7:
            raise WorkerGoneError(f"manifest worker sent {str(message[0])[:40]!r}")
        _, namespaces, removed, problems, touched, pieces, full = message
        merge = Merge(held, namespaces, removed, full)
        for _ in range(pieces):
            piece = await self._receive()  # one bounded piece per turn of the loop
            merge.add(piece)
            if on_piece is not None:
                on_piece(len(piece))
        exports = merge.result()
        return Reloaded(exports if merge.changed else None, list(problems), list(touched))

    async def close(self) -> None:
        """Stop the worker (it exits at the end of its stdin; a busy one is terminated)."""
        pipes, self._pipes = self._pipes, None
        if pipes is None:
            return
        pipes.writer.close()  # an idle worker exits at the end of its stdin
        pipes.read_transport.close()
        process = pipes.process
        if process.poll() is None:  # a busy one would finish its scan first: no need
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        await _reap(process)

    async def _send(self, message: Any) -> None:
        if self._pipes is None:
            raise WorkerGoneError("manifest worker not started")
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            self._pipes.writer.write(_HEADER.pack(len(data)) + data)
            await self._pipes.writer.drain()
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise WorkerGoneError(f"manifest worker exited ({exc})") from None

    async def _receive(self) -> Any:
        if self._pipes is None:
            raise WorkerGoneError("manifest worker not started")
        reader = self._pipes.reader
        try:
            (size,) = _HEADER.unpack(await reader.readexactly(_HEADER.size))
            if size > MAX_MESSAGE:
                raise WorkerGoneError(f"manifest worker sent a message of {size} bytes")
            return pickle.loads(await reader.readexactly(size))
        except asyncio.IncompleteReadError:
            code = await _reap(self._pipes.process)
            raise WorkerGoneError(f"manifest worker exited with status {code}") from None


async def _reap(process: subprocess.Popen[bytes]) -> int:
    """Wait for ``process`` to end (killing it after ``STOP_TIMEOUT_S``); its status."""
    try:
        return await asyncio.wait_for(asyncio.to_thread(process.wait), STOP_TIMEOUT_S)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        return await asyncio.to_thread(process.wait)


# --------------------------------------------------------------------------- the worker


def _worker_main(directory: str) -> None:
    """The worker process: answer each ``"scan"`` on stdin until stdin ends."""
    # The agent decides when the worker stops (it shares the agent's process group, which
    # a terminal's Ctrl-C or a supervisor's group SIGTERM reaches first).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    requests = sys.stdin.buffer
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # a stray print must not break replies
    scanner = ManifestScanner(Path(directory))
    sent: LocalExports | None = None
    with contextlib.suppress(BrokenPipeError):  # the agent is gone: so is the worker
        while _read(requests) is not None:
            sent = _answer(scanner, sent, replies)


def _answer(
    scanner: ManifestScanner, sent: LocalExports | None, replies: BinaryIO
) -> LocalExports | None:
    """Scan and send the delta against ``sent``; the exports the agent now holds."""
    gc.disable()  # a scan makes no reference cycles, only millions of objects
    try:
        scan = scanner.scan(lambda paths: _write(replies, ("reading", paths)))
    except ManifestDirectoryError as exc:
        _write(replies, ("error", str(exc)))
        return sent
    finally:
        gc.freeze()  # what the scanner keeps (its cache) is never examined again
        gc.enable()
    change = delta(sent, scan.exports)
    pieces = list(chunks(change.changed))
    header = (change.namespaces, change.removed, scan.problems, scan.touched)
    _write(replies, ("scan", *header, len(pieces), change.full))
    for piece in pieces:
        _write(replies, piece)
    return scan.exports


def _read(stream: BinaryIO) -> Any:
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    (size,) = _HEADER.unpack(header)
    data = stream.read(size)
    return pickle.loads(data) if len(data) == size else None


def _write(stream: BinaryIO, message: Any) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()
