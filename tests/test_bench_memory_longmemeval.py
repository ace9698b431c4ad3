"""bench/memory_longmemeval.py reads LongMemEval's format and scores what it says it scores.

Issue 12 asks for recall measured on "LongMemEval (or another public long-term-memory set)", a
set the memory defaults were never chosen on. A reader that mislabels which stored message holds
the evidence, or a subset that changes with the copy's file order, would make that number
meaningless; these check the reader on a tiny instance in the authors' format (no model loaded).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import memory_longmemeval as lme  # noqa: E402 - after the sys.path line, to import bench/'s modules


def instance(qid: str, qtype: str = "single-session-user") -> dict:
    return {
        "question_id": qid, "question_type": qtype, "question": "What degree did I graduate with?",
        "answer": "Business Administration", "question_date": "2023/05/30 (Tue) 23:40",
        "haystack_dates": ["2023/05/20 (Sat) 02:21", "2023/05/21 (Sun) 10:00"],
        "haystack_session_ids": ["sharegpt_x_0", f"answer_{qid}"],
        "haystack_sessions": [
            [{"role": "user", "content": "Any tips for tomatoes?"}, {"role": "assistant", "content": "Sun."}],
            [{"role": "user", "content": "I graduated in Business Administration.", "has_answer": True},
             {"role": "assistant", "content": "Congratulations!", "has_answer": False},
             {"role": "user", "content": "  "},
             {"role": "user", "content": "Thanks."}],
        ],
        "answer_session_ids": [f"answer_{qid}"],
    }


def test_file_and_directory_copies_read_the_same(tmp_path):
    items = [instance("a1"), instance("b2", "multi-session")]
    (tmp_path / "all.json").write_text(json.dumps(items))
    folder = tmp_path / "split"
    folder.mkdir()
    for n, item in enumerate(items):
        (folder / f"{40 + n}_{item['question_id']}.json").write_text(json.dumps(item))
    assert lme.load(tmp_path / "all.json") == lme.load(folder) == items


def test_not_the_format_or_two_variants_mixed_is_refused(tmp_path):
    bad = instance("a1")
    del bad["answer_session_ids"]
    (tmp_path / "bad.json").write_text(json.dumps([bad]))
    with pytest.raises(SystemExit, match="answer_session_ids"):
        lme.load(tmp_path / "bad.json")
    (tmp_path / "twice.json").write_text(json.dumps([instance("a1"), instance("a1")]))
    with pytest.raises(SystemExit, match="twice"):
        lme.load(tmp_path / "twice.json")


def test_messages_keep_their_session_date_and_evidence_label():
    records, where = lme.records_of(instance("a1"))
    assert [r["text"] for r in records] == ["Any tips for tomatoes?", "Sun.", "I graduated in Business Administration.",
                                            "Congratulations!", "Thanks."]  # the blank message is not stored
    assert where == [("sharegpt_x_0", False), ("sharegpt_x_0", False), ("answer_a1", True), ("answer_a1", False),
                     ("answer_a1", False)]
    assert records[2]["time"] == lme.session_time("2023/05/21 (Sun) 10:00") == 1684663200.0
    assert records[3]["context"] == records[2]["text"] and records[1]["context"] == records[0]["text"]
    keys = [(r["chat"], r["row"], r["role"]) for r in records]
    assert len(set(keys)) == len(keys)  # no message replaces another in the store
    assert {r["character"] for r in records} == {"lme-a1"}


def test_subset_is_fixed_by_question_id_not_file_order():
    items = [instance(f"q{n}", t) for n in range(6) for t in lme.TYPES] + [instance("z_abs")]
    chosen = [q["question_id"] for q in lme.select(items, 2)]
    assert chosen == [q["question_id"] for q in lme.select(list(reversed(items)), 2)]
    assert len(chosen) == 2 * len(lme.TYPES) and "z_abs" not in chosen


def test_session_and_turn_recall():
    q = instance("a1")
    where = {10: ("sharegpt_x_0", False), 11: ("answer_a1", False), 12: ("answer_a1", True)}
    got = lme.scores(q, where, [10, 11, 10, 10, 10, 12])
    assert got["sess R@5"] == 1.0 and got["turn R@5"] == 0.0  # a message of the session, not the evidence turn
    assert got["turn R@10"] == 1.0


def update_instance(qid: str) -> dict:
    """A knowledge update whose newer session is listed first: the dates, not the order, say
    which value is current."""
    q = instance(qid, "knowledge-update")
    q["haystack_dates"] = ["2023/05/20 (Sat) 02:21", "2023/04/01 (Sat) 10:00"]
    q["haystack_session_ids"] = [f"answer_{qid}_new", f"answer_{qid}_old"]
    q["haystack_sessions"] = [
        [{"role": "user", "content": "I have read 220 pages now.", "has_answer": True}],
        [{"role": "user", "content": "I am at page 120.", "has_answer": True}],
    ]
    q["answer_session_ids"] = [f"answer_{qid}_new", f"answer_{qid}_old"]
    return q


def test_a_knowledge_update_is_scored_newer_first_by_the_sessions_dates():
    q = update_instance("u1")
    records, where = lme.records_of(q)
    ids = {n: w for n, w in enumerate(where)}  # memory id n = the n-th stored message
    assert [r["text"] for r in records] == ["I have read 220 pages now.", "I am at page 120."]
    assert lme.newer_first(q, ids, [0, 1]) == {"newer in 10": 1.0, "newer first": 1.0}
    assert lme.newer_first(q, ids, [1, 0]) == {"newer in 10": 1.0, "newer first": 0.0}
    assert lme.newer_first(q, ids, [1]) == {"newer in 10": 0.0, "newer first": 0.0}
    assert lme.newer_first(q, ids, [0]) == {"newer in 10": 1.0, "newer first": 1.0}  # the older not recalled
    scored = lme.scores(q, ids, [1, 0])
    assert scored["newer first"] == 0.0 and scored["turn R@5"] == 1.0
    assert "newer first" not in lme.scores(instance("a1"), {0: ("sharegpt_x_0", False)}, [0])


def test_the_knowledge_update_halves_are_fixed_and_disjoint():
    items = [update_instance(f"u{n}") for n in range(9)] + [instance("a1")]
    updates = lme.select(list(reversed(items)), 100, ("knowledge-update",))
    assert updates == lme.select(items, 100, ("knowledge-update",))  # file order does not matter
    dev, report = lme.update_half(updates, "dev"), lme.update_half(updates, "report")
    assert len(dev) == 4 and len(report) == 5
    assert {q["question_id"] for q in dev} | {q["question_id"] for q in report} == {f"u{n}" for n in range(9)}
    assert not {q["question_id"] for q in dev} & {q["question_id"] for q in report}
    with pytest.raises(ValueError, match="dev"):
        lme.update_half(updates, "all")
