"""The certificate expiry core: not-after times from certificate bytes, and the log lines due
a week and a day before (each once per certificate and not-after time), with literal times;
and the agent's timer that writes them."""

from __future__ import annotations

import asyncio
import datetime
import logging

import pytest
from cryptography.hazmat.primitives import serialization

from mesh.daemon.security import log_certificate_expiry
from mesh.security import pki
from mesh.security.cert_expiry import DAY_S, WEEK_S, ExpiryLog
from mesh.security.seal import StateSeal
from mesh.security.signing import Signer, Trust

NOW = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
T0 = NOW.timestamp()


def issued(ca_days: int = 3650, tls_days: int = 365, signing_days: int = 90) -> dict[str, bytes]:
    ca, ca_key = pki.create_ca("prod", NOW, ca_days)
    tls, _ = pki.issue_tls(ca, ca_key, "east", [], NOW, tls_days)
    signer, _ = pki.issue_signer(ca, ca_key, "east", NOW, signing_days)
    return {
        "tls": pki.pem_cert(tls),
        "signing": signer.public_bytes(serialization.Encoding.DER),
        "ca": pki.pem_cert(ca),
    }


def test_not_after_of_each_certificate_in_unix_seconds() -> None:
    files = issued()
    assert pki.not_after_times(files["tls"], files["signing"], files["ca"]) == {
        "tls": T0 + 365 * DAY_S,
        "signing": T0 + 90 * DAY_S,
        "ca": T0 + 3650 * DAY_S,
    }


def test_a_ca_bundle_counts_its_earliest_certificate() -> None:
    old, new = issued(ca_days=20), issued(ca_days=3650)
    bundle = new["ca"] + old["ca"]
    assert pki.not_after_times(None, None, bundle) == {"ca": T0 + 20 * DAY_S}


def test_missing_or_unreadable_certificates_are_left_out() -> None:
    files = issued()
    assert pki.not_after_times(None, None, None) == {}
    assert pki.not_after_times(b"junk", files["signing"], b"") == {"signing": T0 + 90 * DAY_S}


def test_a_warning_a_week_before_and_an_error_a_day_before_each_once() -> None:
    expiry = {"tls": T0 + 10 * DAY_S, "signing": T0 + 30 * DAY_S, "ca": T0 + 3650 * DAY_S}
    notices = ExpiryLog()
    assert notices.due(expiry, T0) == []
    # A week before (and a second later, and a day later): one warning.
    week = T0 + 10 * DAY_S - WEEK_S + 1
    [warning] = notices.due(expiry, week)
    assert (warning.cert, warning.level, warning.left_s) == ("tls", "warning", WEEK_S - 1)
    assert "tls certificate expires in 7.0 days" in warning.message()
    assert notices.due(expiry, week + 1) == []
    assert notices.due(expiry, week + DAY_S) == []
    # A day before: one error.
    day = T0 + 10 * DAY_S - DAY_S + 1
    [error] = notices.due(expiry, day)
    assert (error.cert, error.level) == ("tls", "error")
    assert notices.due(expiry, day + 3600) == []
    # Expired: one more error, then nothing.
    [expired] = notices.due(expiry, T0 + 10 * DAY_S + 1800)
    assert (expired.level, expired.message()) == (
        "error",
        "the tls certificate has expired (0.5 h ago)",
    )
    assert notices.due(expiry, T0 + 11 * DAY_S) == []


def test_an_agent_started_late_says_only_the_nearest_threshold() -> None:
    notices = ExpiryLog()
    [error] = notices.due({"signing": T0 + 3600}, T0)
    assert (error.cert, error.level) == ("signing", "error")
    assert notices.due({"signing": T0 + 3600}, T0 + 60) == []


def test_a_renewed_certificate_starts_afresh() -> None:
    notices = ExpiryLog()
    assert [n.level for n in notices.due({"tls": T0 + 3 * DAY_S}, T0)] == ["warning"]
    # Renewed for a year: nothing to say.
    assert notices.due({"tls": T0 + 365 * DAY_S}, T0 + DAY_S) == []
    # That one nears its end in turn: it gets its own warning.
    later = T0 + 360 * DAY_S
    [again] = notices.due({"tls": T0 + 365 * DAY_S}, later)
    assert (again.level, again.left_s) == ("warning", 5 * DAY_S)


@pytest.mark.asyncio
async def test_the_agent_logs_its_signing_certificate_lapsing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = datetime.datetime.now(datetime.UTC)
    ca, ca_key = pki.create_ca("prod", now, 3650)
    cert, key = pki.issue_signer(ca, ca_key, "east", now, 3)
    signer = Signer(pki.signer_key(pki.pem_cert(cert), pki.pem_key(key)))
    seal = StateSeal(signer, Trust.from_pem(pki.pem_cert(ca)))
    with caplog.at_level(logging.WARNING, logger="meshd.ring"):
        task = asyncio.create_task(log_certificate_expiry(None, seal, interval_s=3600))
        await asyncio.sleep(0)  # the task checks once, then waits for its next turn
        task.cancel()
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert record.getMessage().startswith("the signing certificate expires in 3.0 days")
