"""The warm-restart generation kept in --state-dir."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from mesh.daemon.state_dir import GENERATION_FILE, next_generation

NOW = 1_700_000_000_000_000_000


def recorded(state_dir: Path) -> int:
    return int((state_dir / GENERATION_FILE).read_text(encoding="ascii"))


def test_without_a_dir_returns_now() -> None:
    assert next_generation(None, NOW) == NOW
    assert next_generation(None, NOW - 5) == NOW - 5  # no memory without a dir


def test_without_a_dir_never_zero() -> None:
    # Generation 0 is rejected by peers (codec): even a clock at the epoch gives 1.
    assert next_generation(None, 0) == 1


def test_first_generation_with_a_dir_is_now_and_recorded(tmp_path: Path) -> None:
    assert next_generation(tmp_path, NOW) == NOW
    assert recorded(tmp_path) == NOW
    assert sorted(p.name for p in tmp_path.iterdir()) == [GENERATION_FILE]


def test_creates_missing_dir(tmp_path: Path) -> None:
    state_dir = tmp_path / "a" / "b"
    assert next_generation(state_dir, NOW) == NOW
    assert recorded(state_dir) == NOW


def test_dir_at_epoch_starts_at_one(tmp_path: Path) -> None:
    assert next_generation(tmp_path, 0) == 1


@pytest.mark.parametrize(
    "clock",
    [
        pytest.param([NOW, NOW + 10, NOW + 20], id="forward"),
        pytest.param([NOW, NOW, NOW], id="stopped"),
        pytest.param([NOW, NOW - 1, NOW - 10**12, NOW + 1, 5, 0], id="backwards"),
    ],
)
def test_strictly_increasing_whatever_the_clock(tmp_path: Path, clock: list[int]) -> None:
    generations = [next_generation(tmp_path, t) for t in clock]
    assert all(b > a for a, b in itertools.pairwise(generations))
    assert all(g >= t for g, t in zip(generations, clock, strict=True))
    assert recorded(tmp_path) == generations[-1]


def test_clock_stepped_back_gives_last_plus_one(tmp_path: Path) -> None:
    assert next_generation(tmp_path, NOW) == NOW
    assert next_generation(tmp_path, NOW - 3600 * 10**9) == NOW + 1
    assert next_generation(tmp_path, NOW + 5) == NOW + 5


def test_persists_across_calls_like_restarts(tmp_path: Path) -> None:
    # A fresh Path object each time, as a restarted process would build.
    next_generation(Path(str(tmp_path)), NOW)
    assert next_generation(Path(str(tmp_path)), 1000) == NOW + 1
    assert next_generation(Path(str(tmp_path)), 1000) == NOW + 2


def test_dirs_are_independent(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    next_generation(a, NOW)
    assert next_generation(b, 10) == 10


@pytest.mark.parametrize(
    "content",
    [b"", b"not a number", b"12abc", b"\xff\xfe\x00", b"1.5e9", b"   "],
    ids=["empty", "text", "trailing-junk", "binary", "float", "blank"],
)
def test_survives_a_corrupt_file(tmp_path: Path, content: bytes) -> None:
    (tmp_path / GENERATION_FILE).write_bytes(content)
    assert next_generation(tmp_path, NOW) == NOW
    assert recorded(tmp_path) == NOW
    assert next_generation(tmp_path, NOW - 1) == NOW + 1


def test_tolerates_whitespace_in_the_file(tmp_path: Path) -> None:
    (tmp_path / GENERATION_FILE).write_text(f"  {NOW}\n", encoding="ascii")
    assert next_generation(tmp_path, 7) == NOW + 1


def test_leftover_temporary_file_does_not_matter(tmp_path: Path) -> None:
    next_generation(tmp_path, NOW)
    (tmp_path / (GENERATION_FILE + ".tmp")).write_text("garbage", encoding="ascii")
    assert next_generation(tmp_path, 0) == NOW + 1
    assert recorded(tmp_path) == NOW + 1
