"""One ``atomic_write`` and one JSONL reader (issue 17: "one atomic_write, one JSONL reader")
instead of eight and four copies."""

from __future__ import annotations

import os
import stat

import pytest

from pocketpack.errors import PocketPackError
from pocketpack.fsutil import atomic_path, atomic_write
from pocketpack.jsonl import read_jsonl


class _Bad(PocketPackError):
    pass


def test_atomic_write_replaces_whole_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "settings.json"
    atomic_write(target, "first")
    atomic_write(target, b"second")
    assert target.read_text() == "second" and os.listdir(tmp_path) == ["settings.json"]


def test_a_failed_write_keeps_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "index.faiss"
    atomic_write(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half of the new")
            raise RuntimeError("the writer failed")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["index.faiss"]


def test_the_file_gets_the_umasks_permissions_not_a_private_temporarys(tmp_path):
    target = tmp_path / "model-settings.yaml"
    atomic_write(target, "x: 1\n")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask


def test_each_bad_line_is_one_error_naming_the_file_and_line(tmp_path):
    path = tmp_path / "memories.jsonl"
    path.write_bytes(b'{"a": 1}\n\n   \n[1, 2]\n')
    assert list(read_jsonl(path, objects=False)) == [(1, {"a": 1}), (4, [1, 2])]
    with pytest.raises(_Bad, match=r"^memories.jsonl line 4: expected an object$"):
        list(read_jsonl(path, error=_Bad))
    for data, message in [(b'{"a": 1}\n{"b": \n', "memories.jsonl line 2: not valid JSON (Expecting value)"),
                          (b'{"a": "caf\xe9"}\n', "memories.jsonl line 1: not UTF-8 text")]:
        path.write_bytes(data)
        with pytest.raises(_Bad) as exc:
            list(read_jsonl(path, error=_Bad))
        assert str(exc.value) == message
    with pytest.raises(_Bad, match=r"/memories.jsonl:1: not UTF-8 text$"):
        list(read_jsonl(path, error=_Bad, where=lambda n: f"{path}:{n}"))
