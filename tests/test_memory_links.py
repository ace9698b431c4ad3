"""Facts that change (issue 12, point 3) and "why not recalled?" (point 4), with the defaults.

"When a newer memory says something about the same thing as an older one ... the newer must
be recalled and ranked above the older, and the block must show their dates ... The user can
see and undo such a link in the Memory tab"; "show in the tab why something was not recalled".
"""

from __future__ import annotations

import time

import pytest

from pocketpack.memory import panel
from pocketpack.memory.format import describe
from pocketpack.memory.store import FILTERED_RECALL, MemoryStore, recall_options
from pocketpack.memory.turns import Injection

pytestmark = pytest.mark.slow  # the real embedding model

DAY = 86400.0
SMALL_TALK = [("Hi!", "Hello! How are you today?"), ("And you?", "I'm doing well, thanks for asking."),
              ("ok", "Good to know!"), ("Do you like this?", "Of course!"), ("Sure thing!", "Great.")]
TOPICS = ["volcanoes", "jazz", "chess openings", "sourdough", "origami", "penguins", "bridges", "old maps",
          "trains", "mushrooms", "lighthouses", "glaciers", "bees", "castles", "comets", "deserts"]
OLD, NEW = "I work as a nurse.", "I work as a carpenter."
QUERY = "What do I work as?"


@pytest.fixture()
def memory(tmp_path):
    m = MemoryStore(tmp_path / "memory")
    yield m
    m.close()


def _chat(memory: MemoryStore, facts: dict[int, str], now: float) -> None:
    """150 exchanges over 150 days, stored one exchange at a time as the extension does."""
    for n in range(150):
        if n in facts:
            user, reply = facts[n], "Good to know."
        elif n % 3:
            user, reply = SMALL_TALK[n % len(SMALL_TALK)]
        else:
            topic = TOPICS[n % len(TOPICS)]
            user, reply = f"What do you think about {topic}?", f"I find {topic} fascinating, honestly."
        memory.record_exchange("Aria", f"chat-{n // 10}", n % 10, user, reply, time=now - (150 - n) * DAY)


def _ids(memory: MemoryStore) -> dict[str, int]:
    return {m.text: m.id for m in memory.list("Aria")}


def test_a_changed_fact_is_linked_when_stored_and_recalled_newer_first_with_dates(memory):
    now = time.time()
    _chat(memory, {10: OLD, 136: NEW}, now)
    ids = _ids(memory)
    assert memory.get(ids[NEW]).supersedes == ids[OLD]
    assert memory.get(ids[OLD]).superseded_by == ids[NEW]
    found = memory.recall("Aria", QUERY, k=6, now=now)  # the defaults
    texts = [m.text for m in found]
    assert texts.index(NEW) < texts.index(OLD)
    block = "\n".join(describe(m, now=now) for m in found)
    line = next(x for x in block.splitlines() if "carpenter" in x)
    assert line.startswith("Since 2 weeks ago (") and "before that, 4 months ago (" in line and "nurse" in line
    old_line = next(x for x in block.splitlines() if "nurse" in x and "carpenter" not in x)
    assert "no longer current" in old_line


def test_the_tab_shows_a_link_and_unlink_undoes_it_for_good(memory):
    now = time.time()
    _chat(memory, {10: OLD, 136: NEW}, now)
    ids = _ids(memory)
    rows = {r[0]: r for r in panel.search_rows(memory, "Aria", QUERY)}
    assert rows[ids[NEW]][panel.SEARCH_HEADERS.index("changed fact")] == f"replaces {ids[OLD]}"
    assert rows[ids[OLD]][panel.SEARCH_HEADERS.index("changed fact")] == f"replaced by {ids[NEW]}"
    assert panel.link_rows(memory, "Aria")[0][0::3] == [ids[NEW], ids[OLD]]
    status = panel.act(memory, "unlink", ids[OLD])  # either memory of the pair
    assert f"unlinked from {ids[OLD]}" in status
    assert memory.get(ids[NEW]).supersedes is None and memory.get(ids[OLD]).superseded_by is None
    assert memory.relink("Aria") == 0  # the user's undo stays: the link is never made again
    found = memory.recall("Aria", QUERY, k=6, now=now)
    assert all(m.before is None for m in found)
    assert "not linked" in panel.act(memory, "unlink", ids[NEW])


def test_why_not_names_the_step_that_left_a_memory_out(memory):
    now = time.time()
    _chat(memory, {40: "My dog is called Pixel.", 90: "Pixel hates the vacuum cleaner."}, now)
    ids = _ids(memory)
    query = "What is my dog's name?"
    filtered = recall_options(**FILTERED_RECALL)
    small = memory.why_not("Aria", ids["And you?"], query, 6, options=filtered)
    assert small["reason"] == "low_information" and small["information"] < 1.5
    fact = memory.why_not("Aria", ids["My dog is called Pixel."], query, 6, options=filtered)
    assert fact["reason"] == "recalled" and fact["rank"] == 1
    second = memory.recall("Aria", "What about Pixel?", 2, options=filtered)[1]
    cut = memory.why_not("Aria", second.id, "What about Pixel?", 1, options=filtered)
    assert cut["reason"] == "below_cut" and cut["rank"] == 2 and cut["lexical_rank"] is not None
    assert memory.why_not("Bob", ids["My dog is called Pixel."], query)["reason"] == "other_character"

    recalled = memory.recall("Aria", query, 3)
    injection = Injection(character="Aria", query=query, memories=recalled, lines=["a", "b", "c"], included=[0])
    assert "was injected" in panel.why_not(memory, injection, recalled[0].id)
    assert "token budget" in panel.why_not(memory, injection, recalled[1].id)
    assert "**" in panel.why_not(memory, injection, ids["And you?"])


def test_an_edited_message_keeps_its_link_and_an_undone_link_stays_undone(memory):
    """Editing a row in the chat stores it again, which replaces its meta: the link, and the
    user's "Unlink", must survive that."""
    now = time.time()
    _chat(memory, {10: OLD, 136: NEW, 140: "I grow tomatoes on my balcony."}, now)
    ids = _ids(memory)
    memory.record_exchange("Aria", "chat-1", 0, "I work as a nurse!", "Good to know.", time=now)  # edited
    assert memory.get(ids[OLD]).superseded_by == ids[NEW]
    memory.unlink(ids[NEW])
    memory.record_exchange("Aria", "chat-13", 6, "I work as a carpenter!", "Good to know.", time=now)
    assert memory.get(ids[NEW]).supersedes is None
    assert memory.relink("Aria") == 0


def test_an_export_imported_elsewhere_keeps_its_links(memory, tmp_path):
    now = time.time()
    _chat(memory, {10: OLD, 136: NEW}, now)
    path = panel.export_to(memory, tmp_path / "out", "Aria")
    other = MemoryStore(tmp_path / "other")
    try:
        other.import_file(path)
        ids = {m.text: m.id for m in other.list("Aria")}
        assert other.get(ids[NEW]).supersedes == ids[OLD]
        assert other.get(ids[OLD]).superseded_by == ids[NEW]
    finally:
        other.close()
