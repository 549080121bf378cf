"""The image's Dockerfile and .dockerignore, checked statically.

No container engine runs on these machines, so the Dockerfile is parsed, not built: every
stage is python:3.11-slim, nothing is fetched but through pip, the final stage runs
`meshd run` (exec form) as the Deployment's non-root user and exposes its ports, the files it
copies exist and are not ignored, and meshd's wheel builds from exactly those files with the
Dockerfile's own `pip wheel` command, with the `meshd` console script in it.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.meta.k8s_manifests import ROOT, all_builds, container, one


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    instructions, current = [], ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        word, _, rest = (current + line).partition(" ")
        instructions.append((word.upper(), rest.strip()))
        current = ""
    assert not current, "the Dockerfile ends inside a continued line"
    return instructions


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile()
    last_from = max(i for i, (word, _) in enumerate(instructions) if word == "FROM")
    return instructions[last_from:]


def test_dockerfile_builds_on_python_slim_and_fetches_nothing_itself() -> None:
    instructions = dockerfile()
    bases = [args.split()[0] for word, args in instructions if word == "FROM"]
    assert bases
    assert set(bases) == {"python:3.11-slim"}
    assert [args for word, args in instructions if word == "ADD"] == [], "use COPY, not ADD"
    for word, args in instructions:
        assert not re.search(r"\b(curl|wget)\b|://", args), f"{word} {args}: downloads"


def test_dockerfile_runs_meshd_as_the_deployments_non_root_user() -> None:
    base = all_builds()["base"]
    stage = final_stage()
    users = [args for word, args in stage if word == "USER"]
    assert users, "the final stage must set USER"
    uid, _, gid = users[-1].partition(":")
    assert re.fullmatch(r"[1-9][0-9]*:[1-9][0-9]*", users[-1]), f"USER {users[-1]}: uid:gid, not 0"
    pod = one(base, "Deployment")["spec"]["template"]["spec"]
    assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]) == (
        int(uid),
        int(gid),
    )
    [entrypoint] = [args for word, args in stage if word == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["meshd", "run"], "exec form, so signals reach meshd"
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^meshd = "mesh\.daemon\.cli:main"$', pyproject, re.M)
    exposed = {p for word, args in stage if word == "EXPOSE" for p in args.split()}
    ports = {f"{p['containerPort']}/{p['protocol'].lower()}" for p in container(base)["ports"]}
    assert exposed == ports


def copied_sources() -> list[str]:
    sources = []
    for word, args in dockerfile():
        if word == "COPY" and not args.startswith("--from"):
            sources += shlex.split(args)[:-1]
    return sources


def test_dockerignore_keeps_what_the_image_copies_and_drops_local_state() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert {".git", ".venv"} <= set(patterns)
    for source in copied_sources():
        assert (ROOT / source).exists(), source
        assert not any(fnmatch.fnmatch(source, p) for p in patterns), f"{source} is ignored"


def build_image_wheel(tmp_path: Path) -> Path:
    """meshd's wheel, built as the Dockerfile builds it: from a build context of exactly the
    files it copies, with its own `pip wheel` command (the installed-wheel demo test uses it
    too)."""
    context = tmp_path / "context"
    context.mkdir(parents=True)
    for source in copied_sources():
        target = context / source
        if (ROOT / source).is_dir():
            files = [p for p in (ROOT / source).rglob("*") if "__pycache__" not in p.parts]
            for path in files:
                if path.is_file():
                    (context / path.relative_to(ROOT)).parent.mkdir(parents=True, exist_ok=True)
                    (context / path.relative_to(ROOT)).write_bytes(path.read_bytes())
        else:
            target.write_bytes((ROOT / source).read_bytes())
    [build] = [
        shlex.split(args)
        for word, args in dockerfile()
        if word == "RUN" and args.startswith("pip wheel")
    ]
    assert build[:2] == ["pip", "wheel"]
    assert build[-1] == "."
    wheels = tmp_path / "wheels"
    command = [a if a != "/wheels" else str(wheels) for a in build[1:]]
    result = subprocess.run(
        [sys.executable, "-m", "pip", *command, "--no-build-isolation", "--quiet"],
        cwd=context,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    [wheel] = wheels.glob("meshd-*.whl")
    return wheel


def test_the_wheel_builds_from_exactly_what_the_dockerfile_copies(tmp_path: Path) -> None:
    wheel = build_image_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        [entry_points] = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        assert "meshd = mesh.daemon.cli:main" in archive.read(entry_points).decode()
    assert {"mesh/daemon/cli.py", "dnsserver/server.py", "mesh/wire/v1/gossip_pb2.py"} <= names
    # `meshd demo` in the image (or from any installed wheel) needs its manifests.
    demo_data = {f"mesh/daemon/examples/{c}/shop.yaml" for c in ("east", "west", "south")}
    assert demo_data <= names, sorted(n for n in names if "example" in n)
