"""How much answer rag-enhancer packs into the words it injects, on two documents of two kinds.

    .venv/bin/python bench/rag_docs.py

Sets (bench/data/README.md): ``dev`` is the project's own document set (KJV narratives, 44
questions), on which every setting was chosen; ``report`` is the Bash 5.2 manual page (a
manual, ~50k words), whose 60 questions were written and committed before any retrieval ran
over it (bench/data/bash_manual/). The manual is not committed (340 KB): it is rendered on
first run from Debian's ``bash`` package (the installed /usr/share/man/man1/bash.1.gz, else
``apt-get download bash``) into ``.cache/bench/`` at the repository root.
"""

from __future__ import annotations

import gzip
import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA = Path(__file__).resolve().parent / "data"
CACHE = ROOT / ".cache" / "bench"
BASH_MAN = Path("/usr/share/man/man1/bash.1.gz")
BASH_MAN_SHA256 = "3ca7a67df55bd2f80a2de111f8d44df359f7a795573aaaadce09a52a22bcedeb"  # bash 5.2.15-2+b8


def _bash_man_gz() -> bytes:
    """bash.1.gz from the installed package, else from ``apt-get download bash``."""
    if BASH_MAN.is_file():
        return BASH_MAN.read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["apt-get", "download", "bash"], cwd=tmp, check=True, capture_output=True)
        deb = next(Path(tmp).glob("bash_*.deb"))
        subprocess.run(["dpkg-deb", "-x", str(deb), str(Path(tmp) / "x")], check=True)
        return (Path(tmp) / "x" / "usr/share/man/man1/bash.1.gz").read_bytes()


def render_bash_manual(out: Path) -> Path:
    """The Bash manual page as Markdown: groff renders it to plain text (ASCII, one line a
    paragraph, no hyphenation), sections (column 0) become ``##`` and subsections (indent 3)
    ``###`` headings, every other line a paragraph."""
    raw = _bash_man_gz()
    if hashlib.sha256(raw).hexdigest() != BASH_MAN_SHA256:
        print("warning: bash.1.gz differs from the one the questions were written on "
              "(bash 5.2.15-2+b8); some answers may be missing", file=sys.stderr)
    if not shutil.which("groff"):
        raise SystemExit("rag_docs: groff is needed once to render the Bash manual (apt-get install groff-base)")
    text = subprocess.run(["groff", "-man", "-Tascii", "-rLL=3000n", "-rHY=0", "-dAD=l", "-P-cbou"],
                          input=gzip.decompress(raw), capture_output=True, check=True).stdout.decode("ascii", "replace")
    lines = text.splitlines()[1:-1]  # page header and footer
    md = ["# Bash 5.2 manual page: bash(1), GNU Bourne-Again SHell", ""]
    for line in lines:
        body = " ".join(line.split())
        if not body:
            continue
        indent = len(line) - len(line.lstrip(" "))
        if indent == 0:
            md += [f"## {body}", ""]
        elif indent == 3:
            md += [f"### {body}", ""]
        else:
            md += [body, ""]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(md), encoding="utf-8")
    return out


def bash_manual() -> Path:
    """The rendered manual, made once into the cache."""
    path = CACHE / "bash_manual.md"
    if not path.is_file():
        render_bash_manual(path)
    return path


if __name__ == "__main__":
    print(bash_manual())
