"""meshd as a user installs it: the image's wheel in a fresh virtualenv runs `meshd demo`.

The wheel is built as the Dockerfile builds it (``tests.meta.test_dockerfile``), installed
with pip into a new virtualenv that has no packages of its own, and its ``meshd`` runs the
demo from a directory outside the checkout, with a plain PATH (the virtualenv's bin not on
it, as after ``make demo``). The commands the demo prints then run as printed.

meshd's dependencies come from this test run's own virtualenv through a ``.pth`` file that
names its site-packages: a plain path line, so Python does not run the ``.pth`` files in
that directory, and the editable install of this checkout stays out of sight. The test
checks that ``mesh`` is imported from the new virtualenv. Nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import shlex
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest

from tests.integration.harness import REPO, free_port_run
from tests.meta.test_dockerfile import build_image_wheel

pytestmark = pytest.mark.integration

PLAIN_PATH = "/usr/local/bin:/usr/bin:/bin"


def _install_wheel(tmp_path: Path) -> Path:
    """A fresh virtualenv holding meshd's wheel; returns its bin directory."""
    wheel = build_image_wheel(tmp_path / "build")
    venv = tmp_path / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60
    )
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.strip()
    dependencies = sysconfig.get_paths()["purelib"]
    (Path(purelib) / "meshd-test-dependencies.pth").write_text(dependencies + "\n")
    pip = [sys.executable, "-m", "pip", "--python", str(python), "--disable-pip-version-check"]
    install = subprocess.run(
        [*pip, "install", "--quiet", "--no-deps", "--no-index", str(wheel)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    return venv / "bin"


def _banner(proc: subprocess.Popen[bytes], timeout_s: float) -> str:
    """What the demo prints up to its "Ctrl-C" line, read within timeout_s."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    out = b""
    deadline = time.monotonic() + timeout_s
    while b"Ctrl-C" not in out:
        left = deadline - time.monotonic()
        assert left > 0, f"no banner within {timeout_s}s: {out.decode(errors='replace')}"
        if select.select([fd], [], [], left)[0]:
            chunk = os.read(fd, 65536)
            assert chunk, f"the demo exited: {out.decode(errors='replace')}"
            out += chunk
    return out.decode()


def test_the_demo_runs_from_the_installed_wheel_outside_the_checkout(tmp_path: Path) -> None:
    bin_dir = _install_wheel(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PATH"] = PLAIN_PATH
    where = subprocess.run(
        [str(bin_dir / "python"), "-c", "import mesh.daemon.demo as d, sys; print(d.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        cwd=elsewhere,
        env=env,
        timeout=30,
    ).stdout.strip()
    assert Path(where).is_relative_to(bin_dir.parent), where
    assert not Path(where).is_relative_to(REPO), where

    dns_base, admin_base = free_port_run(3), free_port_run(3)
    ports = ["--dns-port-base", str(dns_base), "--admin-port-base", str(admin_base)]
    proc = subprocess.Popen(
        [str(bin_dir / "meshd"), "demo", "--duration", "60", *ports],
        cwd=elsewhere,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        text = _banner(proc, 60)
        db = re.search(r"^\s+(dig @127\.0\.0\.1 -p \d+ db\.shop\.\S+ \+short)\s+#", text, re.M)
        assert db is not None, text
        answer = subprocess.run(
            shlex.split(db.group(1)), capture_output=True, text=True, env=env, timeout=10
        )
        assert answer.returncode == 0, (db.group(1), answer.stderr)
        assert set(answer.stdout.split()) == {"10.1.1.5", "10.2.1.5", "10.3.1.5"}, answer
        # The printed status command runs as printed, with meshd not on the PATH.
        status = re.search(r"status: (.+? status --admin 127\.0\.0\.1:\d+)$", text, re.M)
        assert status is not None, text
        assert status.group(1).startswith(str(bin_dir / "meshd")), status.group(1)
        tables = subprocess.run(
            shlex.split(status.group(1)), capture_output=True, text=True, env=env, timeout=30
        )
        assert tables.returncode == 0, (status.group(1), tables.stderr)
        assert "cluster east" in tables.stdout, tables.stdout
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
