"""The committed gRPC/protobuf code is exactly what proto/ generates (`make proto`)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROTO = "mesh/wire/v1/gossip.proto"
GENERATED = ["gossip_pb2.py", "gossip_pb2.pyi", "gossip_pb2_grpc.py"]


def test_generated_code_is_current(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "proto", tmp_path / "proto")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-Iproto",
            "--python_out=.",
            "--pyi_out=.",
            "--grpc_python_out=.",
            f"proto/{PROTO}",
        ],
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    for name in GENERATED:
        fresh = (tmp_path / "mesh/wire/v1" / name).read_text()
        committed = (ROOT / "mesh/wire/v1" / name).read_text()
        assert fresh == committed, f"mesh/wire/v1/{name} is stale: run `make proto`"
