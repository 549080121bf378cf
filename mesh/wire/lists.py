"""The lists a push-pull carries (digests and members), with the hashes that let it skip them.

At steady state every agent holds the same digests and reaches the same members, so each
side of an exchange sends the hash of each list and leaves out a list whose hash the other
side last reported as its own: an idle exchange then costs about sixty bytes of protobuf
each way instead of growing with the ring. A side that cannot tell what the other holds
(its hash differs and the list was left out) answers with its own list and asks again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from mesh.ring.catalog import Digest
from mesh.wire.codec import digest_to_pb
from mesh.wire.v1 import gossip_pb2 as pb


@dataclass(frozen=True, slots=True)
class Lists:
    """This agent's digests and members for one message, with their hashes."""

    digests: list[Digest]
    digests_pb: list[pb.Digest]
    digests_hash: bytes
    members: list[pb.Member]
    members_hash: bytes

    @classmethod
    def of(cls, digests: list[Digest], members: list[pb.Member]) -> Lists:
        digests_pb = [digest_to_pb(d) for d in digests]
        return cls(digests, digests_pb, _hash(digests_pb), members, _hash(members))

    def put(
        self,
        message: pb.PushPullRequest | pb.PushPullResponse,
        their_digests: bytes,
        their_members: bytes,
    ) -> None:
        """Our hashes, and each list the other side's hash says it does not have already."""
        message.digests_hash = self.digests_hash
        message.members_hash = self.members_hash
        if their_digests != self.digests_hash:
            message.digests.extend(self.digests_pb)
        if their_members != self.members_hash:
            message.members.extend(self.members)


def _hash(items: Iterable[pb.Digest] | Iterable[pb.Member]) -> bytes:
    h = hashlib.sha256()
    for item in items:
        data = item.SerializeToString(deterministic=True)
        h.update(len(data).to_bytes(4, "big"))
        h.update(data)
    return h.digest()[:16]
