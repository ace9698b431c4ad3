"""The document library's bookkeeping, found wrong in review and kept right here: one upload
name or one file in two collections is two documents; stores written before that still
work; settings are checked before they are used or saved; a folder's deleted files leave the
index; updates leave no orphan embeddings; ``k`` is checked alike in both query forms; and
the CLI prints only its own lines."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

from pocketpack.rag import config
from pocketpack.rag.chunking import chunk_blocks
from pocketpack.rag.config import RagSettings, SettingsError
from pocketpack.rag.ingest import IngestError, Library
from pocketpack.rag.parsers import kind_of, parse
from pocketpack.rag.retrieve import retrieve
from pocketpack.retrieval import NewItem
from tests.helpers.cli import run_main
from tests.helpers.rag import embedder, lib  # noqa: F401  (fixtures)

pytestmark = pytest.mark.slow  # the real embedding model

REPO = Path(__file__).resolve().parents[1]
VAULT = b"The vault code is 1111. Keep it in the office safe."
DIARY = b"Alice notes: my diary is hidden under the bed in the attic room."



def texts(passages):
    return " ".join(p.text for p in passages)


def vector_counts(store: Path) -> tuple[int, int]:
    """(embeddings stored, distinct texts that use one)."""
    db = sqlite3.connect(store / "store.sqlite3")
    try:
        return (db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0],
                db.execute("SELECT COUNT(DISTINCT hash) FROM items").fetchone()[0])
    finally:
        db.close()


def run_cli(*args, env=None):
    """The console command in its own process: for what only a fresh process shows (start-up noise)."""
    return subprocess.run([sys.executable, "-m", "pocketpack", "rag", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=300, env=env)


def run_here(capsys, *args):
    """The same command through ``pocketpack.cli.main`` in this process: no fresh model load."""
    return run_main(capsys, "rag", *args)


# -- 1. one name in two collections: two documents, two copies, two ids ----------------------
def test_same_upload_name_in_two_collections_keeps_both_apart(tmp_path, lib):
    first = lib.add_upload("a/notes.txt", VAULT, "global")
    second = lib.add_upload("b/notes.txt", DIARY, "character/Alice")
    assert first.status == second.status == "added"
    docs = {d.collection: d for d in lib.documents()}
    assert set(docs) == {"global", "character/Alice"} and docs["global"].id != docs["character/Alice"].id
    # each collection keeps its own copy, inside uploads/
    uploads = (tmp_path / "store" / "uploads").resolve()
    for coll, data in (("global", VAULT), ("character/Alice", DIARY)):
        copy = Path(docs[coll].source)
        assert uploads in copy.parents and copy.read_bytes() == data
    # by name: ambiguous, and the message points at the ids (the UI has no collection field)
    with pytest.raises(IngestError, match="give the id") as exc:
        lib.remove("notes.txt")
    assert docs["global"].id in str(exc.value) and "--collection" not in str(exc.value)
    # re-indexing everything keeps each collection's own text
    report = lib.reindex()
    assert sorted(r.status for r in report.results) == ["updated", "updated"], report.results
    assert "1111" in texts(retrieve(lib, "what is the vault code", 3, ["global"]))
    assert "diary" not in texts(retrieve(lib, "where is the diary hidden", 3, ["global"]))
    assert "diary" in texts(retrieve(lib, "where is the diary hidden", 3, ["character/Alice"]))
    # removing one by id leaves the other and its copy
    lib.remove(docs["global"].id)
    assert [d.collection for d in lib.documents()] == ["character/Alice"]
    assert not Path(docs["global"].source).exists() and Path(docs["character/Alice"].source).read_bytes() == DIARY
    assert "1111" not in texts(retrieve(lib, "what is the vault code", 3))


def test_a_second_upload_of_a_name_replaces_the_first_and_says_so(lib):
    lib.add_upload("notes.txt", VAULT, "global")
    again = lib.add_upload("notes.txt", VAULT.replace(b"1111", b"2222"), "global")
    assert again.status == "updated" and "replaced the earlier upload" in again.line()
    assert [d.name for d in lib.documents()] == ["notes.txt"]
    assert "2222" in texts(retrieve(lib, "what is the vault code", 1)) and "1111" not in texts(
        retrieve(lib, "what is the vault code", 3))
    assert lib.add_upload("notes.txt", VAULT.replace(b"1111", b"2222"), "global").line() == \
        "unchanged notes.txt (1 chunk)"


def test_same_file_in_two_collections_has_two_ids(tmp_path, lib):
    doc = tmp_path / "plan.md"
    doc.write_text("# Plan\n\nThe boat leaves the harbour at dawn on Friday.\n")
    lib.ingest([str(doc)], "global")
    lib.ingest([str(doc)], "character/Bob")
    ids = {d.collection: d.id for d in lib.documents()}
    assert len(set(ids.values())) == 2
    lib.remove(ids["character/Bob"])
    assert [d.collection for d in lib.documents()] == ["global"]


# -- 2. settings are checked before they are used or saved ------------------------------------
def test_bad_settings_are_refused_before_use_and_never_saved(tmp_path, lib):
    with pytest.raises(SettingsError, match="chunk_size"):
        config.save(tmp_path / "s", RagSettings(chunk_size=10))
    assert not (tmp_path / "s" / config.SETTINGS_FILE).exists()
    with pytest.raises(SettingsError, match="chunk_overlap must be smaller than chunk_size"):
        RagSettings.from_dict({"chunk_size": 100, "chunk_overlap": 100}, strict=True)
    with pytest.raises(SettingsError, match="k must be a whole number"):
        RagSettings.from_dict({"k": "many"}, strict=True)
    # lenient (the extension's params on every turn): bad values fall back, good ones stay
    built = RagSettings.from_dict({"chunk_size": 10, "k": 3, "mode": "fuzzy"})
    assert (built.chunk_size, built.k, built.mode) == (200, 3, "hybrid")
    # the library refuses them in one clear error, not from deep in the chunker
    (tmp_path / "a.txt").write_text("The lighthouse keeper's cat is named Biscuit.\n")
    lib.settings.chunk_size = 10
    with pytest.raises(SettingsError, match="chunk_size must be a whole number of tokens from 16"):
        lib.ingest([str(tmp_path / "a.txt")])
    # a bad saved file gives the defaults and one warning
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / config.SETTINGS_FILE).write_text(json.dumps({"chunk_size": 10}))
    warned = []
    assert config.load(tmp_path / "s", warn=warned.append) == RagSettings()
    assert len(warned) == 1 and "chunk_size" in warned[0] and "default" in warned[0]


def test_cli_refuses_a_bad_chunk_size_and_survives_a_bad_saved_file(tmp_path, capsys):
    store = tmp_path / "store"
    doc = tmp_path / "latin1.txt"
    doc.write_bytes("Caf\xe9 cr\xe8me: the lighthouse keeper's cat is named Biscuit.\n".encode("latin-1"))
    bad = run_here(capsys, "--store", str(store), "ingest", str(doc), "--chunk-size", "10")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines() == [bad.stderr.strip()] and "chunk_size" in bad.stderr
    assert not (store / config.SETTINGS_FILE).exists()
    # a settings file that holds a bad value anyway (an older version saved it): a warning, then work
    store.mkdir()
    saved = {"chunk_size": 10, "chunk_overlap": 30, "k": 8, "reranker_path": "/models/rr", "budget_tokens": 1500,
             "mode": "dense"}
    (store / config.SETTINGS_FILE).write_text(json.dumps(saved))
    plain = run_here(capsys, "--store", str(store), "ingest", str(doc))
    assert plain.returncode == 0, plain.stderr
    assert "added" in plain.stdout and "Traceback" not in plain.stderr
    assert "warning: ignoring chunk_size in" in plain.stderr and "using the default for it" in plain.stderr
    # the CLI also checks the other flags it saves or uses
    assert run_here(capsys, "--store", str(store), "ingest", str(doc), "--chunk-overlap", "500").returncode == 2
    assert json.loads((store / config.SETTINGS_FILE).read_text())["chunk_size"] == 10  # untouched
    # saving a new chunk size keeps every other saved setting (the bad one is replaced)
    assert run_here(capsys, "--store", str(store), "ingest", "--quiet", str(doc), "--chunk-size", "300").returncode == 0
    assert json.loads((store / config.SETTINGS_FILE).read_text()) == config.RagSettings.from_dict(
        dict(saved, chunk_size=300)).to_dict()


def test_one_bad_saved_setting_goes_back_to_its_default_alone(tmp_path):
    (tmp_path / config.SETTINGS_FILE).write_text(json.dumps(
        {"chunk_size": 10, "chunk_overlap": 30, "k": "many", "reranker_path": "/models/rr", "budget_tokens": 1500,
         "mode": "dense", "candidates": 80}))
    warned = []
    s = config.load(tmp_path, warn=warned.append)
    assert (s.chunk_size, s.chunk_overlap, s.k, s.reranker_path, s.budget_tokens, s.mode, s.candidates) == \
        (200, 30, 5, "/models/rr", 1500, "dense", 80)
    assert len(warned) == 1 and warned[0].startswith("ignoring chunk_size, k in "), warned
    assert not any(name in warned[0] for name in ("chunk_overlap", "reranker_path", "budget_tokens", "mode"))
    # a file that is not settings at all still gives the defaults and one warning
    (tmp_path / config.SETTINGS_FILE).write_text("[1, 2]")
    assert config.load(tmp_path, warn=warned.append) == RagSettings() and "expected a JSON object" in warned[1]


# -- 3. a folder's deleted files leave the index ----------------------------------------------
def test_reingesting_a_folder_removes_documents_of_deleted_files(tmp_path, lib):
    folder = tmp_path / "notes"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("The ferry to the island leaves at 08:40 from pier two.\n")
    (folder / "sub" / "b.txt").write_text("The lighthouse keeper's cat is named Biscuit.\n")
    outside = tmp_path / "c.txt"
    outside.write_text("The museum displays a brass sextant from 1790.\n")
    lib.ingest([str(folder), str(outside)])
    lib.ingest([str(folder / "sub" / "b.txt")], "character/Bob")  # same file, another collection
    lib.add_upload("b.txt", b"An uploaded note about the cat Biscuit.", "global")
    (folder / "sub" / "b.txt").unlink()
    outside.unlink()
    report = lib.ingest([str(folder)])
    lines = [r.line() for r in report.results]
    assert f"removed {(folder / 'sub' / 'b.txt').resolve()}: deleted from the folder" in lines, lines
    assert report.summary() == "1 unchanged, 1 removed"
    left = {(d.collection, d.origin, d.name) for d in lib.documents()}
    # only this collection's file under that folder went: not the file outside it, not the
    # other collection's copy, not the upload of the same name
    assert left == {("global", "file", "a.txt"), ("global", "file", "c.txt"), ("character/Bob", "file", "b.txt"),
                    ("global", "upload", "b.txt")}
    assert "named Biscuit" not in texts(retrieve(lib, "what is the cat's name", 5, ["global"]))
    # a folder with no supported files left (or an unmounted drive, an unsynced cloud folder,
    # which look the same): nothing is pruned, and the line says how to remove them
    (folder / "a.txt").unlink()
    report = lib.ingest([str(folder)])
    assert [r.line() for r in report.results] == [
        f"skipped {folder}: no supported files in this folder: kept its 1 document; remove it with remove"]
    assert ("global", "file", "a.txt") in {(d.collection, d.origin, d.name) for d in lib.documents()}
    # files in it again, one of the earlier ones still gone: pruning resumes
    (folder / "d.txt").write_text("The museum opens at nine on Sundays.\n")
    report = lib.ingest([str(folder)])
    assert sorted(r.status for r in report.results) == ["added", "removed"], report.results
    assert ("global", "file", "a.txt") not in {(d.collection, d.origin, d.name) for d in lib.documents()}


# -- 4. nits -----------------------------------------------------------------------------------
def test_an_update_leaves_no_orphan_embeddings(tmp_path, lib):
    doc = tmp_path / "tides.md"
    body = "# Tides\n\n" + "".join(f"Line {n}: high tide on day {n} is at 0{n % 10}:12.\n\n" for n in range(40))
    doc.write_text(body)
    lib.ingest([str(doc)])
    doc.write_text(body.replace("day 3 ", "day three "))
    assert lib.ingest([str(doc)]).results[0].status == "updated"
    stored, used = vector_counts(tmp_path / "store")
    assert stored == used


def test_an_interrupted_update_finished_on_reingest_leaves_no_orphan_embeddings(tmp_path, lib):
    doc = tmp_path / "tides.md"
    doc.write_text("# Tides\n\nHigh tide is at 06:12.\n")
    (first,) = lib.ingest([str(doc)]).results
    # an update that stopped after writing its chunks, before the old surplus ones went
    lib.store.collection("rag/global").upsert([NewItem(
        "A surplus chunk an interrupted update left behind.", key=f"{first.doc_id}#7", grp=first.doc_id,
        meta={"doc": first.doc_id, "source": first.stored, "ordinal": 7})])
    (again,) = lib.ingest([str(doc)]).results
    assert again.status == "unchanged" and [d.chunks for d in lib.documents()] == [1]
    stored, used = vector_counts(tmp_path / "store")
    assert stored == used


def test_an_upload_survives_its_folder_removed_just_before_the_write(lib, monkeypatch):
    real = os.open
    raced = []

    def racing(path, flags, *args):
        path = Path(path)
        if path.name.endswith(".tmp") and flags & os.O_CREAT and not raced:  # another upload's clean-up, just now
            raced.append(path.parent)
            path.parent.rmdir()
        return real(path, flags, *args)

    monkeypatch.setattr(os, "open", racing)
    assert lib.add_upload("notes.txt", VAULT, "global").status == "added" and raced
    (doc,) = lib.documents()
    assert Path(doc.source).read_bytes() == VAULT


def test_an_upload_named_only_by_its_extension_keeps_it(lib):
    result = lib.add_upload(".md", b"# Tides\n\nHigh tide is at 06:12.\n")
    assert result.status == "added" and result.line() == "added upload.md: 1 chunk"
    (doc,) = lib.documents()
    assert doc.name == "upload.md" and doc.kind == "markdown" and Path(doc.source).name == "upload.md"


def test_a_file_over_the_limit_is_refused_from_its_size(tmp_path, lib):
    huge = tmp_path / "huge.txt"
    with huge.open("wb") as fh:  # sparse: 4 GiB by size; reading it would show in the peak below
        fh.truncate(4 << 30)
    lib.settings.max_file_mb = 1
    tracemalloc.start()
    try:
        (result,) = lib.ingest([str(huge)]).results
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.status == "error" and "4096.0 MB, over the 1 MB limit" in result.message
    assert peak < 64 << 20  # refused from its size: the 4 GiB were never read
    # an upload's copy that grew past the limit is refused when re-indexed, and kept
    lib.settings.max_file_mb = 50
    lib.add_upload("notes.txt", VAULT)
    (doc,) = lib.documents()
    with open(doc.source, "r+b") as fh:
        fh.truncate(2 << 20)
    lib.settings.max_file_mb = 1
    (result,) = lib.reindex().results
    assert result.status == "error" and "over the 1 MB limit" in result.message
    assert len(lib.documents()) == 1


def test_cli_k_is_checked_alike_and_the_output_is_only_ours(tmp_path, capsys):
    """A fresh process's stderr holds no third-party start-up noise; the k checks need no fresh one."""
    store = str(tmp_path / "store")
    small = tmp_path / "small.txt"
    small.write_text("The lighthouse keeper's cat is named Biscuit.\nThe ferry leaves at 08:40.\n")
    env = dict(os.environ)
    for name in ("HF_HUB_DISABLE_PROGRESS_BARS", "TRANSFORMERS_VERBOSITY", "PYTHONWARNINGS"):
        env.pop(name, None)
    done = run_cli("--store", store, "ingest", "--quiet", str(small), env=env)
    assert done.returncode == 0 and done.stdout.splitlines() == [f"added {small}: 1 chunk", "1 added"]
    for noise in ("Failed to load", "_pytree.py", "gemm_4bit_forward", "Loading weights", "SOCKS support",
                  "Enum subclass", "Warning", "W11", "it/s"):
        assert noise not in done.stderr, done.stderr
    assert done.stderr == ""
    # k in a queries file and --k follow one rule: a positive integer
    queries = tmp_path / "q.jsonl"
    queries.write_text("\n".join(json.dumps(q) for q in [
        {"query": "name of the cat", "k": 0}, {"query": "name of the cat", "k": 1},
        {"query": "name of the cat", "k": "2"}, {"query": "name of the cat"},
    ]) + "\n")
    out = run_here(capsys, "--store", store, "query", "--queries", str(queries), "--json")
    assert out.returncode == 1
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert [len(x) for x in lines][:3] == [0, 1, 0] and len(lines[3]) >= 1
    errors = out.stderr.strip().splitlines()
    assert len(errors) == 2 and all("must be a positive integer" in e for e in errors)
    assert ":1:" in errors[0] and ":3:" in errors[1]
    flag = run_here(capsys, "--store", store, "query", "name of the cat", "--k", "0")
    assert flag.returncode == 2 and "--k: must be a positive integer" in flag.stderr
    # the silencing is for command-line runs only: importing pocketpack changes no logging
    probe = subprocess.run([sys.executable, "-c", "import logging, pocketpack.cli, pocketpack.rag.cli;"
                            "print(logging.getLogger('torchao').level, logging.getLogger('bitsandbytes').level)"],
                           capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
    assert probe.stdout.split() == ["0", "0"]


def test_remove_line_counts_in_the_singular(tmp_path, capsys):
    store = str(tmp_path / "store")
    (tmp_path / "one.txt").write_text("A single short line.\n")
    assert run_here(capsys, "--store", store, "ingest", "--quiet", str(tmp_path / "one.txt")).returncode == 0
    removed = run_here(capsys, "--store", store, "remove", "one.txt")
    assert removed.returncode == 0 and "(1 chunk, id " in removed.stdout
