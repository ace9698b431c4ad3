"""rag-enhancer packs more answer into the same words (issue 12, point 5: "`rag-enhancer` must
pack more answer into the same words"): under a budget too small for every hit's whole chunk,
each hit brings its best-matching sentences first, and the cut text is marked."""

from __future__ import annotations

import re

from pocketpack import compose
from pocketpack.rag.chunking import join_chunk_spans, join_chunks, sentence_spans
from pocketpack.rag.config import RagSettings
from pocketpack.rag.ingest import Library
from pocketpack.rag.inject import inject_chat
from pocketpack.rag.retrieve import retrieve

COLOURS = ["amber", "blue", "cream", "dove grey", "ochre", "plum", "sage", "teal", "umber", "violet", "white", "yellow"]
ROOMS = ["Boiler", "Kitchen", "Hall", "Study", "Attic", "Garden"]
FACTS = {"Boiler": "The boiler is serviced every second October by Hale and Sons.",
         "Garden": "The roses are pruned in late February before the frost lifts."}


def _house() -> str:
    """Six sections of twelve sentences; two of them hold a fact in their middle."""
    out = ["# The house"]
    for r, room in enumerate(ROOMS):
        lines = [f"Shelf {i + 1} of the {room.lower()} wall was painted {COLOURS[(i + r) % 12]} in {1950 + i}."
                 for i in range(12)]
        if room in FACTS:
            lines[6] = FACTS[room]
        out += [f"## {room}", " ".join(lines)]
    return "\n\n".join(out) + "\n"


def _block(state: dict) -> str:
    return " ".join(state["context"].split())


def test_a_tight_budget_brings_every_hits_best_sentences(tmp_path):
    doc = tmp_path / "house.md"
    doc.write_text(_house())
    settings = RagSettings(chunk_size=200, chunk_overlap=0, mode="lexical", k=5)
    question = "When is the boiler serviced, and when are the roses pruned?"
    with Library(tmp_path / "store", settings) as lib:
        lib.ingest([str(doc)])
        passages = retrieve(lib, question, 5)
    assert len(passages) == 2  # one passage per room with a fact, each a whole section's chunk
    whole = sum(compose.estimate_tokens(p.text) for p in passages)
    budget = 240
    assert whole > budget - 40  # both whole chunks do not fit (the frame and labels cost ~40 more)

    state = {"mode": "chat", "context": "You are a caretaker.", "name1": "You", "name2": "Caretaker"}
    numbered = inject_chat(state, passages, budget, compose.estimate_tokens)
    block = _block(state)
    assert FACTS["Boiler"] in block and FACTS["Garden"] in block
    assert "[…]" in block or "Shelf 1 of" not in block  # what was left out of a chunk is not there
    assert compose.estimate_tokens(state["context"]) <= budget + compose.estimate_tokens("You are a caretaker.") + 2
    for sentence in re.findall(r"Shelf \d+ of the \w+ wall", block):
        assert block.count(sentence) == 1  # nothing quoted twice
    # the Sources row marks each passage's hit: its best sentences are inside what the model saw
    for p in numbered:
        assert " ".join(p.core_text.split()) in " ".join(p.text.split())

    # with room for all of it, each passage goes in whole, as before
    state = {"mode": "chat", "context": "You are a caretaker.", "name1": "You", "name2": "Caretaker"}
    numbered = inject_chat(state, passages, 4000, compose.estimate_tokens)
    assert [p.text for p in numbered] == [p.text for p in passages]


def test_passage_units_cover_the_joined_text():
    """The packing works on sentence offsets into the joined passage; they must cover all of
    its text but the heading lines, so that a passage taken whole reads as before."""
    parts = [("H › A\nOne fact. Two facts here.", "H › A", 6, 0),
             ("H › A\nTwo facts here. Three! Four?", "H › A", 6, 16),
             ("H › B\n5 items. Last line\nand more", "H › B", 6, 0)]
    text, spans = join_chunk_spans(parts)
    assert text == join_chunks(parts)
    assert [text[b:e] for _, b, e in spans] == ["One fact. Two facts here.", "Three! Four?", "5 items. Last line\nand more"]
    assert [text[s:b] for s, b, _ in spans] == ["H › A\n", "", "H › B\n"]
    units = [text[a:b] for s, body, end in spans for a, b in sentence_spans(text, body, end)]
    assert units == ["One fact.", "Two facts here.", "Three!", "Four?", "5 items.", "Last line", "and more"]
