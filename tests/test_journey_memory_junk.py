"""Issue 12's "no junk in, no junk out", seen where a user sees it: the Memory tab's record of
what was injected into a real chat's prompt, in headless Chromium against `pocketpack serve`
on the embedded model.

The character already has a long history (600 messages of the long-chat benchmark's generator,
its small talk included, imported with `pocketpack memory import` as a user's old chats would
be); the person then types small talk of their own ("Do you like this?", "And you?", "ok") and
asks about a fact told weeks ago in other words. The fact is injected; none of the small talk,
old or new, is. (With the first defaults, two of the six memories injected for that question were
small talk.)
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tests.helpers.browser import ARTIFACTS, chromium, open_chat, send, serve

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

import longchat_generate as gen  # noqa: E402 - after the sys.path line, to import bench/'s modules

TYPED_SMALL_TALK = ["Do you like this?", "And you?", "ok"]


@pytest.fixture(scope="module")
def history():
    """Aria's chats from the benchmark's dev split (300 exchanges), as the UI's default character's."""
    data = gen.generate("dev", exchanges=300)
    turns = [t for t in data["turns"] if t["character"] == "Aria"]
    by_id = {t["id"]: t for t in turns}
    # asked in other words than the fact ("I could eat jollof rice every day."); with the first
    # defaults (LoCoMo-chosen) two pieces of small talk were injected beside it
    question = next(q for q in data["questions"] if q["question"] == "What food do I love?")
    return {"turns": turns, "question": question["question"], "answer": by_id[question["gold"][0]]["text"],
            "fillers": {t["text"] for t in turns if t["label"] == "filler"}}


@pytest.fixture(scope="module")
def server(tmp_path_factory, default_model, history):
    user_data = tmp_path_factory.mktemp("user_data")
    lines = tmp_path_factory.mktemp("import") / "aria.jsonl"
    lines.write_text("".join(json.dumps({
        "character": "Assistant", "role": t["role"], "text": t["text"], "chat": t["chat"],
        "time": datetime.fromtimestamp(t["time"], timezone.utc).isoformat()}) + "\n" for t in history["turns"]))
    subprocess.run([sys.executable, "-m", "pocketpack", "memory", "--store", str(user_data / "pocketpack" / "memory"),
                    "import", str(lines)], check=True, cwd=REPO, capture_output=True)
    with serve(user_data, default_model, "--model-dir", str(Path(default_model).parent),
               "--extensions", "memory") as url:
        yield url


def test_small_talk_is_never_injected_beside_the_fact_asked_for(server, history):
    with chromium() as browser:
        page = open_chat(browser, server, {"max_new_tokens": "16", "temperature": "0"})
        for text in TYPED_SMALL_TALK:
            send(page, text)
        send(page, history["question"])

        page.get_by_role("tab", name="Memory", exact=True).first.click()
        memory = page.get_by_role("tabpanel").first
        memory.get_by_role("button", name="Show what was injected for the last reply").click()
        memory.get_by_text(f"query: {history['question']}").wait_for(timeout=30_000)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "journey-memory-no-junk.png"), full_page=True)
        rows = memory.get_by_role("row").filter(has_text="said")
        rows.first.wait_for(timeout=30_000)
        lines = [row.get_by_role("gridcell").all_inner_texts()[-1] for row in rows.all()]

        assert any(f"“{history['answer']}”" in line for line in lines), lines
        junk = [line for line in lines for text in history["fillers"] | set(TYPED_SMALL_TALK) if f"“{text}”" in line]
        assert not junk, junk
