"""Writing files whole or not at all.

``atomic_write(path, data)`` for bytes or text already in memory; ``atomic_path(path)`` for a
writer that wants a file name of its own (faiss, a model assembler): both write a temporary
beside the target (same folder, so the rename is atomic), fsync it and rename it over the
target. A crash or an error leaves the old file as it was and no temporary behind.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(path: str | Path, *, fsync: bool = True, mode: int = 0o666) -> Iterator[Path]:
    """A temporary path beside ``path`` to write; on a clean exit it is fsynced and renamed
    over ``path``, on an exception removed. Unique per call, so concurrent writers of one
    file never share a temporary: the last rename wins, whole. ``mode`` (less the umask) is
    the file's from its creation: 0o600 keeps a private file private even while it is written."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode))  # less the umask, as open() gives
    try:
        yield tmp
        if fsync:
            _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if fsync:
        fsync_dir(path.parent)


def atomic_write(path: str | Path, data: bytes | str, *, encoding: str = "utf-8", fsync: bool = True,
                 mode: int = 0o666) -> None:
    """Write ``data`` (text is encoded with ``encoding``) to ``path`` whole or not at all."""
    if isinstance(data, str):
        data = data.encode(encoding)
    with atomic_path(path, fsync=fsync, mode=mode) as tmp:
        tmp.write_bytes(data)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str | Path) -> None:
    """Make a rename in ``path`` durable where the platform allows it (best effort)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse to fsync a folder: the rename is still atomic
    finally:
        os.close(fd)
