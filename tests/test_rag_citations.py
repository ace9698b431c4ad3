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
    _ = script.engine().library  # the store is open before the measurement
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
    # [1] only inside code cites nothing: the reply is left as it is, with the sources under it, none marked cited
    code_only = "Use this:\n\n```\nfirst = items[1]\n```\n\nor `items[1]`."
    body, row = _split(script.output_modifier(code_only, state, is_chat=True))
    assert body == code_only and row.startswith(SOURCES) and "pp-cited" not in row




LINK = '<sup class="pp-cite">'
SOURCES = '<div class="pp-sources">'


def _split(out: str) -> tuple[str, str]:
    """(the reply as shown, the Sources row under it — "" when there is none)."""
    body, _, row = out.partition("\n\n" + SOURCES)
    return body, (SOURCES + row) if row else ""


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
    assert out.count('<details class="pp-source pp-cited"') == 3
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
        body, row = _split(link_citations(code_only, passages))
        assert body == code_only.rstrip() and "pp-cited" not in row and LINK not in body


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
    from pocketpack.rag.extension import SETTING_KEYS

    values = dict(zip(SETTING_KEYS, [before.get(k, RagSettings().__dict__.get(k)) for k in SETTING_KEYS]))
    values["chunk_size"] = 8
    message = script.engine().apply_settings(values)
    assert message.startswith("Settings not saved:") and "chunk" in message and "\n" not in message
    assert script.params["chunk_size"] == before["chunk_size"]
    assert not (Path(script.params["store_dir"]) / "rag-settings.json").exists()


# -- issue 14.1: the sources used for a reply are shown under it, whatever the model writes ----
def _chips(row: str) -> list[dict]:
    """Each chip of a Sources row: its number, name, location, score, passage and cited mark."""
    pattern = (r'<details class="pp-source( pp-cited)?" id="pp-src-\w+-(\d+)"><summary title="[^"]*">'
               r'<span class="pp-n">\d+</span> <span class="pp-name">([^<]*)</span>'
               r'(?: <span class="pp-loc">([^<]*)</span>)? <span class="pp-score">score ([\d.]+)</span></summary>'
               r'<div class="pp-chunk">(.*?)</div></details>')
    import html as _html

    return [{"cited": bool(c), "n": int(n), "name": _html.unescape(name), "location": _html.unescape(loc or ""),
             "score": score, "hit": re.findall(r'<mark class="pp-hit">(.*?)</mark>', text),
             "text": _html.unescape(re.sub(r'</?mark[^>]*>', "", text).replace("<br>", "\n"))}
            for c, n, name, loc, score, text in re.findall(pattern, row)]


def test_a_reply_that_cites_nothing_still_shows_the_sources_it_was_given(tmp_path, script):
    """Issue 14: "the reply only links [n] when the model writes [n], and a small model never
    does". Every passage of the turn's prompt is listed under the reply: name, location, score,
    and the exact text the model saw behind it."""
    from pocketpack.rag.extension import STATE_KEY

    (tmp_path / "harbour.md").write_text(HARBOUR)
    script.engine().library.ingest([str(tmp_path / "harbour.md")])
    state = _turn(script, "When is high tide at Port Avel?")
    given = state[STATE_KEY]
    assert given, "the question must retrieve the tides passage"
    reply = "The tide comes in early on Mondays, skipper."
    body, row = _split(script.output_modifier(reply, state, is_chat=True))
    assert body == reply
    assert row.startswith(SOURCES + '<span class="pp-sources-title">Sources</span>')
    chips = _chips(row)
    assert [c["n"] for c in chips] == list(range(1, len(given) + 1))   # numbered as in the prompt
    for chip, passage in zip(chips, given):
        assert chip["name"] == "harbour.md" and chip["location"] == passage.location
        assert "Tides" in chip["location"] and re.match(r"lines? \d", chip["location"])
        assert chip["score"] == f"{passage.score:.2f}" and chip["text"] == passage.text.strip()
        assert f"[{chip['n']}] harbour.md, {passage.location}" in state["context"]  # what the model saw
    assert "06:12 on Mondays" in chips[0]["text"] and not any(c["cited"] for c in chips)
    # the passage came with its neighbouring chunk: the part that matched is marked in it
    assert given[0].core_text.strip() != given[0].text.strip()
    assert len(chips[0]["hit"]) == 1 and "06:12 on Mondays" in chips[0]["hit"][0]
    assert "chandlery" in chips[0]["text"] and "chandlery" not in chips[0]["hit"][0]
    # when the model does cite, [n] links to its chip and that chip is marked
    out = script.output_modifier("At 06:12 [1].", state, is_chat=True)
    body, row = _split(out)
    anchor = re.search(r'href="#(pp-src-\w+-1)"', body).group(1)
    assert f'id="{anchor}"' in row and _chips(row)[0]["cited"]


