"""Generate the long-chat memory benchmark: several characters, thousands of messages each.

Each character's chat is a user talking to that character over ~40 sessions (one TGWUI chat
each): 800 exchanges (1,600 stored messages, the user's and the character's reply) that are
mostly fillers (acknowledgements, greetings, small talk, questions without content, and the
character's generic replies), chat about topics, other people's facts (hard negatives), and the
user's own facts, each stated once:

- ``single-fact``: a fact asked with a direct question (it may reuse the statement's words);
- ``paraphrase``: the same fact asked with a question that shares no content word (stemmed,
  stopwords aside) with the message that answers it;
- ``changed-fact``: stated, then changed 150+ exchanges later (moved city, new job, new dog,
  changed taste); the newer message must be recalled and ranked above the older;
- ``correction``: stated, then corrected in the next message ("actually, it's Tuesday, not
  Monday"), tersely or in full; the correction must be recalled and ranked above the original;
- ``multi-hop``: a relation's name ("My sister is called Lena") and, in another session, a
  fact about that name ("Lena lives in Porto"), asked about the relation; both are gold;
- ``cross-character``: a fact told to another character asked here, where nothing of it may
  come back.

Two splits, each from its own seed, character names and template draws: ``dev`` for choosing
settings and ``report`` for reporting them. Templates marked held out in
``bench/longchat_templates.py`` never appear in dev. The data is made on the fly (nothing
generated is committed); the same split always gives the same data, whatever the process's
hash seed:

    .venv/bin/python bench/longchat_generate.py --split dev [--out FILE.json] [--sample 10]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import sqlite3
import sys
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import longchat_templates as T  # noqa: E402  (bench/ is the script's folder)

VERSION = 1
SPLITS = {
    "dev": {"seed": 1201, "characters": ["Aria", "Bruno", "Chiara"]},
    "report": {"seed": 7907, "characters": ["Dmitri", "Esme", "Farid"]},
}
QUESTION_KINDS = ["single-fact", "paraphrase", "changed-fact", "correction", "multi-hop", "cross-character"]
EXCHANGES = 800          # per character: 1,600 stored messages
N_SINGLE = 22            # facts per character asked directly and in other words
N_CHANGED = 10
N_CORRECTION = 6
N_HOP = 5
N_CROSS = 6
N_DISTRACTOR = 40
N_CHAT = 150
N_RESERVED = 5          # values per pool kept for distractors
START = datetime(2025, 1, 6, 18, 0, tzinfo=timezone.utc)

_TOKEN = re.compile(r"\w+", re.UNICODE)
_porter_conn = None
_porter_cache: dict[str, str] = {}


def _stems(words: list[str]) -> list[str]:
    """Porter stems (SQLite FTS5's tokenizer, the one BM25 uses in the pack's FTS5 engine)."""
    global _porter_conn
    todo = [w for w in dict.fromkeys(words) if w not in _porter_cache]
    if todo:
        if _porter_conn is None:
            _porter_conn = sqlite3.connect(":memory:")
            _porter_conn.execute("CREATE VIRTUAL TABLE tok USING fts5(t, tokenize = 'porter unicode61 remove_diacritics 2')")
            _porter_conn.execute("CREATE VIRTUAL TABLE tok_v USING fts5vocab(tok, 'instance')")
        conn = _porter_conn
        conn.executemany("INSERT INTO tok(rowid, t) VALUES (?, ?)", list(enumerate(todo)))
        found = {doc: term for term, doc, offset in conn.execute("SELECT term, doc, offset FROM tok_v") if offset == 0}
        conn.execute("DELETE FROM tok")
        for i, w in enumerate(todo):
            _porter_cache[w] = found.get(i, w)
    return [_porter_cache[w] for w in words]


def content_terms(text: str) -> set[str]:
    """The stemmed content words of ``text`` (what a question must not share to be a paraphrase)."""
    words = [w.lower() for w in _TOKEN.findall(text)]
    return set(_stems([w for w in words if w not in T.STOPWORDS]))


def shares_content(a: str, b: str) -> bool:
    return bool(content_terms(a) & content_terms(b))


def held_out(template: str) -> bool:
    return template.startswith("!")


def usable(templates: list[str], split: str) -> list[str]:
    return [t for t in templates if split != "dev" or not held_out(t)]


def pick(rng: random.Random, templates: list[str], split: str) -> str:
    """A template for ``split``: dev never sees held-out ones; report prefers them."""
    options = usable(templates, split)
    if split != "dev":
        hidden = [t for t in options if held_out(t)]
        if hidden and rng.random() < 0.6:
            return rng.choice(hidden)
    return rng.choice(options)


def fill(template: str, **values) -> str:
    text = template.lstrip("!")
    for key, value in values.items():
        text = text.replace("{" + key + "}", value)
    text = re.sub(r"\b([Aa]) (?=[aeioAEIO])", r"\1n ", text)  # "a oat latte" -> "an oat latte"
    return text[0].upper() + text[1:] if text else text


class Values:
    """Values drawn without repetition within a split (small pools excepted)."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.used: dict[str, set[str]] = {}
        # a few values per pool only ever appear in other people's facts (the distractors)
        self.reserved = {pool: [self.draw(pool) for _ in range(N_RESERVED)] for pool in sorted(T.DISTRACTORS)}

    def distractor(self, pool: str) -> str:
        return self.rng.choice(self.reserved[pool])

    def draw(self, pool: str, avoid: tuple[str, ...] = ()) -> str:
        if pool == "date":
            return self._date()
        options = [v for v in T.POOLS[pool] if v not in avoid]
        if pool not in T.SHARED_POOLS:
            used = self.used.setdefault(pool, set())
            options = [v for v in options if v not in used]
            if not options:
                raise RuntimeError(f"value pool {pool!r} is exhausted")
            value = self.rng.choice(options)
            used.add(value)
            return value
        return self.rng.choice(options)

    def _date(self) -> str:
        used = self.used.setdefault("date", set())
        while True:
            day, month = self.rng.randint(1, 28), self.rng.choice(T.MONTHS)
            if (key := f"{day} {month}") not in used:
                used.add(key)
                break
        suffix = "th" if 11 <= day <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
        return self.rng.choice([f"the {day}{suffix} of {month}", f"{month} {day}{suffix}", f"{day} {month}"])


