"""When this agent's certificates expire, and when to say so in the log.

An agent uses three certificates: its TLS certificate (``--tls-cert``), its state-signing
certificate (``--signing-cert``) and the clusterset CA (``--tls-ca``, a bundle of one or
more). When the TLS or signing certificate lapses the other agents refuse this one, and its
cluster drops out of every other cluster's answers; nothing else warns before that. So:

- ``mesh.security.pki.not_after_times`` reads the not-after time of each (Unix seconds) from the
  bytes the agent has loaded, so a reload moves it; for the CA bundle, the earliest. The
  metrics adapter exports them as
  ``meshd_certificate_expiry_timestamp_seconds{cert="tls|signing|ca"}``.
- ``ExpiryLog`` decides which log lines to write: a warning once a certificate has less
  than a week left, an error once it has less than a day (and once it has expired), each
  once per certificate and not-after time, so a renewed certificate starts afresh. The
  agent calls it at start and then on a slow timer.

Pure: the caller passes the not-after times and ``now`` (Unix seconds).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

WEEK_S = 7 * 86400.0
DAY_S = 86400.0
CERTS = ("tls", "signing", "ca")
# (threshold, level name): the log lines a certificate gets as it nears its end.
THRESHOLDS = ((WEEK_S, "warning"), (DAY_S, "error"), (0.0, "error"))


@dataclass(frozen=True)
class ExpiryNotice:
    cert: str
    not_after: float
    left_s: float
    level: str  # "warning" or "error"

    def message(self) -> str:
        if self.left_s <= 0:
            return f"the {self.cert} certificate has expired ({-self.left_s / 3600:.1f} h ago)"
        return (
            f"the {self.cert} certificate expires in {self.left_s / 86400:.1f} days: renew it "
            "before then, or this cluster drops out of the other clusters' answers"
        )


class ExpiryLog:
    """Which expiry lines are due; each (cert, not-after, threshold) is said once."""

    def __init__(self) -> None:
        self._said: set[tuple[str, float, float]] = set()

    def due(self, expiry: Mapping[str, float], now: float) -> list[ExpiryNotice]:
        notices = []
        for cert in CERTS:
            if cert not in expiry:
                continue
            end = expiry[cert]
            left = end - now
            # Only the nearest threshold crossed: an agent started with a day left says the
            # error, not the week's warning as well.
            crossed = [(t, level) for t, level in THRESHOLDS if left < t]
            if not crossed:
                continue
            threshold, level = crossed[-1]
            already = {(cert, end, t) for t, _ in crossed}
            if (cert, end, threshold) not in self._said:
                notices.append(ExpiryNotice(cert, end, left, level))
            self._said |= already
        return notices