def _hostile_passages():
    from pocketpack.rag.retrieve import Passage

    name = '<img src=x onerror="alert(1)">`ev“il”`.md'
    text = ('</details></div><script>alert(2)</script>\n```\ncode\n``` “quoted” &quot;x&quot; "y"\n'
            '<a href="javascript:alert(3)">click</a>')
    return name, text, [Passage(text, f"/up/{name}", "p. 2 · <b>Intro</b>", 0.5, name=name),
                        Passage("Plain passage.", "/up/plain.md", "lines 1–2", 0.4, name="plain.md")]


def test_sources_are_inert_html_whatever_the_documents_hold():
    """A document's name and text are the user's, not markup: they show as text, and the row
    survives TGWUI's Markdown pass as one raw HTML block (no backtick, no &quot;, no curly
    quote for it to turn into code or <q> tags)."""
    from html.parser import HTMLParser

    from pocketpack.rag.cite import link_citations

    name, text, passages = _hostile_passages()
    reply = 'It says &quot;hello [1]'  # the host/TGWUI escape the reply before output_modifier
    out = link_citations(reply, passages)
    body, row = _split(out)

    class Tags(HTMLParser):
        def __init__(self):
            super().__init__(convert_charrefs=True)
            self.tags, self.text, self.open = [], [], []

        def handle_starttag(self, tag, attrs):
            self.tags.append((tag, dict(attrs)))
            if tag != "br":
                self.open.append(tag)

        def handle_endtag(self, tag):
            assert self.open and self.open[-1] == tag, (tag, self.open)
            self.open.pop()

        def handle_data(self, data):
            self.text.append(data)

    parsed = Tags()
    parsed.feed(row)
    assert not parsed.open  # balanced: nothing the document holds closes or opens an element
    assert {t for t, _ in parsed.tags} <= {"div", "span", "details", "summary", "br", "mark"}
    assert {a for _, attrs in parsed.tags for a in attrs} <= {"class", "id", "title"}
    shown = "".join(parsed.text)
    assert name in shown and "</details></div><script>alert(2)</script>" in shown and "<b>Intro</b>" in shown
    assert '<a href="javascript:alert(3)">click</a>' in shown
    # TGWUI's pass (html_generator.process_markdown_content): one line, nothing it rewrites
    assert "\n" not in row and "`" not in row and "&quot;" not in row and not set("\u201c\u201d") & set(row)
    assert body.startswith('It says &quot;hello <sup class="pp-cite"><a href="#pp-src-')


