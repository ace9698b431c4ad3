"""Reading ZIP archives (DOCX, EPUB, any zip a parser opens) with limits on what they expand to.

A ZIP's compressed size says nothing about its content: 2 MB of deflated zeros is 2 GB once
read, and a library that reads every member into memory (python-docx, ebooklib) then holds it
all. Every archive the pack opens goes through :class:`SafeZip`, which

- refuses an archive with more entries than ``max_members`` before ``zipfile`` builds its table
  of them (a million empty entries cost hundreds of MB of bookkeeping);
- reads each member as a stream, counting the bytes that really come out (a header's declared
  size is checked first, but never trusted), and stops as soon as a member passes
  ``max_member``, all members together pass ``max_total``, or a member comes out more than
  ``max_ratio`` times larger than its compressed bytes — so no more than the cap is ever
  inflated, and no more than one read chunk is held beyond what the caller keeps;
- raises :class:`ArchiveLimitError` (one line naming the member, the limit and the setting
  that sets it) or :class:`ArchiveError` (damaged, not a ZIP, encrypted).

For a library that opens the ZIP itself, :meth:`SafeZip.check` streams every entry once,
keeping nothing, before the library is handed the bytes: whatever it then reads is within the
limits.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from typing import Self

from pocketpack.errors import PocketPackError

MB = 1024 * 1024
CHUNK = 1 * MB
# a small member may compress very well (an empty table's XML); the ratio is judged only once
# a member has given this much, which no limit-abiding archive can turn into a bomb
RATIO_FLOOR = 4 * MB


class ArchiveError(PocketPackError, ValueError):
    """An archive that cannot be read (damaged, not a ZIP, encrypted); one line."""


class ArchiveLimitError(ArchiveError):
    """An archive refused because it would expand past a limit; one line naming it."""


@dataclass(frozen=True)
class Limits:
    """What an archive may expand to. ``setting_size`` / ``setting_ratio`` name, in messages,
    where the user changes the size and ratio limits."""

    max_member: int = 200 * MB
    max_total: int = 200 * MB
    max_ratio: float = 100.0
    max_members: int = 10_000
    setting_size: str = "rag max_unpacked_mb"
    setting_ratio: str = "rag max_unpack_ratio"

    @classmethod
    def of_mb(cls, unpacked_mb: float, ratio: float, **names) -> Limits:
        """Limits where one size (MB) caps each member and the whole archive."""
        size = max(1, int(unpacked_mb * MB))
        return cls(max_member=size, max_total=size, max_ratio=float(ratio), **names)


def _mb(n: int) -> str:
    return f"{n / MB:.0f} MB" if n >= MB else f"{n} bytes"


class SafeZip:
    """A ZIP archive in memory, read within :class:`Limits`. ``total`` counts every byte
    inflated so far, across members and repeated reads."""

    def __init__(self, data: bytes, limits: Limits | None = None, *, what: str = "the archive"):
        self.limits = limits or Limits()
        self.what = what
        self.total = 0
        # every central-directory entry starts with this signature: counting it bounds the
        # entries from above before zipfile allocates one ZipInfo per entry
        entries = data.count(b"PK\x01\x02")
        if entries > self.limits.max_members:
            raise ArchiveLimitError(f"refused: {what} holds about {entries} entries, more than"
                                    f" {self.limits.max_members} (a ZIP bomb or a damaged archive)")
        try:
            self._zip = zipfile.ZipFile(io.BytesIO(data))
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
            raise ArchiveError(f"{what} is damaged or not a ZIP archive ({_one_line(exc)})") from exc
        except (KeyError, IndexError, TypeError, OverflowError, MemoryError, NotImplementedError) as exc:
            raise ArchiveError(f"{what} is damaged ({_one_line(exc)})") from exc
        self._size = len(data)

    def close(self) -> None:
        self._zip.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def infolist(self) -> list[zipfile.ZipInfo]:
        return self._zip.infolist()

    def namelist(self) -> list[str]:
        return self._zip.namelist()

    def read(self, member: str | zipfile.ZipInfo) -> bytes:
        """A member's bytes, within the limits (``KeyError`` for a name not in the archive)."""
        out = bytearray()
        self._stream(member, out.extend)
        return bytes(out)

    def check(self) -> int:
        """Stream every entry once, keeping nothing; the bytes they expand to. Raises as
        :meth:`read` would, so a library that reads the archive itself stays within limits."""
        for info in self._zip.infolist():
            if not info.is_dir():
                self._stream(info, lambda chunk: None)
        return self.total

    def _stream(self, member: str | zipfile.ZipInfo, sink) -> None:
        lim = self.limits
        info = member if isinstance(member, zipfile.ZipInfo) else self._zip.getinfo(member)
        name = info.filename
        if info.flag_bits & 0x1:
            raise ArchiveError(f"{self.what} is encrypted (its member {name} needs a password)")
        # an honest header gives the size away before anything is inflated
        if info.file_size > lim.max_member:
            raise self._too_big(name, lim.max_member, "member")
        if self.total + info.file_size > lim.max_total:
            raise self._too_big(name, lim.max_total, "total")
        packed = max(1, min(info.compress_size, self._size))
        got = 0
        try:
            with self._zip.open(info) as fh:
                while True:
                    # never ask for more than one byte past the tightest cap still open
                    room = min(lim.max_member - got, lim.max_total - self.total)
                    chunk = fh.read(min(CHUNK, room + 1))
                    if not chunk:
                        break
                    got += len(chunk)
                    self.total += len(chunk)
                    if got > lim.max_member:
                        raise self._too_big(name, lim.max_member, "member")
                    if self.total > lim.max_total:
                        raise self._too_big(name, lim.max_total, "total")
                    if got > RATIO_FLOOR and got > lim.max_ratio * packed:
                        raise ArchiveLimitError(
                            f"refused: member {name} expands more than {lim.max_ratio:g} times its packed size"
                            f" (a ZIP bomb?) (limit: {lim.setting_ratio})")
                    sink(chunk)
        except ArchiveError:
            raise
        except (zipfile.BadZipFile, EOFError, OSError, ValueError, NotImplementedError, RuntimeError) as exc:
            raise ArchiveError(f"{self.what} is damaged: its member {name} cannot be read ({_one_line(exc)})") \
                from exc
        except Exception as exc:  # zlib, bz2 and lzma raise error types of their own
            raise ArchiveError(f"{self.what} is damaged: its member {name} cannot be read ({_one_line(exc)})") \
                from exc

    def _too_big(self, name: str, cap: int, which: str) -> ArchiveLimitError:
        if which == "member":
            return ArchiveLimitError(f"refused: member {name} would expand past {_mb(cap)}"
                                     f" (limit: {self.limits.setting_size})")
        return ArchiveLimitError(f"refused: {self.what} would expand past {_mb(cap)} in all (at member {name})"
                                 f" (limit: {self.limits.setting_size})")


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:200]


def inflate_size(raw: bytes, limits: Limits | None = None, *, what: str = "a stream", spent: int = 0) -> int:
    """How many bytes the zlib (or, failing its header, raw deflate) stream ``raw`` inflates
    to, found by inflating it in bounded steps and keeping nothing; :class:`ArchiveLimitError`
    as soon as it passes ``limits.max_member``, ``spent`` plus it passes ``limits.max_total``,
    or it passes the ratio. A stream that turns out damaged counts what came out before."""
    import zlib

    lim = limits or Limits()
    wbits = 15 if raw[:1] and (raw[0] & 0x0F) == 8 and int.from_bytes(raw[:2], "big") % 31 == 0 else -15
    inflater = zlib.decompressobj(wbits)
    packed = max(1, len(raw))
    got = 0
    view = memoryview(raw)
    pos = 0
    while True:
        if inflater.unconsumed_tail:
            data = inflater.unconsumed_tail
        elif pos < len(view):
            data, pos = view[pos:pos + CHUNK], pos + CHUNK
        else:
            break
        try:
            out = inflater.decompress(data, CHUNK)
        except zlib.error:
            break
        got += len(out)
        if got > lim.max_member:
            raise ArchiveLimitError(f"refused: {what} would expand past {_mb(lim.max_member)}"
                                    f" (limit: {lim.setting_size})")
        if spent + got > lim.max_total:
            raise ArchiveLimitError(f"refused: its compressed parts would expand past {_mb(lim.max_total)} in all"
                                    f" (at {what}) (limit: {lim.setting_size})")
        if got > RATIO_FLOOR and got > lim.max_ratio * packed:
            raise ArchiveLimitError(f"refused: {what} expands more than {lim.max_ratio:g} times its packed size"
                                    f" (a compression bomb?) (limit: {lim.setting_ratio})")
        if inflater.eof:
            break
    return got
