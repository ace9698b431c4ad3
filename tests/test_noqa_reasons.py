"""Issue 17: "every remaining `noqa` carries its reason" - a silenced lint rule says on its own
line why silencing is right there (``# noqa: BLE001 - why``), so a reader can judge it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOQA = re.compile(r"#\s*noqa\b(?P<rest>.*)$")
REASON = re.compile(r"^:\s*[A-Z]+[0-9]+(\s*,\s*[A-Z]+[0-9]+)*\s*(-|--|:|\()\s*\S")


def test_every_noqa_names_its_rules_and_a_reason():
    bare = []
    for folder in ("pocketpack", "extensions", "tests", "bench", "scripts"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
                found = NOQA.search(line)
                if found and not REASON.match(found["rest"]):
                    bare.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not bare, "noqa without a reason:\n" + "\n".join(bare)