def _place(rng: random.Random, free: set[int], lo: int, hi: int) -> int:
    """A free exchange slot in [lo, hi) (any free one when that range is full)."""
    options = sorted(s for s in free if lo <= s < hi) or sorted(free)
    slot = rng.choice(options)
    free.discard(slot)
    return slot


def _sessions(rng: random.Random, exchanges: int) -> list[tuple[int, float]]:
    """(session number, start time) per exchange; sessions of 12-30 exchanges, 1-4 days apart."""
    out = []
    session, start = 0, START
    while len(out) < exchanges:
        length = rng.randint(12, 30)
        out += [(session, start.timestamp())] * length
        session += 1
        start += timedelta(days=rng.randint(1, 4), minutes=rng.randint(-90, 90))
    return out[:exchanges]


def _question(kind, character, text, gold, **extra) -> dict:
    return {"character": character, "type": kind, "question": fill(text["template"], **text.get("values", {})),
            "template": text["template"], "held_out": held_out(text["template"]), "gold": gold, **extra}


def generate(split: str, *, exchanges: int = EXCHANGES) -> dict:
    """The data set of ``split`` ("dev" or "report"): ``turns`` (every stored message, in order,
    per character) and labelled ``questions``; the same split always gives the same data."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
    if exchanges < 200:
        raise ValueError("a chat needs at least 200 exchanges to hold its facts")
    spec = SPLITS[split]
    rng = random.Random(spec["seed"])
    values = Values(rng)
    kinds = {k["name"]: k for k in T.FACT_KINDS}
    changeable = [k["name"] for k in T.FACT_KINDS if k["update"]]
    correctable = [k["name"] for k in T.FACT_KINDS if k["correct"]]
    plain = [k["name"] for k in T.FACT_KINDS if not k["correct"]]
    turns: list[dict] = []
    questions: list[dict] = []
    facts_of: dict[str, list[dict]] = {}     # character -> single facts (for cross-character probes)
    kinds_of: dict[str, set[str]] = {}       # character -> every fact kind told to it

    for character in spec["characters"]:
        events: dict[int, dict] = {}         # exchange slot -> the user's message there
        free = set(range(exchanges))
        asked: list[dict] = []
        changed = rng.sample(changeable, N_CHANGED)
        corrected = rng.sample(correctable, N_CORRECTION)
        single = rng.sample([k for k in plain if k not in changed], N_SINGLE)
        kinds_of[character] = set(changed) | set(corrected) | set(single)
        facts_of[character] = []

        for name in single:
            kind = kinds[name]
            value = values.draw(kind["pool"])
            # a statement with at least one paraphrase question that shares none of its words
            pairs = []
            for st in usable(kind["state"], split):
                text = fill(st, v=value)
                paras = [q for q in usable(kind["para"], split) if not shares_content(q.lstrip("!"), text)]
                if paras:
                    pairs.append((st, paras))
            if pairs:
                hidden = [p for p in pairs if held_out(p[0])]
                st, paras = rng.choice(hidden) if (split != "dev" and hidden and rng.random() < 0.6) else rng.choice(pairs)
                hidden_q = [q for q in paras if held_out(q)]
                para = rng.choice(hidden_q) if (split != "dev" and hidden_q and rng.random() < 0.6) else rng.choice(paras)
            else:
                st, para = pick(rng, kind["state"], split), None
            slot = _place(rng, free, 0, exchanges)
            events[slot] = {"label": "fact", "kind": name, "template": st, "text": fill(st, v=value)}
            fact = {"kind": name, "slot": slot, "value": value}
            facts_of[character].append(fact)
            asked.append({"type": "single-fact", "slots": [slot], "template": pick(rng, kind["direct"], split),
                          "kind": name, "value": value})
            if para:
                asked.append({"type": "paraphrase", "slots": [slot], "template": para, "kind": name, "value": value})

        for name in changed:
            kind = kinds[name]
            old, new = values.draw(kind["pool"]), values.draw(kind["pool"])
            s_old = _place(rng, free, 0, exchanges // 2)
            s_new = _place(rng, free, min(s_old + 150, exchanges - 1), exchanges)
            st, up = pick(rng, kind["state"], split), pick(rng, kind["update"], split)
            events[s_old] = {"label": "fact", "kind": name, "template": st, "text": fill(st, v=old)}
            events[s_new] = {"label": "update", "kind": name, "template": up, "text": fill(up, v=new)}
            asked.append({"type": "changed-fact", "slots": [s_new], "old_slots": [s_old], "kind": name,
                          "template": pick(rng, kind["direct"] + kind["para"], split), "value": new, "old_value": old})

        for name in corrected:
            kind = kinds[name]
            old = values.draw(kind["pool"])
            new = values.draw(kind["pool"], avoid=(old,))
            pairs_free = {s for s in free if s + 1 in free}
            s_old = _place(rng, pairs_free, 0, exchanges)
            s_new = s_old + 1
            free -= {s_old, s_new}
            st = pick(rng, kind["state"], split)
            ct = pick(rng, T.TERSE_CORRECTIONS if rng.random() < 0.5 else kind["correct"], split)
            events[s_old] = {"label": "fact", "kind": name, "template": st, "text": fill(st, v=old)}
            events[s_new] = {"label": "correction", "kind": name, "template": ct, "text": fill(ct, new=new, old=old)}
            asked.append({"type": "correction", "slots": [s_new], "old_slots": [s_old], "kind": name,
                          "template": pick(rng, kind["direct"] + kind["para"], split), "value": new, "old_value": old})

        for rel in rng.sample(T.RELATIONS, N_HOP):
            attribute = rng.choice(sorted(T.HOP_FACTS))
            pool, statements, hop_questions = T.HOP_FACTS[attribute]
            name, value = values.draw("person"), values.draw(pool)
            s1 = _place(rng, free, 0, exchanges - 60)
            s2 = _place(rng, free, s1 + 30, exchanges)
            t1, t2 = pick(rng, T.RELATION_STATE, split), pick(rng, statements, split)
            events[s1] = {"label": "fact", "kind": f"relation:{rel}", "template": t1, "text": fill(t1, rel=rel, name=name)}
            events[s2] = {"label": "fact", "kind": f"relation:{rel}:{attribute}", "template": t2,
                          "text": fill(t2, name=name, v=value)}
            asked.append({"type": "multi-hop", "slots": [s1, s2], "kind": f"relation:{attribute}",
                          "template": pick(rng, hop_questions, split), "rel": rel, "value": value, "name": name})

        for _ in range(N_DISTRACTOR):
            pool = rng.choice(sorted(T.DISTRACTORS))
            template = pick(rng, T.DISTRACTORS[pool], split)
            events[_place(rng, free, 0, exchanges)] = {
                "label": "distractor", "kind": pool, "template": template, "text": fill(template, x=values.distractor(pool))}
        for _ in range(N_CHAT):
            topic = rng.choice(T.TOPICS)
            template = pick(rng, T.CHAT_USER, split)
            events[_place(rng, free, 0, exchanges)] = {
                "label": "chat", "kind": "topic", "template": template, "text": fill(template, t=topic), "topic": topic}

        # the messages: every exchange is the user's message and the character's reply
        sessions = _sessions(rng, exchanges)
        ids: dict[int, str] = {}
        row = 0
        for slot in range(exchanges):
            session, start = sessions[slot]
            row = 0 if slot == 0 or sessions[slot - 1][0] != session else row + 1
            event = events.get(slot)
            if event is None:
                filler = rng.choices(["ack", "question", "small-talk", "greeting"], [35, 25, 25, 15])[0]
                if row == 0:
                    filler = "greeting"
                template = pick(rng, T.FILLER_USER[filler], split)
                event = {"label": "filler", "kind": filler, "template": template, "text": fill(template)}
            if event["label"] == "chat" and rng.random() < 0.6:
                reply_t = pick(rng, T.CHAT_REPLY, split)
                reply = {"label": "chat", "kind": "topic", "template": reply_t, "text": fill(reply_t, t=event["topic"])}
            elif event["label"] in ("fact", "update", "correction", "distractor"):
                reply_t = pick(rng, T.ACK_FACT, split)
                reply = {"label": "filler", "kind": "ack", "template": reply_t, "text": fill(reply_t)}
            else:
                reply_t = pick(rng, T.FILLER_REPLY, split)
                reply = {"label": "filler", "kind": "reply", "template": reply_t, "text": fill(reply_t)}
            t = start + 120.0 * row
            chat = f"{character.lower()}-s{session + 1:02d}"
            for role, message, offset in (("user", event, 0.0), ("assistant", reply, 60.0)):
                turn_id = f"{character}:{slot:04d}:{role[0]}"
                turns.append({"id": turn_id, "character": character, "role": role, "text": message["text"],
                              "time": t + offset, "chat": chat, "row": row, "label": message["label"],
                              "kind": message["kind"], "template": message["template"]})
            ids[slot] = f"{character}:{slot:04d}:u"

        for a in asked:
            values_ = {"rel": a["rel"]} if "rel" in a else {}
            q = _question(a["type"], character, {"template": a["template"], "values": values_},
                          [ids[s] for s in a["slots"]], fact_kind=a["kind"], value=a["value"])
            if "old_slots" in a:
                q["old"] = [ids[s] for s in a["old_slots"]]
                q["old_value"] = a["old_value"]
            questions.append(q)

    # cross-character probes: a fact told to another character, asked here in its direct words
    for character in spec["characters"]:
        options = [(other, fact) for other in spec["characters"] if other != character
                   for fact in facts_of[other]
                   if fact["kind"] not in kinds_of[character] and kinds[fact["kind"]]["pool"] not in T.SHARED_POOLS]
        rng.shuffle(options)
        chosen = list({fact["kind"]: (other, fact) for other, fact in reversed(options)}.values())[:N_CROSS]
        for other, fact in chosen:  # one probe per fact kind
            template = pick(rng, kinds[fact["kind"]]["direct"], split)
            q = _question("cross-character", character, {"template": template}, [],
                          fact_kind=fact["kind"], value=fact["value"])
            q["source_character"] = other
            q["leak"] = [f"{other}:{fact['slot']:04d}:u"]
            questions.append(q)

    by_id = {t["id"]: t for t in turns}
    for n, q in enumerate(questions):
        q["id"] = f"{split}-q{n:03d}"
        gold_text = " ".join(by_id[g]["text"] for g in q["gold"])
        q["shares_words"] = bool(q["gold"]) and shares_content(q["question"], gold_text)
    data = {"version": VERSION, "split": split, "seed": spec["seed"], "characters": list(spec["characters"]),
            "turns": turns, "questions": questions}
    data["fingerprint"] = fingerprint(data)
    return data


def fingerprint(data: dict) -> str:
    """A short hash of the data (names a reusable store: same data, same store)."""
    body = json.dumps({"turns": data["turns"], "questions": data["questions"]}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(body.encode("utf-8")).hexdigest()[:12]


def stats(data: dict) -> dict:
    labels = Counter(t["label"] for t in data["turns"])
    kinds = Counter(q["type"] for q in data["questions"])
    fact_kinds = {t["kind"] for t in data["turns"] if t["label"] in ("fact", "update", "correction")
                  and not t["kind"].startswith("relation:")}
    return {"turns": len(data["turns"]), "per_character": {c: sum(t["character"] == c for t in data["turns"])
                                                           for c in data["characters"]},
            "labels": dict(sorted(labels.items())), "questions": {k: kinds.get(k, 0) for k in QUESTION_KINDS},
            "fact_kinds": len(fact_kinds), "held_out_questions": sum(q["held_out"] for q in data["questions"]),
            "held_out_messages": sum(t["template"].startswith("!") for t in data["turns"]),
            "fingerprint": data["fingerprint"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", choices=sorted(SPLITS), default="dev")
    parser.add_argument("--out", default=None, help="write the data set as JSON (it is not committed)")
    parser.add_argument("--sample", type=int, default=0, help="print N questions of each kind with their gold")
    args = parser.parse_args(argv)
    data = generate(args.split)
    print(json.dumps(stats(data), indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(data, ensure_ascii=False, indent=0), encoding="utf-8")
    if args.sample:
        by_id = {t["id"]: t for t in data["turns"]}
        for kind in QUESTION_KINDS:
            for q in [q for q in data["questions"] if q["type"] == kind][: args.sample]:
                print(f"[{kind}] {q['character']}: {q['question']}")
                for g in q["gold"]:
                    print(f"    gold {g}: {by_id[g]['text']}")
                for g in q.get("old", []):
                    print(f"    old  {g}: {by_id[g]['text']}")
                for g in q.get("leak", []):
                    print(f"    leak {g}: {by_id[g]['text']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
