"""The README's demo and the daemon's command line, as a user runs them."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.harness import MESHD, AgentProcess, free_port, free_port_run

pytestmark = pytest.mark.integration


def test_demo_prints_dig_commands_that_answer_from_all_three_clusters() -> None:
    base, admin_base = free_port_run(3), free_port_run(3)
    proc = subprocess.Popen(
        [
            *MESHD,
            "demo",
            "--dns-port-base",
            str(base),
            "--admin-port-base",
            str(admin_base),
            "--duration",
            "60",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        banner = []
        for line in proc.stdout:
            banner.append(line)
            if line.startswith("Ctrl-C"):
                break
        text = "".join(banner)
        commands = re.findall(r"^\s+(dig @127\.0\.0\.1 .*?)\s+#", text, re.MULTILINE)
        assert len(commands) >= 5, text
        answers = {c: _run(c) for c in commands}
        db = next(c for c in commands if " db.shop." in c)
        assert set(answers[db].split()) == {"10.1.1.5", "10.2.1.5", "10.3.1.5"}, answers
        catalog = next(c for c in commands if " catalog.shop." in c)  # answer mode cluster-ip
        assert set(answers[catalog].split()) == {"10.96.0.20", "10.97.0.20"}, answers
        clusters_seen = {
            a.split(".")[1]
            for out in answers.values()
            for a in out.split()
            if re.fullmatch(r"10\.\d\.\d+\.\d+", a)
        }
        assert clusters_seen == {"1", "2", "3"}, answers
        assert all(out.strip() for out in answers.values()), answers
        search = next(c for c in commands if " search.shop." in c)
        assert answers[search].split() == ["10.2.5.10"], answers
        _check_routing_commands(text)
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def _check_routing_commands(banner: str) -> None:
    """The weighted loop splits 7/3; the status, drain, undrain and drill commands run as
    printed and do what their comments say."""
    (loop,) = re.findall(r"^\s+(for i in .*?)\s+#", banner, re.MULTILINE)
    counted = subprocess.run(
        ["bash", "-c", loop], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    assert sorted(counted.split()) == sorted(["7", "10.1.3.10", "3", "10.2.3.10"]), counted
    printed = re.findall(r"^  (\S+ (?:status|drain|undrain|drill) --admin .*)$", banner, re.M)
    status, drain, undrain, drill = (shlex.split(c) for c in printed)
    explained = _run_args(status)
    assert "no: later tier" in explained, explained  # south and east stand by behind west
    search = re.search(r"dig @127\.0\.0\.1 -p \d+ search\S+ \+short", banner)
    assert search is not None
    _run_args(drain)
    wait_for_answer(search.group(0), "10.3.5.10")
    _run_args(undrain)
    wait_for_answer(search.group(0), "10.2.5.10")
    assert "passed" in _run_args(drill)


def wait_for_answer(command: str, expected: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while (answer := _run(command).strip()) != expected:
        assert time.monotonic() < deadline, f"{command}: {answer!r}, waiting for {expected}"
        time.sleep(0.05)


def _run_args(args: list[str]) -> str:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=True).stdout


def _run(command: str) -> str:
    return subprocess.run(
        command.split(), capture_output=True, text=True, timeout=10, check=True
    ).stdout


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--insecure", "--manifests", "."], {}, "--cluster-id is required"),
        (
            ["--cluster-id", "east", "--insecure", "--manifests", ".", "--dns-ttl", "9999"],
            {},
            "--dns-ttl: must be an integer 0-3600, got '9999'",
        ),
        (
            ["--cluster-id", "east", "--insecure", "--manifests", "."],
            {"MESHD_DNS_LISTEN": "x"},
            "MESHD_DNS_LISTEN: 'x' is not HOST:PORT",
        ),
        (["--cluster-id", "East", "--insecure", "--manifests", "."], {}, "--cluster-id: must be"),
        (["--cluster-id", "east", "--manifests", "."], {}, "pass --insecure"),
        (
            ["--cluster-id", "east", "--insecure", "--manifests", "/nonexistent"],
            {},
            "is not a directory",
        ),
    ],
)
def test_bad_settings_exit_2_with_one_line(
    args: list[str], env: dict[str, str], message: str
) -> None:
    result = subprocess.run(
        [*MESHD, "run", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **env},
    )
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("meshd: error: "), lines[0]
    assert message in lines[0], lines[0]


def test_config_file_and_environment(tmp_path: Path) -> None:
    """Settings from --config and MESHD_*; the flag wins over both."""
    manifests = tmp_path / "m"
    manifests.mkdir()
    agent = AgentProcess("east", "us", manifests, tmp_path)
    config = tmp_path / "meshd.yaml"
    config.write_text(f"cluster_id: fromfile\ndns_ttl: 42\nmanifests: {manifests}\n")
    agent.start([], "--config", str(config), "--cluster-id", "east")
    try:
        agent.wait_ready()
        state = agent.state()
        assert state is not None
        assert state["cluster"] == "east"
        reply = agent.query("clusterset.local.", "SOA")
        assert reply.answer[0].ttl == 42
        status, body = agent.admin("/metrics")
        assert status == 200
        assert b"meshd_dns_queries_total" in body
        assert agent.admin("/healthz")[0] == 200
    finally:
        assert agent.stop() == 0


def test_status_command_prints_tables(tmp_path: Path) -> None:
    manifests = tmp_path / "m"
    manifests.mkdir()
    agent = AgentProcess("east", "us", manifests, tmp_path)
    agent.start([])
    try:
        agent.wait_ready()
        out = subprocess.run(
            [*MESHD, "status", "--admin", f"127.0.0.1:{agent.admin_port}"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
        assert "cluster east" in out
        assert "CLUSTER" in out
        assert "east (this)" in out
    finally:
        agent.stop()
    failed = subprocess.run(
        [*MESHD, "status", "--admin", f"127.0.0.1:{free_port()}"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert failed.returncode == 1
    assert "cannot read" in failed.stderr


def test_port_in_use_exits_1_with_a_clear_line(tmp_path: Path) -> None:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        manifests = tmp_path / "m"
        manifests.mkdir()
        result = subprocess.run(
            [
                *MESHD,
                "run",
                "--insecure",
                "--cluster-id",
                "east",
                "--manifests",
                str(manifests),
                "--dns-listen",
                f"127.0.0.1:{port}",
                "--grpc-listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 1, result
    assert "cannot start" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr, result.stderr


def test_gossip_port_of_a_running_agent_is_not_shared(tmp_path: Path) -> None:
    """gRPC's default SO_REUSEPORT let a second agent bind a running agent's gossip port
    and take half of its peers' connections; it must exit 1 with one line instead."""
    manifests = tmp_path / "m"
    manifests.mkdir()
    first = AgentProcess("east", "us", manifests, tmp_path)
    first.start([])
    try:
        first.wait_ready()
        second = subprocess.Popen(
            [
                *MESHD,
                "run",
                "--insecure",
                "--cluster-id",
                "west",
                "--manifests",
                str(manifests),
                "--dns-listen",
                f"127.0.0.1:{free_port()}",
                "--grpc-listen",
                first.grpc,
                "--admin-listen",
                f"127.0.0.1:{free_port()}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            _out, err = second.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(second.pid, signal.SIGKILL)
            _out, err = second.communicate()
            raise AssertionError(f"the second agent runs on {first.grpc} too:\n{err}") from None
        assert second.returncode == 1, err
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        assert f"cannot listen for gossip on {first.grpc}: Address already in use" in lines[0]
        assert first.proc is not None
        assert first.proc.poll() is None, first.logs()
        assert first.admin("/readyz")[0] == 200
    finally:
        assert first.stop() == 0
