"""Fixtures of the namespace tests: one lab of three clusters per module, reset per test.

``lab`` builds the namespaces and starts the three agents once per module (starting three
Python agents on two shared cores takes seconds); its finaliser removes every namespace,
TUN device and process even when a test fails. ``healthy_lab`` puts the lab back to its
baseline before each test: links healed, every agent running, the examples' manifests in
place, and every agent answering the baseline (``EXPECTED``) without a break for longer than
the peer timeout, so that an agent the previous test restarted has finished starting (on a
loaded machine its first catch-up can hold its event loop long enough for its peers to
drop it once more) before the next test starts counting. A machine that cannot make
namespaces fails these tests with the reason; they are never skipped.
"""

from __future__ import annotations

import os
import random
import shutil
import time
from collections.abc import Iterator

import pytest

from tests.netns.harness import REPO, Lab, RingSettings, wait_until
from tests.netns.nsutil import NetnsUnavailableError
from tests.netns.shop import EXPECTED, snapshot


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    seed = int(os.environ.get("MESHD_NETNS_SEED", random.randrange(2**31)))
    settings = RingSettings()
    the_lab = Lab(tmp_path_factory.mktemp("netns"), settings, seed)
    try:
        try:
            the_lab.up()
        except (NetnsUnavailableError, RuntimeError, OSError) as exc:
            pytest.fail(f"cannot build the network namespaces for tests/netns: {exc}")
        the_lab.start_all()
        yield the_lab
    finally:
        the_lab.close()


@pytest.fixture
def healthy_lab(lab: Lab) -> Lab:
    lab.heal()
    for cluster, agent in lab.agents.items():
        source = REPO / "examples" / cluster / "shop.yaml"
        target = agent.manifests / "shop.yaml"
        if target.read_text() != source.read_text():
            shutil.copyfile(source, target)
    for cluster, agent in lab.agents.items():
        if not agent.alive():
            lab.start(cluster)
            lab.wait_ready(cluster)
    steady_since: list[float] = []

    def steady() -> bool:
        if snapshot(lab) != EXPECTED:
            steady_since.clear()
            return False
        if not steady_since:
            steady_since.append(time.monotonic())
        return time.monotonic() - steady_since[0] >= (lab.settings.peer_timeout_s or 2.0) + 0.5

    wait_until(f"every agent to answer the baseline, steadily ({lab!r})", steady, 30, 0.1)
    return lab
