"""Signed SWIM claims: a member speaks only for itself, an accuser only in its own name.

With TLS, mutual TLS tells a receiver which cluster *sent* a datagram
(``mesh.transport.gossip`` checks the sender's id against its certificate), but a SWIM
update is news about somebody else, relayed from member to member. Without signatures any
member holding a valid certificate could say that another cluster's agent left or died, move
it to another address, revive a dead one, or fake the independent confirmations that shorten
a suspicion (Lifeguard). So every update carries a proof, made with the cluster's
state-signing key (``mesh.security.signing``, the key that seals its records), and every
receiver checks it before the core sees it:

- ``Alive(member, cluster, address, incarnation)`` and ``Left(member, incarnation)`` are
  signed by the member's cluster (the cluster part of its id, which an ``Alive``'s cluster
  id must equal);
- ``Suspect`` and ``Dead(member, incarnation, source)`` are signed by the source's cluster;
- a push-pull ``Member`` record carries the claim that set its incarnation: the member's
  ``Left`` for a left record, else its ``Alive`` at that incarnation and address (an
  accusation changes neither: ``mesh.swim.table``), so a suspect or dead record is still
  the member's own word about its incarnation, and only the state is the sender's view,
  which the core treats as a reason to suspect, never as a verdict.

The signed bytes are ``signed_message(SWIM_DOMAIN, clusterset, signer, body)``, the body a
kind byte, the fields length-prefixed and the incarnation as 8 bytes, so a claim cannot pass
for a record, for another kind of claim, or in another clusterset. A proof is the 16-byte key
id and the 64-byte Ed25519 signature; relays forward it untouched. A replayed claim is
harmless: SWIM orders claims by incarnation, so an old one is stale.

What stays possible: a member can accuse anyone under its own name (SWIM needs accusers);
the accused refutes, and one cluster cannot pose as several confirmations. The agent also
ignores a dead verdict about a cluster it exchanged with recently (``mesh.daemon.agent``).

A receiver needs the signer's key: the ring's record chunks carry every origin's
certificate, and a push-pull carries the certificates behind its members' proofs, so a new
agent can check a table before any record arrives (the pump sends them all to an address
once per ``CERTIFICATES_RESEND_S``, and only its own certificate in between: at 200
clusters they are about 100 KB). An update whose key is still unknown is dropped and
counted; its retransmissions, or the next push-pull, bring it again.

Costs: a verified (signer, body, proof) is remembered, so a retransmitted update or an
unchanged push-pull table is checked once; this agent's own claims are signed once each.
What a sender can make us verify is bounded: each sending cluster gets ``VERIFY_RATE`` new
signature checks (a token bucket), and a claim that an honest sender never sends (unsigned,
malformed, or with a bad signature) ends the datagram there. A claim whose key we lack, or
whose certificate has expired, is one an honest relay may pass on: it is dropped alone.
Everything dropped is counted by reason: ``unsigned``, ``malformed``, ``verify_budget``,
``rest_of_message`` (claims left unread after a bad one) and ``mesh.security.signing.REASONS``.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TypeVar

from mesh.ring.limits import Rate, TokenBuckets
from mesh.security.seal import StateSeal
from mesh.security.signing import (
    KEY_ID_BYTES,
    SWIM_DOMAIN,
    Seal,
    SignedStateError,
    Signer,
    Trust,
    verify_sealed,
)
from mesh.swim.messages import (
    Ack,
    Alive,
    Gossip,
    Left,
    Member,
    MemberState,
    Message,
    Ping,
    PingReq,
    PushPull,
    Suspect,
    Update,
)

SIGNATURE_BYTES = 64
PROOF_BYTES = KEY_ID_BYTES + SIGNATURE_BYTES
MAX_CERTIFICATES = 256  # a push-pull names at most this many signing certificates
MAX_REMEMBERED = 16_384  # verified claims (and certificates) kept to skip a second check
# How often one address is sent every certificate behind a push-pull; in between, only our
# own (a peer learns the rest from record chunks within a gossip round anyway).
CERTIFICATES_RESEND_S = 300.0
# New signature checks a sending cluster may cost us: a newcomer's first table of a
# 2,000-member ring fits the burst; sustained, 500 checks a second are about 30 ms of CPU.
VERIFY_RATE = Rate(per_second=500.0, burst=2500.0)
# Reasons an honest sender never gives us: the rest of its datagram is not read.
_DISHONEST = frozenset({"unsigned", "malformed", "bad_signature"})
Claim = Update | Member
C = TypeVar("C", bound=Claim)


def cluster_of(member_id: str) -> str:
    return member_id.partition("/")[0]


def _text(value: str) -> bytes:
    encoded = value.encode()
    return struct.pack(">H", len(encoded)) + encoded


def claim_of(item: Claim) -> tuple[str, bytes]:
    """(the cluster that must sign it, the body it signs)."""
    if isinstance(item, Member):
        if item.state is MemberState.LEFT:
            return claim_of(Left(item.id, item.incarnation))
        return claim_of(Alive(item.id, item.cluster_id, item.address, item.incarnation))
    if isinstance(item, Alive):
        fields = _text(item.member_id) + _text(item.cluster_id) + _text(item.address)
        return cluster_of(item.member_id), b"A" + fields + struct.pack(">Q", item.incarnation)
    if isinstance(item, Left):
        body = b"L" + _text(item.member_id) + struct.pack(">Q", item.incarnation)
        return cluster_of(item.member_id), body
    kind = b"S" if isinstance(item, Suspect) else b"D"
    incarnation = struct.pack(">Q", item.incarnation)
    body = kind + _text(item.member_id) + incarnation + _text(item.source_id)
    return cluster_of(item.source_id), body


def _authored_by(item: Claim, self_id: str) -> bool:
    if isinstance(item, Member):
        return item.id == self_id
    if isinstance(item, Alive | Left):
        return item.member_id == self_id
    return item.source_id == self_id


class SwimAuth:
    """Signs this agent's SWIM claims and admits only the verified claims of others."""

    def __init__(self, seal: StateSeal, self_id: str, reject: Callable[[str], None]) -> None:
        self.seal = seal
        self.self_id = self_id
        self.reject = reject
        self._signed: dict[bytes, bytes] = {}
        self._signed_by: Signer | None = None
        # (signer, body, proof) -> when the key that verified it expires
        self._verified: dict[tuple[str, bytes, bytes], float] = {}
        self._certificates_seen: dict[bytes, None] = {}
        self._trusted_by: Trust | None = None
        self._budget = TokenBuckets(VERIFY_RATE)

    def keys_changed(self) -> bool:
        """True once after the signing key changed: the core should announce a new
        incarnation, so that peers hold a claim of ours made with the new key."""
        changed = self._signed_by is not None and self.seal.signer is not self._signed_by
        self._keys()
        return changed

    def _keys(self) -> tuple[Signer, Trust]:
        """The current keys; what was signed or verified with replaced ones is forgotten."""
        signer, trust = self.seal.signer, self.seal.trust
        if signer is not self._signed_by:
            self._signed, self._signed_by = {}, signer
        if trust is not self._trusted_by:
            self._verified, self._certificates_seen, self._trusted_by = {}, {}, trust
        return signer, trust

    # --- outgoing ------------------------------------------------------------------------

    def sign(self, message: Message) -> Message:
        """``message`` with a proof on every claim this agent authored."""
        if isinstance(message, PushPull):
            members = tuple(self._signed_claim(m) for m in message.members)
            return replace(message, members=members)
        if not isinstance(message, Ping | Ack | PingReq | Gossip):
            return message
        if not any(_authored_by(u, self.self_id) for u in message.updates):
            return message
        return replace(message, updates=tuple(self._signed_claim(u) for u in message.updates))

    def _signed_claim(self, item: C) -> C:
        if not _authored_by(item, self.self_id):
            return item
        signer, _trust = self._keys()
        _cluster, body = claim_of(item)
        proof = self._signed.get(body)
        if proof is None:
            sealed = signer.seal(SWIM_DOMAIN, body)
            proof = bytes.fromhex(sealed.key_id) + sealed.signature
            if len(self._signed) >= 1024:
                self._signed.clear()
            self._signed[body] = proof
        return replace(item, proof=proof)

    def certificates(self, message: PushPull, now: float, everyone: bool = True) -> list[bytes]:
        """The signing certificates a receiver needs to check ``message``: ours, then (with
        ``everyone``) those of the keys behind its members' proofs that this agent holds
        and that are valid at ``now`` (epoch seconds)."""
        signer, trust = self._keys()
        out = [signer.key.certificate_der]
        seen = {signer.key.key_id}
        for member in message.members if everyone else ():
            key_id = member.proof[:KEY_ID_BYTES].hex()
            if len(member.proof) != PROOF_BYTES or key_id in seen:
                continue
            seen.add(key_id)
            der = trust.certificate(key_id, now)
            if der is not None:
                out.append(der)
                if len(out) >= MAX_CERTIFICATES:
                    break
        return out

    # --- incoming ------------------------------------------------------------------------

    def admit(self, message: Message, certificates: Sequence[bytes], now: float) -> Message:
        """``message`` with only the claims whose proofs verify (``now``: epoch seconds)."""
        self._learn(certificates, now)
        sender = cluster_of(message.source_id)
        if isinstance(message, PushPull):
            return replace(message, members=self._admitted(message.members, sender, now))
        if not isinstance(message, Ping | Ack | PingReq | Gossip) or not message.updates:
            return message
        admitted = self._admitted(message.updates, sender, now)
        if len(admitted) == len(message.updates):
            return message
        return replace(message, updates=admitted)

    def _admitted(self, items: Sequence[C], sender: str, now: float) -> tuple[C, ...]:
        out = []
        for i, item in enumerate(items):
            reason = self._check(item, sender, now)
            if reason is None:
                out.append(item)
                continue
            self.reject(reason)
            if reason in _DISHONEST or reason == "verify_budget":
                if i + 1 < len(items):
                    self.reject("rest_of_message")
                break
        return tuple(out)

    def _check(self, item: Claim, sender: str, now: float) -> str | None:
        """None when ``item``'s proof is its signer's signature, else the reason."""
        if not item.proof:
            return "unsigned"
        cluster_id = item.cluster_id if isinstance(item, Member | Alive) else None
        member_id = item.id if isinstance(item, Member) else item.member_id
        if len(item.proof) != PROOF_BYTES or (
            cluster_id is not None and cluster_id != cluster_of(member_id)
        ):
            return "malformed"
        signer_cluster, body = claim_of(item)
        memo = (signer_cluster, body, item.proof)
        if now <= self._verified.get(memo, -1.0):
            return None
        if not self._budget.allow(sender, now):
            return "verify_budget"
        key_id, signature = item.proof[:KEY_ID_BYTES].hex(), item.proof[KEY_ID_BYTES:]
        sealed = Seal(body, signature, key_id)
        trust = self._keys()[1]
        try:
            verify_sealed(SWIM_DOMAIN, signer_cluster, sealed, b"", trust, now)
        except SignedStateError as exc:
            return exc.reason
        if len(self._verified) >= MAX_REMEMBERED:
            self._verified.pop(next(iter(self._verified)))
        self._verified[memo] = trust.key_of(signer_cluster, key_id, b"", now).not_after
        return None

    def _learn(self, certificates: Sequence[bytes], now: float) -> None:
        """Verify and keep the signing certificates a push-pull brought (and our own, so
        that our own claims relayed back verify too)."""
        signer, trust = self._keys()
        for der in (signer.key.certificate_der, *certificates[:MAX_CERTIFICATES]):
            digest = hashlib.sha256(der).digest()
            if digest in self._certificates_seen:
                continue
            try:
                trust.add_certificate(der, now)
            except SignedStateError as exc:
                self.reject(exc.reason)
                continue
            if len(self._certificates_seen) >= MAX_REMEMBERED:
                self._certificates_seen.pop(next(iter(self._certificates_seen)))
            self._certificates_seen[digest] = None
