"""The event loop factory: uvloop when it is installed (the only module importing it).

uvloop's datagram path is what lets a Python DNS server keep up with Knot and Unbound; the
stock asyncio loop answers about four times fewer queries per second (see bench/).
"""

from __future__ import annotations

import asyncio


def new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency, but stay runnable
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop
