"""One safe way to read a folder the user chose: never anything whose real path lies outside it.

A folder the user hands to the pack (documents to ingest, a library to list) may hold links:
``notes.txt -> /etc/passwd``, ``shared -> /home/someone``. Following them would index or copy
files the user never chose. Everything that walks such a folder or opens a file inside it goes
through here:

- :func:`resolve_within` — the real path of ``path``, or :class:`PathOutsideError` when it (after
  every link) is not inside ``root``;
- :func:`walk` — every regular file under ``root`` in a stable order, each as a
  :class:`WalkEntry`; what is not yielded for reading (a link leading out, a broken link, a
  fifo or device, a hidden file or folder, a folder the caller prunes) comes as an entry with
  ``skipped`` set to the reason, once per top-most thing skipped (a hidden folder is one entry,
  not one per file in it);
- :func:`read_within` — a file's bytes, opened without following a final link, checked to be a
  regular file inside ``root`` *after* it is open (a file swapped for a link between the walk and
  the read is refused too), and never more than ``limit`` bytes read.

Links that stay inside the folder are followed for files (a file reached twice is read once)
but never for folders: the folder they point at is walked in its own place, and a link loop
cannot make the walk endless.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pocketpack.errors import PocketPackError


class PathOutsideError(PocketPackError, ValueError):
    """A path that leads (through a link or ``..``) outside the folder the user chose."""


class NotRegularFileError(PocketPackError, ValueError):
    """Not a plain file (a fifo, a device, a socket, a folder): reading it could hang or never end."""


class TooLargeError(PocketPackError, ValueError):
    """A file over the size limit given to :func:`read_within`; ``size`` is its size on disk
    (None when it grew past the limit while it was read)."""

    def __init__(self, message: str, size: int | None = None):
        super().__init__(message)
        self.size = size


@dataclass(frozen=True)
class WalkEntry:
    """One thing met in a walk: ``path`` as found under the root (links not resolved),
    ``real`` its real path (None for a broken link), ``skipped`` why it is not to be read
    (None: read it)."""

    path: Path
    real: Path | None
    skipped: str | None = None
    refused: bool = False  # skipped for safety or as unreadable (not by a rule such as "no hidden files")


def _within(real: Path, root: Path) -> bool:
    return real == root or root in real.parents


def real_root(root: str | os.PathLike) -> Path:
    """The real path of the folder the user chose (a link given as the top is the user's own
    choice, so it is resolved once here; links below it are judged against this)."""
    return Path(os.path.realpath(Path(root).expanduser()))


def resolve_within(root: str | os.PathLike, path: str | os.PathLike) -> Path:
    """The real path of ``path`` (relative paths are taken under ``root``), every link and
    ``..`` resolved; :class:`PathOutsideError` when that is not ``root`` or inside it."""
    base = real_root(root)
    candidate = Path(path)
    if not candidate.is_absolute():
        candidate = base / candidate
    real = Path(os.path.realpath(candidate))
    if not _within(real, base):
        raise PathOutsideError(f"{path} leads outside {base} (to {real}); not followed")
    return real


def is_hidden(name: str) -> bool:
    return name.startswith(".")


def walk(root: str | os.PathLike, *, want: Callable[[Path], bool] | None = None,
         prune: Callable[[Path], str | None] | None = None, hidden: bool = False) -> Iterator[WalkEntry]:
    """Every regular file under ``root`` whose real path stays inside it, sorted by name, as
    ``WalkEntry(path, real)``; and, as ``WalkEntry(path, real, skipped=reason)``, each link
    leading outside, broken link, non-regular file, hidden file or folder (names starting with
    a dot, unless ``hidden``) and each folder ``prune`` names a reason for.

    ``want(path)`` False drops a file silently (a file type the caller does not read is not
    news to the user). Links to files inside the folder are followed, each real file given
    once; links to folders are not descended (what they point at inside is walked in its own
    place). :class:`NotADirectoryError` when ``root`` is not a folder.
    """
    base = real_root(root)
    if not base.is_dir():
        raise NotADirectoryError(f"not a folder: {root}")
    top = Path(root).expanduser()
    seen: set[Path] = set()
    stack: list[Path] = [top]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            yield WalkEntry(folder, None, f"cannot list this folder ({exc.strerror or exc})", True)
            continue
        subfolders: list[Path] = []
        for entry in entries:
            path = Path(entry.path)
            if not hidden and is_hidden(entry.name):
                kind = "folder" if entry.is_dir(follow_symlinks=False) else "file"
                yield WalkEntry(path, None, f"hidden {kind} (its name starts with a dot)")
                continue
            try:
                is_link = entry.is_symlink()
                if is_link:
                    real = Path(os.path.realpath(path))
                    try:
                        st = os.stat(real)
                    except OSError:
                        yield WalkEntry(path, None, "a broken link (what it points at does not exist)")
                        continue
                    if not _within(real, base):
                        yield WalkEntry(path, real, f"a link to {real}, outside the folder; not followed", True)
                        continue
                    if stat.S_ISDIR(st.st_mode):
                        yield WalkEntry(path, real, "a link to a folder; not followed (that folder is read"
                                                    " in its own place)")
                        continue
                else:
                    st = entry.stat(follow_symlinks=False)
                    real = Path(os.path.realpath(path))
            except OSError as exc:
                yield WalkEntry(path, None, f"cannot read it ({exc.strerror or exc})", True)
                continue
            if stat.S_ISDIR(st.st_mode):
                reason = prune(path) if prune else None
                if reason:
                    yield WalkEntry(path, real, reason)
                else:
                    subfolders.append(path)
                continue
            if want is not None and not want(path):
                continue
            if not stat.S_ISREG(st.st_mode):
                yield WalkEntry(path, real, "not a regular file (a fifo, device or socket)", True)
                continue
            if real in seen:
                continue  # a link to a file already given: once is enough
            seen.add(real)
            yield WalkEntry(path, real)
        stack.extend(reversed(subfolders))  # depth first, in name order


def read_within(root: str | os.PathLike | None, path: str | os.PathLike, limit: int | None = None) -> bytes:
    """The bytes of the regular file ``path``, never more than ``limit`` (None: no limit).

    The file is opened without following a final link (and without blocking on a fifo),
    then checked as open: a regular file, and — when ``root`` is given — its real path inside
    ``root``. So a file swapped for a link after the walk saw it is refused, not followed.
    Raises :class:`PathOutsideError`, :class:`NotRegularFileError`, :class:`TooLargeError`
    or ``OSError``.
    """
    path = Path(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    if root is not None:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if root is not None and os.path.islink(path):  # O_NOFOLLOW on a link: ELOOP
            raise PathOutsideError(f"{path} is a link; not followed") from exc
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFileError(f"{path} is not a regular file (a folder, fifo, device or socket)")
        if root is not None:
            real = _fd_path(fd) or Path(os.path.realpath(path))
            if not _within(real, real_root(root)):
                raise PathOutsideError(f"{path} leads outside {real_root(root)} (to {real}); not followed")
        if limit is not None and st.st_size > limit:
            raise TooLargeError(f"{path} is {st.st_size} bytes, over the limit of {limit}", st.st_size)
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=True) as fh:
            fd = -1
            data = fh.read() if limit is None else fh.read(limit + 1)
        if limit is not None and len(data) > limit:
            raise TooLargeError(f"{path} grew past the limit of {limit} bytes while it was read")
        return data
    finally:
        if fd >= 0:
            os.close(fd)


def _fd_path(fd: int) -> Path | None:
    """The real path of an open file (Linux: /proc/self/fd), None where that is not known."""
    try:
        target = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None
    return Path(target) if target.startswith("/") and not target.endswith(" (deleted)") else None
