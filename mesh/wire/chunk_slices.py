"""A large ``OriginChunk`` cut into consecutive smaller ones, one event-loop step each.

Why. One message carries up to 256 KiB of records (about 1,400); opening and applying
them in one go held the receiver's event loop for 150-200 ms, and DNS and SWIM waited.
The agent instead opens and applies one slice at a time and lets the loop turn between
them (``mesh.wire.exchange``).

Each slice is a valid chunk on its own, so the store's rules hold slice by slice with no
new state (``mesh.ring.records``): it has the chunk's origin, generation, reset flag and
snapshot target; its ``from_version`` is the last version of the slice before it (the
chunk's own for the first), so it continues exactly what that slice left; it carries every
batch of the chunk (the opener verifies each batch once and remembers it); and only the
last slice carries the head, so the copy is checked once it holds every record. Progress
thus only moves over records actually applied; if something else changes the copy between
two slices (another peer's chunk, a reset swapped in), the next slice is taken or refused
by the same rules as any chunk, and the stream continues from the receiver's progress at the
next exchange.

Pure: messages in, messages out.
"""

from __future__ import annotations

from mesh.wire.record_batch import ChunkError, parse
from mesh.wire.v1 import gossip_pb2 as pb

SLICE_RECORDS = 256  # records of one slice: a few ms to open and apply, well under 50
SLICE_BYTES = 64 * 1024  # and bytes of records (large services cost more per record)


def slices(
    msg: pb.OriginChunk, records: int = SLICE_RECORDS, size: int = SLICE_BYTES
) -> list[pb.OriginChunk]:
    """``msg`` cut into slices of at most ``records`` records and about ``size`` bytes of
    them (``[msg]`` when it is that small). A record whose version cannot be read ends the
    cut there: that last slice holds it, and the opener rejects it."""
    cuts = _cuts(msg, records, size)
    if len(cuts) == 1:
        return [msg]
    out, begin, from_version = [], 0, msg.from_version
    for end in cuts:
        last = end == len(msg.records)
        out.append(
            pb.OriginChunk(
                cluster_id=msg.cluster_id,
                replica=msg.replica,
                generation=msg.generation,
                from_version=from_version,
                reset=msg.reset,
                records=msg.records[begin:end],
                head=msg.head if last else b"",
                certificate=msg.certificate,
                clusterset=msg.clusterset,
                target=msg.target,
                batches=msg.batches,
            )
        )
        if last:
            break
        try:
            from_version = _version(msg.records[end - 1])
        except ChunkError:
            break
        begin = end
    return out


def _cuts(msg: pb.OriginChunk, records: int, size: int) -> list[int]:
    """Where each slice ends (an index into ``msg.records``); the last is the end."""
    cuts, taken, start = [], 0, 0
    for at, data in enumerate(msg.records):
        taken += len(data)
        if at + 1 - start >= records or taken >= size:
            cuts.append(at + 1)
            start, taken = at + 1, 0
    if not cuts or cuts[-1] != len(msg.records):
        cuts.append(len(msg.records))
    return cuts


def _version(data: bytes) -> int:
    sealed = parse(pb.Sealed(), data, "undecodable seal")
    return int(parse(pb.Record(), sealed.body, "undecodable record").version)
