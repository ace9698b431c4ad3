"""rag-enhancer acceptance findings, through the public API (``retrieve`` and the extension
script's hooks as TGWUI calls them): the URL box never reaches local files, no text is
quoted twice, citations leave code alone and link only this turn's passages, an oversized
upload is refused before it is read, and the Add report says what happened."""

from __future__ import annotations

import re
import tracemalloc
from pathlib import Path

import pytest

from pocketpack.rag.config import RagSettings
from pocketpack.rag.ingest import Library
from pocketpack.rag.retrieve import retrieve
from tests.helpers.rag import HARBOUR, script  # noqa: F401  (fixtures)

pytestmark = pytest.mark.slow  # the real embedding model

REPO = Path(__file__).resolve().parents[1]



def _chat_state(character="Skipper", unique_id="20250101-000000"):
    return {"mode": "chat", "context": f"You are {character}, a harbour pilot.", "custom_system_message": "",
            "name1": "You", "name2": character, "character_menu": character, "unique_id": unique_id,
            "history": {"internal": [], "visible": [], "metadata": {}}}


def _turn(script, question, **kw):
    """One new-message chat turn up to generation, as TGWUI runs the hooks."""
    state = script.state_modifier(_chat_state(**kw))
    script.chat_input_modifier(question, question, state)
    return state


# -- 1 and 6: the URL box takes web addresses only; the report says what happened -------------
def _checkbox_labels(script) -> set[str]:
    import gradio as gr

    with gr.Blocks() as demo:
        script.ui()
    return {b.label for b in demo.blocks.values() if isinstance(b, gr.Checkbox)}


def test_url_box_refuses_local_paths_and_the_rest_of_the_batch_goes_on(tmp_path, script):
    secret = tmp_path / "secret" / "keys.md"
    (secret.parent / "sub").mkdir(parents=True)
    secret.write_text("The server root password is hunter2.")
    (secret.parent / "sub" / "notes.txt").write_text("The backup code is 7731.")
    upload = tmp_path / "upload" / "harbour.md"
    upload.parent.mkdir()
    upload.write_text(HARBOUR)
    entries = [str(secret), str(secret.parent / "sub"), "~/.bashrc", f"file://{secret}", "secret/keys.md"]
    message, rows = script.add_documents([str(upload)], "\n".join(entries), "global")
    for entry in entries:
        assert f"not a URL: {entry} — add files with the file picker" in message, message
    # only the upload went in; nothing was read from the paths typed in the box
    assert [r[1] for r in rows] == ["harbour.md"]
    assert message.startswith("Added to global (5 skipped):") and "added harbour.md" in message
    assert "hunter2" not in str(script.try_query("server root password", 5))


def test_an_all_skipped_batch_says_nothing_was_added_and_names_the_real_checkbox(tmp_path, script):
    message, rows = script.add_documents(None, "/etc/hostname\nhttp://127.0.0.1:9/page", "global")
    assert rows == []
    assert message.startswith("Nothing added: all 2 items were skipped:"), message
    assert "not a URL: /etc/hostname" in message
    refusal = next(line for line in message.splitlines() if "127.0.0.1" in line)
    assert "refusing to fetch a local or private address" in refusal
    named = re.findall(r"'([^']+)'", refusal)
    assert named and named[0] in _checkbox_labels(script), (named, refusal)


# -- 5: an oversized upload is refused from its size on disk, before it is read ---------------
def test_an_oversized_upload_is_refused_before_it_is_read(tmp_path, script, monkeypatch):
    monkeypatch.setitem(script.params, "max_file_mb", 1)
    huge = tmp_path / "upload" / "huge.txt"
    huge.parent.mkdir()
    with open(huge, "wb") as f:  # 64 MB on disk (sparse: costs no disk space)
        f.truncate(64 * 1024 * 1024)
    script.engine().library  # the store is open before the measurement
    tracemalloc.start()
    try:
        message, rows = script.add_documents([str(huge)], "", "global")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024, f"{peak / 1048576:.0f} MB allocated for a refused upload"
    assert message.startswith("Nothing added: the item was skipped:"), message
    assert "skipped huge.txt: the file is 64.0 MB, over the 1 MB limit" in message
    assert rows == []


