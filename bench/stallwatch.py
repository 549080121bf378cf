"""Run ``meshd`` with a watchdog that records where the event loop stalls.

Usage: ``.venv/bin/python bench/stallwatch.py run --cluster-id ... [any meshd run flags]``
with ``STALLWATCH_LOG`` (default ``stalls.log``) and ``STALLWATCH_MS`` (default 60).

A task on the agent's loop stamps the time every 5 ms; a thread checks the stamp every
10 ms and, when it is older than ``STALLWATCH_MS``, writes the main thread's stack (the
innermost 25 frames, from ``sys._current_frames``) once per stall. On a shared machine
some stalls are the kernel running something else (the stack then shows wherever the
loop was); a stall the agent causes shows the same code again and again. This is how the
zone rebuild's batches of 50 large headless services were found (bench/RESULTS.md).
``grep -c "^--- stall"`` counts the stalls; a threshold under about 20 ms reports the
stamping's own period.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
import traceback
from typing import Any

import mesh.daemon.cli
from mesh.daemon.runner import serve

STAMP_EVERY_S = 0.005
CHECK_EVERY_S = 0.01


def watch(stamp: list[float], log_path: str, threshold_s: float) -> None:
    main_id = threading.main_thread().ident
    reported = 0.0
    with open(log_path, "a", encoding="utf-8") as out:
        while True:
            time.sleep(CHECK_EVERY_S)
            late = time.monotonic() - stamp[0]
            if late > threshold_s and stamp[0] != reported:
                reported = stamp[0]
                frame = sys._current_frames().get(main_id or 0)
                out.write(f"--- stall {late * 1000:.0f} ms (pid {os.getpid()})\n")
                out.write("".join(traceback.format_stack(frame, limit=25)))
                out.flush()


async def stamped(settings: Any, stop: asyncio.Event) -> int:
    stamp = [time.monotonic()]
    threshold_s = float(os.environ.get("STALLWATCH_MS", "60")) / 1000
    log_path = os.environ.get("STALLWATCH_LOG", "stalls.log")
    threading.Thread(target=watch, args=(stamp, log_path, threshold_s), daemon=True).start()

    async def tick() -> None:
        while True:
            stamp[0] = time.monotonic()
            await asyncio.sleep(STAMP_EVERY_S)

    ticker = asyncio.get_running_loop().create_task(tick())
    try:
        return await serve(settings, stop)
    finally:
        ticker.cancel()


if __name__ == "__main__":
    mesh.daemon.cli.serve = stamped  # type: ignore[attr-defined]
    sys.exit(mesh.daemon.cli.main(sys.argv[1:]))
