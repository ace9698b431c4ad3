"""The long-chat memory benchmark's data (bench/longchat_generate.py) is what its labels say.

Issue 12 asks for "a generated long-chat set of your own making (several characters, thousands of
turns, fillers, facts stated once and asked later in other words, facts that change, later
statements that correct earlier ones, cross-character probes), with a generator and a fixed
seed", and to "select every default on one set and report it on the others". A wrong gold id, a
paraphrase that shares its answer's words, or a report split that leaks dev's templates would
make every number measured on it meaningless, so these are checked here, on the real data.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import longchat_generate as gen  # noqa: E402 - after the sys.path line, to import bench/'s modules
import longchat_templates as templates  # noqa: E402 - after the sys.path line, to import bench/'s modules


@pytest.fixture(scope="module", params=["dev", "report"])
def data(request):
    return gen.generate(request.param)


def test_same_split_same_data_whatever_the_hash_seed():
    """Sets and dicts of strings iterate in a per-process order: the data must not depend on it."""
    prints = set()
    for seed in ("0", "12345"):
        code = "import longchat_generate as g; print(g.generate('dev')['fingerprint'])"
        out = subprocess.run([sys.executable, "-c", code], cwd=BENCH, capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONHASHSEED": seed})
        prints.add(out.stdout.strip())
    assert prints == {gen.generate("dev")["fingerprint"]}


def test_the_set_has_the_shape_the_issue_asks_for(data):
    info = gen.stats(data)
    assert len(data["characters"]) >= 3
    assert all(n >= 1500 for n in info["per_character"].values())
    assert info["fact_kinds"] >= 40
    assert all(info["questions"][kind] > 0 for kind in gen.QUESTION_KINDS)
    texts = {t["text"] for t in data["turns"]}
    assert {"And you?", "Do you like this?"} <= texts  # the fillers the issue saw injected


def test_gold_messages_exist_and_say_what_the_question_asks(data):
    turns = {t["id"]: t for t in data["turns"]}
    for q in data["questions"]:
        if q["type"] == "cross-character":
            continue
        assert q["gold"], q
        for g in q["gold"]:
            t = turns[g]
            assert t["character"] == q["character"] and t["role"] == "user"
            assert t["label"] in ("fact", "update", "correction")
        if q["type"] != "multi-hop":
            assert q["value"] in turns[q["gold"][-1]]["text"]
        if q["type"] in ("changed-fact", "correction"):
            (old,) = q["old"]
            assert turns[old]["character"] == q["character"]
            assert turns[old]["time"] < turns[q["gold"][0]]["time"]
            assert q["old_value"] in turns[old]["text"] and q["old_value"] != q["value"]
        else:
            assert "old" not in q


def test_cross_character_gold_is_absent_from_the_asked_character(data):
    turns = {t["id"]: t for t in data["turns"]}
    for q in (q for q in data["questions"] if q["type"] == "cross-character"):
        assert q["gold"] == []
        (leak,) = q["leak"]
        source = turns[leak]
        assert source["character"] == q["source_character"] != q["character"]
        assert q["value"] in source["text"]
        own = [t for t in data["turns"] if t["character"] == q["character"]]
        assert not any(q["value"] in t["text"] for t in own), q
        assert q["fact_kind"] not in {t["kind"] for t in own if t["label"] in ("fact", "update", "correction")}


def test_paraphrases_share_no_searchable_word_with_their_answer(data):
    """Checked with the pack's own BM25 terms (stopwords out, porter stems), not the generator's."""
    from pocketpack.retrieval.lexical import query_terms, stem_terms

    def terms(text):
        words = query_terms(text, max_terms=1000)
        return set(stem_terms(words).values())

    turns = {t["id"]: t for t in data["turns"]}
    paraphrases = [q for q in data["questions"] if q["type"] == "paraphrase"]
    assert len(paraphrases) >= 30
    for q in paraphrases:
        (gold,) = q["gold"]
        assert not terms(q["question"]) & terms(turns[gold]["text"]), (q["question"], turns[gold]["text"])


def test_dev_never_sees_held_out_templates_and_report_uses_them():
    dev, report = gen.generate("dev"), gen.generate("report")
    assert not any(t["template"].startswith("!") for t in dev["turns"])
    assert not any(q["held_out"] for q in dev["questions"])
    assert sum(q["held_out"] for q in report["questions"]) >= len(report["questions"]) // 3
    assert sum(t["template"].startswith("!") for t in report["turns"]) >= 500
    assert set(dev["characters"]).isdisjoint(report["characters"])
    assert dev["fingerprint"] != report["fingerprint"]


def test_every_fact_kind_can_be_asked_in_other_words_on_both_splits():
    """Each kind has a statement and a paraphrase question that share no word, on dev's templates
    alone and on report's, so no kind silently drops out of the paraphrase row."""
    for kind in templates.FACT_KINDS:
        for split in ("dev", "report"):
            value = "Zzyzx"
            assert any(not gen.shares_content(q.lstrip("!"), gen.fill(s, v=value))
                       for s in gen.usable(kind["state"], split) for q in gen.usable(kind["para"], split)), \
                (kind["name"], split)


def test_generated_file_round_trips(tmp_path):
    out = tmp_path / "dev.json"
    assert gen.main(["--split", "dev", "--out", str(out)]) == 0
    assert json.loads(out.read_text(encoding="utf-8"))["fingerprint"] == gen.generate("dev")["fingerprint"]