# -- 2: the same text is never returned or injected twice -------------------------------------
def _sentences(text: str) -> set[str]:
    """Sentences long enough to be distinctive (heading lines and short formulas left out)."""
    parts = re.split(r"(?<=[.!?;:])\s+|\n+", text)
    return {" ".join(p.split()) for p in parts if len(p.strip()) >= 40 and " › " not in p}


def _assert_no_repeats(passages):
    for i, a in enumerate(passages):
        for b in passages[i + 1:]:
            if a.doc_id == b.doc_id and a.collection == b.collection:
                # not overlapping, and not adjacent either (adjacent chunks share overlap sentences)
                assert a.ordinals[1] + 1 < b.ordinals[0] or b.ordinals[1] + 1 < a.ordinals[0], \
                    (a.ordinals, b.ordinals)
            shared = _sentences(a.text) & _sentences(b.text)
            assert not shared, (a.location, b.location, shared)


def _zebra_doc() -> str:
    """Twenty paragraphs, one chunk each at chunk_size 40; "zebra" three times in paragraph
    10, twice in 6, once in 8, so lexical search ranks the hits 10, 6, 8. Each paragraph ends
    with a short sentence the next chunk repeats as its overlap."""
    paras = []
    for i in range(20):
        zebras = {10: "zebra zebra zebra", 6: "zebra zebra", 8: "zebra"}.get(i, "")
        paras.append(f"Paragraph {i} tells of the harbour at dawn {zebras} and the gulls over grey water. "
                     f"Line {i} ends.")
    return "\n\n".join(paras) + "\n"


def test_hits_whose_context_overlaps_become_one_passage(tmp_path):
    doc = tmp_path / "log.txt"
    doc.write_text(_zebra_doc())
    settings = RagSettings(chunk_size=40, chunk_overlap=10, mode="lexical", neighbours=1, k=5)
    with Library(tmp_path / "store", settings) as lib:
        lib.ingest([str(doc)])
        passages = retrieve(lib, "zebra", 5)
    _assert_no_repeats(passages)
    # hits 10, 6 and 8 with one neighbour each cover chunks 5..11: one passage, numbered first,
    # keeping the best hit's score and its chunk as the narrowest variant
    assert len(passages) == 1
    p = passages[0]
    assert p.ordinals == (5, 11) and p.hit_ordinal == 10
    assert "Paragraph 5 " in p.text and "Paragraph 11 " in p.text and "Paragraph 12 " not in p.text
    assert p.text.count("Line 7 ends.") == 1  # overlap sentences are not repeated inside either
    assert "zebra zebra zebra" in p.narrowed().text and "Paragraph 6 " not in p.narrowed().text
    first_line, last_line = (int(x) for x in re.findall(r"\d+", p.location)[:2])
    text_lines = _zebra_doc().split("\n")
    assert text_lines[first_line - 1].startswith("Paragraph 5 ")
    assert text_lines[last_line - 1].startswith("Paragraph 11 ")
    # under a tight budget the merged passage still brings its two best hits, without the
    # chunks between them (as the two separate passages they were would have)
    from pocketpack.rag.inject import inject_chat

    state = {"mode": "chat", "context": "You are Skipper.", "name1": "You", "name2": "Skipper"}
    numbered = inject_chat(state, passages, 120)
    block = state["context"]
    assert len(numbered) == 1 and "zebra zebra zebra" in block and "Paragraph 6 " in block and "[…]" in block
    assert "Paragraph 7 " not in block and "Paragraph 9 " not in block


