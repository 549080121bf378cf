"""Parsing only the documents of a file that changed gives what parsing it whole gives:
the same documents with the same lines, or the same error."""

from __future__ import annotations

import contextlib
import random
from typing import Any

import pytest

from mesh.sources.documents import (
    Documents,
    ManifestSyntaxError,
    load_stream,
    load_stream_cached,
    split_stream,
)

FRAGMENTS = [
    "a: 1\n",
    "b: [1, 2]\n",
    "c: |\n  ---\n  --- x\n",  # markers inside a block scalar, indented: content
    "d: '--- not a marker'\n",
    "e: >\n  folded\n\n  text\n",
    "# a comment\n",
    "- x\n- y\n",
    "...\n",
    "--- {k: v}\n",
    "--- # a comment after a marker\n",
    "---\t\n",
    "---x: 1\n",  # not a marker: no blank after it
    'f: "two\n  lines"\n',
    "g: [x,\n  y]\n",
    "anchor: &a {p: 1}\nref: *a\n",
    "kind: List\napiVersion: v1\nitems:\n- {kind: Service}\n",
    "\n",
    "h: [x\n",  # broken: an unclosed flow sequence
    "i: 'open\n",  # broken: an unclosed quote, up to the next marker
    "j: *nowhere\n",  # broken: an unknown alias
    ":\n  - : :\n",
    "  indented: 1\nback: 2\n",
]
DOUBTFUL = ["%YAML 1.1\n", "k: 1\r\n", "l: \ufeff\n"]


def stream(rng: random.Random, fragments: list[str]) -> str:
    parts = []
    for _ in range(rng.randrange(1, 12)):
        if rng.random() < 0.5:
            parts.append(rng.choice(["---\n", "--- \n", "...\n---\n"]))
        parts.append(rng.choice(fragments))
    return "".join(parts)


def outcome(parse: Any) -> tuple[str, Any]:
    try:
        return ("ok", parse())
    except ManifestSyntaxError as exc:
        return ("error", str(exc))


@pytest.mark.parametrize("seed", range(300))
def test_a_cached_parse_equals_a_whole_parse(seed: int) -> None:
    rng = random.Random(seed)
    fragments = FRAGMENTS + (DOUBTFUL if seed % 10 == 0 else [])
    previous, text = stream(rng, fragments), stream(rng, fragments)
    cache: dict[str, Documents] = {}
    with contextlib.suppress(ManifestSyntaxError):
        _, cache = load_stream_cached(previous, "f.yaml", {})
    expected = outcome(lambda: load_stream(text, "f.yaml"))
    assert outcome(lambda: load_stream_cached(text, "f.yaml", {})[0]) == expected, repr(text)
    assert outcome(lambda: load_stream_cached(text, "f.yaml", cache)[0]) == expected, repr(text)


def test_only_the_changed_document_is_parsed_again() -> None:
    docs = [f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: n{i}\n" for i in range(50)]
    first, cache = load_stream_cached("---\n".join(docs), "f.yaml", {})
    docs[17] = docs[17].replace("n17", "edited")
    second, _ = load_stream_cached("---\n".join(docs), "f.yaml", cache)
    assert [line for line, _ in second] == [line for line, _ in first]
    same = [i for i in range(50) if second[i][1] is first[i][1]]
    assert same == [i for i in range(50) if i != 17]  # the very objects: not parsed again
    assert second[17][1]["metadata"]["name"] == "edited"


def test_json_and_doubtful_streams_are_not_cut() -> None:
    assert split_stream("%YAML 1.1\n---\na: 1\n") is None
    assert split_stream("a: 1\r\n---\r\nb: 2\r\n") is None
    assert split_stream("a: 1\n---\nb: 2\n") == [(0, "a: 1\n"), (1, "---\nb: 2\n")]
    documents, cache = load_stream_cached('{"a": "---\\n"}', "f.json", {})
    assert (documents, cache) == ([(1, {"a": "---\n"})], {})
