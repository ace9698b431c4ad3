"""`pocketpack memory ...`: the exact forms scripts depend on. The round trip runs each command
through ``pocketpack.cli.main`` in this process (one embedding-model load, not nine); the bad-input
test runs the real console command in a subprocess, exit status and stderr as a user sees them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.cli import run_main

REPO = Path(__file__).resolve().parents[1]


def console(*args, timeout=300):
    """The installed command in its own process, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "pocketpack", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "HF_HUB_OFFLINE": "1"})


@pytest.mark.slow
def test_add_import_recall_export_forget(tmp_path, capsys):
    def pocketpack(*args):  # in this process: the real CLI, one model load for all nine commands
        return run_main(capsys, *args)

    store = str(tmp_path / "mem")
    added = pocketpack("memory", "--store", store, "add", "--character", "Aria", "--role", "user",
                       "--text", "My dog Biscuit is a beagle.", "--time", "2025-01-02T10:00:00", "--chat", "c1")
    assert added.returncode == 0, added.stderr
    first_id = int(added.stdout.strip())

    jsonl = tmp_path / "in.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in [
        {"character": "Aria", "role": "assistant", "text": "You told me you love astronomy.", "time": "2025-02-01T00:00:00Z"},
        {"character": "Aria", "role": "user", "text": "I grow tomatoes on my balcony.", "chat": "c2"},
        {"character": "Bob", "role": "user", "text": "My dog Rex is a poodle."},
    ]) + "\n")
    imported = pocketpack("memory", "--store", store, "import", str(jsonl))
    assert imported.returncode == 0, imported.stderr

    one = pocketpack("memory", "--store", store, "recall", "--character", "Aria", "--query", "what breed is my dog",
                     "--k", "2", "--json")
    assert one.returncode == 0, one.stderr
    results = json.loads(one.stdout)
    assert len(results) == 2
    assert set(results[0]) == {"id", "text", "score", "time", "role", "chat"}
    assert results[0] == {"id": first_id, "text": "My dog Biscuit is a beagle.", "score": results[0]["score"],
                          "time": "2025-01-02T10:00:00+00:00", "role": "user", "chat": "c1"}
    assert results[0]["score"] >= results[1]["score"]
    assert all("Rex" not in r["text"] for r in results)  # Bob's memory is not Aria's

    queries = tmp_path / "q.jsonl"
    queries.write_text("\n".join(json.dumps(q) for q in [
        {"character": "Bob", "query": "my dog", "k": 3},
        {"character": "Aria", "query": "stars and planets", "k": 1},
        {"character": "Nobody", "query": "anything", "k": 5},
    ]) + "\n")
    many = pocketpack("memory", "--store", store, "recall", "--queries", str(queries), "--json")
    assert many.returncode == 0, many.stderr
    lines = [json.loads(line) for line in many.stdout.strip().splitlines()]
    assert [len(line) for line in lines] == [1, 1, 0]
    assert lines[0][0]["text"] == "My dog Rex is a poodle." and lines[1][0]["text"] == "You told me you love astronomy."
    assert lines[1][0]["time"] == "2025-02-01T00:00:00+00:00" and lines[1][0]["role"] == "assistant"

    exported = pocketpack("memory", "--store", store, "export")
    records = [json.loads(line) for line in exported.stdout.strip().splitlines()]
    assert exported.returncode == 0 and len(records) == 4
    assert {(r["character"], r["text"]) for r in records} >= {("Aria", "My dog Biscuit is a beagle."),
                                                              ("Bob", "My dog Rex is a poodle.")}

    forgot = pocketpack("memory", "--store", store, "forget", "--character", "Aria", "--chat", "c2")
    assert forgot.returncode == 0 and "forgot 1" in forgot.stderr
    forgot = pocketpack("memory", "--store", store, "forget", "--character", "Bob")
    assert forgot.returncode == 0
    left = [json.loads(line)["text"] for line in pocketpack("memory", "--store", store, "export").stdout.splitlines()]
    assert sorted(left) == ["My dog Biscuit is a beagle.", "You told me you love astronomy."]


def test_bad_input_is_one_clear_line(tmp_path):
    store = str(tmp_path / "mem")
    bad_role = console("memory", "--store", store, "add", "--character", "A", "--role", "bot", "--text", "x")
    assert bad_role.returncode == 2 and "invalid choice: 'bot'" in bad_role.stderr
    bad_time = console("memory", "--store", store, "add", "--character", "A", "--role", "user", "--text", "x",
                       "--time", "last tuesday")
    assert bad_time.returncode == 2
    assert bad_time.stderr.strip().splitlines() == [
        "pocketpack: not a date/time (use ISO 8601, e.g. 2025-05-01T14:30:00): 'last tuesday'"]
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"character": "A", "role": "user", "text": "fine"}\n{not json}\n')
    bad_file = console("memory", "--store", store, "import", str(broken))
    assert bad_file.returncode == 2 and "broken.jsonl line 2: not JSON" in bad_file.stderr
    assert "Traceback" not in bad_file.stderr
    missing = console("memory", "--store", store, "recall", "--queries", str(tmp_path / "nope.jsonl"), "--json")
    assert missing.returncode == 2 and "no such file" in missing.stderr
    both = console("memory", "--store", store, "forget")
    assert both.returncode == 2 and "exactly one of" in both.stderr