def _kjv_books(*books: str) -> str:
    text = (REPO / "bench" / "data" / "kjv_narratives.md").read_text(encoding="utf-8")
    parts = re.split(r"(?m)^(?=## )", text)
    return "# Narratives\n\n" + "".join(p for p in parts if p.split("\n", 1)[0][3:].strip() in books)


KJV_QUERIES = ["Jonah fish", "Jonah swallowed by a great fish", "the people of Nineveh repented in sackcloth",
               "the gourd withered and Jonah was angry", "Ruth gleaned in the field of Boaz",
               "Naomi returned to Bethlehem", "whither thou goest I will go"]


def test_no_chunk_is_returned_or_injected_twice_on_real_text(tmp_path, script):
    doc = tmp_path / "kjv.md"
    doc.write_text(_kjv_books("Ruth", "Jonah"))
    lib = script.engine().library
    assert lib.ingest([str(doc)]).results[0].status == "added"
    for question in KJV_QUERIES:
        passages = retrieve(lib, question, 5)
        assert passages, question
        _assert_no_repeats(passages)
    # the prompt: every [n] item quotes text no other item quotes
    script.params["budget_tokens"] = 2000
    for question in KJV_QUERIES:
        state = _turn(script, question)
        block = state["context"].split("[Documents", 1)[1]
        items = re.split(r"\n\[\d+\] ", block)[1:]
        assert items, question
        for i, a in enumerate(items):
            for b in items[i + 1:]:
                assert not (_sentences(a) & _sentences(b)), (question, _sentences(a) & _sentences(b))


# -- 3: citations leave code alone ------------------------------------------------------------
def test_citations_leave_code_blocks_and_inline_code_untouched(tmp_path, script):
    (tmp_path / "harbour.md").write_text(HARBOUR)
    script.engine().library.ingest([str(tmp_path / "harbour.md")])
    state = _turn(script, "When is high tide at Port Avel?")
    reply = ("High tide is at 06:12 [1]:\n\n```python\nx = items[1]\n```\n\n"
             "Index it with `tides[1]`, as in [1].\n\n~~~\ny = rows[1]\n~~~\n")
    out = script.output_modifier(reply, state, is_chat=True)
    assert "```python\nx = items[1]\n```" in out and "`tides[1]`" in out and "~~~\ny = rows[1]\n~~~" in out
    assert out.count('<sup class="pp-cite">') == 2  # the two citations in the prose
    assert out.startswith('High tide is at 06:12 <sup class="pp-cite"><a href="#pp-src-')
    assert "06:12 on Mondays" in out.split("<details", 1)[1]
    # [1] only inside code cites nothing: the reply is left as it is, no source block added
    code_only = "Use this:\n\n```\nfirst = items[1]\n```\n\nor `items[1]`."
    assert script.output_modifier(code_only, state, is_chat=True) == code_only




LINK = '<sup class="pp-cite">'


def _three_passages():
    from pocketpack.rag.retrieve import Passage

    return [Passage(f"Fact {n} about the harbour.", "harbour.md", f"line {n}", 0.9) for n in (1, 2, 3)]


def _linked(out: str) -> list[int]:
    """The citation numbers linked in a rendered reply's body, in order."""
    return [int(n) for n in re.findall(r'<sup class="pp-cite"><a href="#pp-src-\w+-(\d+)"', out.split("<details")[0])]


