"""The Makefile's first five minutes: what `make demo` prints can be run on a fresh machine.

`make demo` sets up meshd and runs `meshd demo`, which prints commands to try. Each program
those commands run must be installed by `make demo` itself (not only by `make test`).
Checked with `make -n` (nothing runs): the Debian packages its install step names before
`meshd demo` starts.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from mesh.daemon.demo import dig_commands

ROOT = Path(__file__).resolve().parents[2]
# Debian package of each program the demo's printed commands run (on Debian 12, dnsutils
# brings bind9-dnsutils, which holds dig). meshd itself comes with the virtualenv.
DEBIAN_PACKAGE = {"dig": "dnsutils"}


SHELL_WORDS = {"for", "do", "done", "in"}
COREUTILS = {"seq", "sort", "uniq"}  # essential: on every Debian system


def programs_of(command: str) -> set[str]:
    """The programs a printed shell command runs: the first word of the command, of each
    part of a pipeline or list, of each $(...) and after `do`; less shell words and
    coreutils."""
    listed = re.sub(r"\bdo\b", ";", command)
    found = re.findall(r"(?:^|[;|]\s*|\$\()([a-z][\w.-]*)", listed)
    return set(found) - SHELL_WORDS - COREUTILS


def test_make_demo_installs_what_the_printed_commands_run() -> None:
    programs = {
        program
        for command, _ in dig_commands({"east": 1, "south": 2})
        for program in programs_of(command)
    }
    assert programs <= DEBIAN_PACKAGE.keys(), f"add the Debian package of {programs}"
    plan = subprocess.run(
        ["make", "-n", "demo"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    ).stdout
    before_demo, found, _ = plan.partition("meshd demo")
    assert found, plan
    installed = {
        package
        for packages in re.findall(r"for pkg in ([^;]*); do", before_demo)
        for package in packages.split()
    }
    assert "apt-get install" in before_demo, plan
    missing = {DEBIAN_PACKAGE[p] for p in programs} - installed
    assert not missing, f"`make demo` does not install {missing}:\n{plan}"


def test_make_bench_installs_what_the_dns_benchmark_drives() -> None:
    """`make bench` (the issue: it "installs what the benchmarks drive (Knot, dnsperf) and
    runs them") installs knotd's, dnsperf's and unbound's Debian packages before it runs
    bench/dns_bench.py."""
    plan = subprocess.run(
        ["make", "-n", "bench"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    ).stdout
    before_bench, found, _ = plan.partition("bench/dns_bench.py")
    assert found, plan
    installed = {
        package
        for packages in re.findall(r"for pkg in ([^;]*); do", before_bench)
        for package in packages.split()
    }
    assert "apt-get install" in before_bench, plan
    missing = {"knot", "dnsperf", "unbound"} - installed
    assert not missing, f"`make bench` does not install {missing}:\n{plan}"


def test_make_test_does_not_run_the_benchmarks() -> None:
    plan = subprocess.run(
        ["make", "-n", "test"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert "bench/" not in plan, plan
