from collections.abc import Callable
from typing import Any

class Reader:
    zone: Any
    @property
    def wakeups(self) -> int: ...
    def __init__(
        self,
        fd: int,
        zone: Any,
        stats: Any,
        slow: Any,
        on_error: Callable[[BaseException | None], None],
        observe: Callable[[int], None],
        sample_every: int,
        max_batches: int,
    ) -> None: ...
    def __call__(self) -> None: ...

def serve(fd: int, zone: Any, stats: Any, slow: Any, on_error: Any, max_batches: int, /) -> int: ...
def answer(zone: Any, query: bytes, stats: Any, slow: Any, /) -> bytes | None: ...
def plain_blob(
    name: str,
    suffix: bytes,
    octets: bytes,
    srv: bytes,
    srv_count: int,
    ttl: int,
    max_addresses: int,
    turns: Any,
    /,
) -> tuple[bytes, bytes] | None: ...
def set_slice(ns: int, /) -> int: ...
def quad_texts(octets: bytes, /) -> tuple[str, ...] | None: ...
