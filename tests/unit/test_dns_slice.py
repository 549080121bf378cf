"""The answering thread's scheduler time slice (``_fastpath.set_slice``, ``slice_ns``).

Each check runs on a thread of its own (a slice is a thread's), and reads what the kernel
says of that thread (``/proc/self/task/<tid>/sched``). On a kernel before 6.12 the call
must fail cleanly and leave the default; on this one it must take.
"""

from __future__ import annotations

import asyncio
import errno
import os
import platform
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dnsserver import server as server_module
from dnsserver.server import DnsServer, DnsServerConfig
from dnsserver.zone import Zone

_fastpath = server_module._fastpath
pytestmark = pytest.mark.skipif(_fastpath is None, reason="the C fast path is not built")

SHORT_NS = 100_000


def kernel_has_custom_slices() -> bool:
    """Linux 6.12 and later honour sched_runtime of a SCHED_OTHER thread."""
    found = re.match(r"(\d+)\.(\d+)", platform.release())
    assert found is not None
    return (int(found[1]), int(found[2])) >= (6, 12)


def slice_of(tid: int, pid: int | str = "self") -> int | None:
    """The thread's slice in ns (``se.slice``), or None where the kernel does not show it."""
    text = Path(f"/proc/{pid}/task/{tid}/sched").read_text()
    found = re.search(r"^se\.slice\s*:\s*(\d+)", text, re.M)
    return int(found[1]) if found else None


def on_a_thread(work: Callable[[], Any]) -> Any:
    """``work()``'s result, run on a new thread (its exception re-raised here)."""
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(_capture(work)))
    thread.start()
    thread.join(10)
    result, error = out[0]
    if error is not None:
        raise error
    return result


def _capture(work: Callable[[], Any]) -> tuple[Any, BaseException | None]:
    try:
        return work(), None
    except BaseException as exc:  # handed to the test's thread
        return None, exc


def test_set_slice_takes_and_keeps_the_nice_value() -> None:
    assert _fastpath is not None

    def work() -> tuple[int, int | None, int | None, int]:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, 5)  # only this thread: Linux nice is per thread
        before = slice_of(tid)
        failed = _fastpath.set_slice(SHORT_NS)
        return failed, before, slice_of(tid), os.getpriority(os.PRIO_PROCESS, tid)

    failed, before, after, nice = on_a_thread(work)
    assert nice == 5
    if kernel_has_custom_slices():
        assert failed == 0
        assert before != SHORT_NS
        assert after == SHORT_NS
    else:
        assert failed in (errno.EINVAL, errno.ENOSYS, errno.E2BIG, errno.EOPNOTSUPP)
        assert after == before


def test_set_slice_refuses_what_is_not_a_duration() -> None:
    assert _fastpath is not None
    with pytest.raises(OverflowError):
        _fastpath.set_slice(-1)
    with pytest.raises(TypeError):
        _fastpath.set_slice("100us")  # type: ignore[arg-type]


@pytest.mark.parametrize("asked", [SHORT_NS, 0], ids=["short", "default"])
def test_a_server_gives_its_loops_thread_the_slice_asked_for(asked: int) -> None:
    def work() -> tuple[bool, int | None, int | None]:
        tid = threading.get_native_id()
        before = slice_of(tid)

        async def serve() -> bool:
            config = DnsServerConfig("127.0.0.1", 0, slice_ns=asked)
            server = DnsServer(config, Zone("clusterset.local", serial=1))
            await server.start()
            await server.close()
            return server.slice_set

        return asyncio.run(serve()), before, slice_of(tid)

    slice_set, before, after = on_a_thread(work)
    if asked and kernel_has_custom_slices():
        assert slice_set
        assert after == SHORT_NS
    else:
        assert not slice_set
        assert after == before
