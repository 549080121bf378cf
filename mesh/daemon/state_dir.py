"""What an agent keeps across restarts in ``--state-dir``: the last state generation.

A restarted origin must start a generation larger than any it used before, or peers would
keep its old state and ignore the new one. Wall-clock nanoseconds give that unless the clock
steps back; the generation file makes it hold even then. Writes are atomic (write a
temporary file, then rename), so a crash mid-write leaves the old value.
"""

from __future__ import annotations

import os
from pathlib import Path

GENERATION_FILE = "generation"


def next_generation(state_dir: Path | None, now_ns: int) -> int:
    """A generation larger than the last one recorded in ``state_dir``, and record it."""
    if state_dir is None:
        return max(now_ns, 1)
    path = state_dir / GENERATION_FILE
    try:
        last = int(path.read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        last = 0
    generation = max(now_ns, last + 1)
    state_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(str(generation), encoding="ascii")
    os.replace(tmp, path)
    return generation