def test_continue_keeps_one_sources_row_and_never_nests_links(tmp_path):
    """Continue appends to the visible reply, sources and all, and runs output_modifier on the
    whole: the reply still has one Sources row (the last turn's), its [n] linked once."""
    from pocketpack.host.chat import default_state
    from pocketpack.host.runtime import Runtime
    from tests.helpers.scripted_backend import ScriptedBackend

    runtime = Runtime(root=REPO, user_data_dir=tmp_path / "user_data", extensions=["rag-enhancer"])
    with Library(tmp_path / "user_data" / "pocketpack" / "documents") as lib:
        (tmp_path / "harbour.md").write_text(HARBOUR)
        lib.ingest([str(tmp_path / "harbour.md")])
    runtime.backend = ScriptedBackend(reply="High tide is at 06:12 [1].")
    state = default_state(mode="chat", name2="Skipper", context="You are Skipper.")
    state["history"] = list(runtime.chat("When is high tide at Port Avel?", state))[-1]
    runtime.backend.reply = " Wait for it [1]."
    history = list(runtime.chat("", state, _continue=True))[-1]
    assert history["internal"][-1][1] == "High tide is at 06:12 [1]. Wait for it [1]."
    visible = history["visible"][-1][1]
    assert visible.count(SOURCES) == 1 and visible.count("<details") == len(_chips(_split(visible)[1]))
    body, row = _split(visible)
    assert _linked(visible) == [1, 1] and body.count("<a ") == 2  # two citations, each linked once
    assert re.sub(r"<sup[^>]*><a[^>]*>(\[\d\])</a></sup>", r"\1", body) == history["internal"][-1][1]


def test_sources_never_come_from_another_chat_or_an_earlier_turn(tmp_path):
    """A document added to one chat shows under that chat's replies only; a later turn that
    retrieved nothing shows no sources, not the previous turn's."""
    from pocketpack.host.chat import default_state
    from pocketpack.host.runtime import Runtime
    from tests.helpers.scripted_backend import ScriptedBackend

    runtime = Runtime(root=REPO, user_data_dir=tmp_path / "user_data", extensions=["rag-enhancer"])
    with Library(tmp_path / "user_data" / "pocketpack" / "documents") as lib:
        (tmp_path / "harbour.md").write_text(HARBOUR)
        lib.ingest([str(tmp_path / "harbour.md")], "chat/chat-one")
    runtime.backend = ScriptedBackend(reply="Early.")

    def ask(chat_id, question, history=None):
        state = default_state(mode="chat", name2="Skipper", context="You are Skipper.", unique_id=chat_id)
        if history:
            state["history"] = history
        return list(runtime.chat(question, state))[-1]

    first = ask("chat-one", "When is high tide at Port Avel?")
    assert "harbour.md" in _split(first["visible"][-1][1])[1]
    other_chat = ask("chat-two", "When is high tide at Port Avel?")
    assert other_chat["visible"][-1][1] == "Early."
    later = ask("chat-one", "What colour is the vault door of the mountain bank?", history=first)
    assert later["visible"][-1][1] == "Early."
    assert "harbour.md" in later["visible"][0][1]  # the first reply keeps its own sources


@pytest.mark.parametrize("order", [["memory", "rag-enhancer"], ["rag-enhancer", "memory"]])
def test_memory_stores_the_reply_without_its_sources_row(tmp_path, order):
    """Memory reads the visible reply in output_modifier; when rag-enhancer's hook ran first,
    that reply carries the Sources row. What is remembered is what the model said."""
    from pocketpack.host.chat import default_state
    from pocketpack.host.runtime import Runtime
    from tests.helpers.scripted_backend import ScriptedBackend

    runtime = Runtime(root=REPO, user_data_dir=tmp_path / "user_data", extensions=order)
    with Library(tmp_path / "user_data" / "pocketpack" / "documents") as lib:
        (tmp_path / "harbour.md").write_text(HARBOUR)
        lib.ingest([str(tmp_path / "harbour.md")])
    runtime.backend = ScriptedBackend(reply="High tide is at 06:12 [1], skipper.")
    state = default_state(mode="chat", name2="Skipper", context="You are Skipper.", character_menu="Skipper")
    history = list(runtime.chat("When is high tide at Port Avel?", state))[-1]
    assert SOURCES in history["visible"][-1][1]
    stored = runtime.host.loaded["memory"].turns().memory.list("Skipper")
    assert sorted(m.text for m in stored) == ["High tide is at 06:12 [1], skipper.", "When is high tide at Port Avel?"]
