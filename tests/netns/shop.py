"""What the examples' three clusters export, and what each agent answers with all links up.

The names the namespace tests and the failover benchmark query, and ``EXPECTED``: every
agent's answer to each of them at baseline, from ``examples/`` (db is headless and exported
by all three; web prefers the local cluster; east's cart endpoint is not ready, so cart is
west's: east's region-mate, and for south the nearest tier that has one; checkout is
exported by south alone; ``nope`` does not exist).
"""

from __future__ import annotations

from tests.netns.harness import Answer, Lab

ZONE = "shop.svc.clusterset.local."
DB, WEB, CART, CHECKOUT, MISSING = (
    f"{s}.{ZONE}" for s in ("db", "web", "cart", "checkout", "nope")
)
DB_OF = {"east": "10.1.1.5", "west": "10.2.1.5", "south": "10.3.1.5"}
ALL_DB = frozenset(DB_OF.values())


def ok(*addresses: str) -> Answer:
    return Answer("NOERROR", frozenset(addresses))


EXPECTED: dict[str, dict[str, Answer]] = {
    "east": {WEB: ok("10.1.0.10", "10.1.0.11"), CART: ok("10.2.2.10")},
    "west": {WEB: ok("10.2.0.10", "10.2.0.11"), CART: ok("10.2.2.10")},
    "south": {WEB: ok("10.3.0.10"), CART: ok("10.2.2.10")},
}
for _answers in EXPECTED.values():
    _answers.update({DB: Answer("NOERROR", ALL_DB), CHECKOUT: ok("10.3.4.10")})
    _answers[MISSING] = Answer("NXDOMAIN", frozenset())


def snapshot(lab: Lab) -> dict[str, dict[str, Answer | None]]:
    """Every agent's answer to every name of ``EXPECTED``."""
    return {c: {name: lab.answer(c, name) for name in EXPECTED[c]} for c in lab.agents}