def test_citations_leave_indented_code_blocks_untouched_but_not_list_items():
    from pocketpack.rag.cite import link_citations

    passages = _three_passages()
    reply = ("High tide is at 06:12 [1]. Read it like this:\n\n    tide = items[1]\n    bar = rows[2]\n\n"
             "Then cross the bar [2][3].\n")
    out = link_citations(reply, passages)
    assert "\n\n    tide = items[1]\n    bar = rows[2]\n\n" in out  # the indented code block is as written
    assert _linked(out) == [1, 2, 3]  # prose "[1]" and "[2][3]" still link, the code does not
    assert out.count('<details class="pp-source"') == 3
    # indented lines that continue a paragraph or a list item are prose: their citations link
    for prose in ("High tide is at 06:12\n    as the guide says [1].", "- High tide is at 06:12\n\n    see [2].",
                  "1. Tides\n2. Bar\n\n    both in [3]."):
        assert _linked(link_citations(prose, passages)), prose
    # ...but after a heading, or after the list has ended, indented lines are code again
    assert _linked(link_citations("# Tides\n    t = items[1]\n\nSee [2].", passages)) == [2]
    assert _linked(link_citations("- a\n\nDone.\n\n    t = items[1]\n\nSee [2].", passages)) == [2]
    # an indented block (spaces or a tab) holding the only [1] cites nothing: the reply is left as it is
    for code_only in ("Use this:\n\n    first = items[1]\n\nThat is all.", "    first = items[1]\n",
                      "Use this:\n\n\tfirst = items[1]\n"):
        assert link_citations(code_only, passages) == code_only


def test_a_streaming_code_span_is_never_linked_before_it_closes(tmp_path, script):
    (tmp_path / "harbour.md").write_text(HARBOUR)
    script.engine().library.ingest([str(tmp_path / "harbour.md")])
    state = _turn(script, "When is high tide at Port Avel?")
    reply = "High tide is at 06:12 [1]. Index the table with `tides[1]` as well."
    # TGWUI runs output_modifier on every streamed prefix of the reply
    for end in range(len(reply) + 1):
        body = script.output_modifier(reply[:end], state, is_chat=True).split("<details", 1)[0]
        assert body.count(LINK) == (1 if end >= reply.index("[1]") + 3 else 0), (end, body)
        assert LINK not in body.partition("`tides")[2], (end, body)
    # in a finished reply a stray backtick on an earlier line is literal: the lines after it still link
    out = script.output_modifier("A lone ` tick here.\nHigh tide is at 06:12 [1].", state, is_chat=True)
    assert _linked(out) == [1], out

# -- 4: citations link only the passages injected into this turn's prompt ---------------------
def test_citations_link_only_this_turns_passages(tmp_path, script):
    (tmp_path / "harbour.md").write_text(HARBOUR)
    script.engine().library.ingest([str(tmp_path / "harbour.md")], "character/Skipper")
    state = _turn(script, "When is high tide at Port Avel?")
    assert "<details" in script.output_modifier("At 06:12 [1].", state, is_chat=True)
    # documents turned off: the next turn injects nothing, so nothing is linked
    script.params["enabled"] = False
    state = _turn(script, "When is high tide at Port Avel?")
    assert "06:12" not in state["context"]
    assert script.output_modifier("Earlier I said [1] here.", state, is_chat=True) == "Earlier I said [1] here."
    script.params["enabled"] = True
    # a greeting (TGWUI runs output_modifier on it with no turn before) links nothing either
    assert script.output_modifier("Ahoy! Ask me about [1].", _chat_state(), is_chat=True) == \
        "Ahoy! Ask me about [1]."
    # a turn whose question finds nothing links nothing, even in the same chat
    state = _turn(script, "What colour is the vault door of the mountain bank?")
    assert "[Documents" not in state["context"]
    assert script.output_modifier("See [1].", state, is_chat=True) == "See [1]."


def test_a_bad_setting_from_the_ui_is_refused_and_changes_nothing(script):
    before = dict(script.params)
    values = [before.get(k, RagSettings().__dict__.get(k)) for k in script._SETTING_KEYS]
    values[script._SETTING_KEYS.index("chunk_size")] = 8
    message = script.save_settings(*values)
    assert message.startswith("Settings not saved:") and "chunk" in message and "\n" not in message
    assert script.params["chunk_size"] == before["chunk_size"]
    assert not (Path(script.params["store_dir"]) / "rag-settings.json").exists()
