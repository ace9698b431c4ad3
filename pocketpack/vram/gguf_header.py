"""A GGUF header reader that stops where the tensor data starts.

``gguf.GGUFReader`` decodes every tokenizer string into numpy views (about 20 s for Gemma 3's
262k-token vocabulary on a small CPU); an estimate must take well under a second, so this reads
the documented layout (magic, version, counts, key/values, tensor infos) directly and skips
large arrays by their lengths. The tests check it against ``GGUFReader`` on a real file.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from pocketpack.vram.errors import VramError

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_SIZES = {k: struct.calcsize(v) for k, v in _SCALARS.items()}
# ggml type ids -> names (ggml.h enum ggml_type)
GGML_TYPE_NAMES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 9: "Q8_1", 10: "Q2_K",
    11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 15: "Q8_K", 16: "IQ2_XXS", 17: "IQ2_XS", 18: "IQ3_XXS",
    19: "IQ1_S", 20: "IQ4_NL", 21: "IQ3_S", 22: "IQ2_S", 23: "IQ4_XS", 24: "I8", 25: "I16", 26: "I32",
    27: "I64", 28: "F64", 29: "IQ1_M", 30: "BF16", 34: "TQ1_0", 35: "TQ2_0", 39: "MXFP4",
}
_KEEP_ARRAY = 64  # arrays longer than this (token lists, merges) are skipped, keeping their length


class _Truncated(Exception):
    pass


class _Buffer:
    """Reads a file forward in chunks."""

    def __init__(self, fh, size: int):
        self.fh, self.size = fh, size
        self.data = b""
        self.base = 0   # file offset of data[0]
        self.pos = 0    # file offset of the cursor

    def need(self, n: int) -> memoryview:
        end = self.pos + n
        if end > self.size:
            raise _Truncated
        if end > self.base + len(self.data):
            keep = self.data[self.pos - self.base:]
            self.fh.seek(self.base + len(self.data))
            self.data = keep + self.fh.read(max(n, 1 << 22))
            self.base = self.pos
        view = memoryview(self.data)[self.pos - self.base:end - self.base]
        self.pos = end
        return view

    def scalar(self, vtype: int):
        return struct.unpack(_SCALARS[vtype], self.need(_SIZES[vtype]))[0]

    def string(self) -> str:
        n = self.scalar(10)
        if n > 1 << 30:
            raise _Truncated
        return bytes(self.need(n)).decode("utf-8", errors="replace")

    def skip(self, n: int):
        if self.pos + n > self.size:
            raise _Truncated
        self.pos += n


@dataclass
class GGUFTensorInfo:
    name: str
    shape: tuple[int, ...]   # ggml order
    type_name: str
    offset: int              # relative to the data section


@dataclass
class GGUFHeader:
    version: int
    metadata: dict           # long arrays are given as {"__array_len__": n}
    tensors: list[GGUFTensorInfo]
    data_offset: int
    file_size: int


def _value(buf: _Buffer, vtype: int):
    if vtype in _SCALARS:
        return buf.scalar(vtype)
    if vtype == 8:
        return buf.string()
    if vtype == 9:
        itype, n = buf.scalar(4), buf.scalar(10)
        if n <= _KEEP_ARRAY:
            return [_value(buf, itype) for _ in range(n)]
        if itype in _SIZES:
            buf.skip(_SIZES[itype] * n)
        elif itype == 8:
            for _ in range(n):
                buf.skip(buf.scalar(10))
        else:
            for _ in range(n):
                _value(buf, itype)
        return {"__array_len__": n}
    raise ValueError(f"unknown GGUF value type {vtype}")


def read_gguf_header(path: str | Path) -> GGUFHeader:
    """Parse a GGUF's header; VramError names a file that is not GGUF or ends early."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as fh:
        buf = _Buffer(fh, size)
        try:
            if bytes(buf.need(4)) != b"GGUF":
                raise VramError(f"{path.name}: not a GGUF file (no GGUF magic)")
            version = buf.scalar(4)
            if version == 1:
                n_tensors, n_kv = buf.scalar(4), buf.scalar(4)
            else:
                n_tensors, n_kv = buf.scalar(10), buf.scalar(10)
            if n_tensors > 1 << 24 or n_kv > 1 << 24:
                raise VramError(f"{path.name}: damaged GGUF header ({n_tensors} tensors, {n_kv} keys)")
            meta = {}
            for _ in range(n_kv):
                key = buf.string()
                meta[key] = _value(buf, buf.scalar(4))
            tensors = []
            for _ in range(n_tensors):
                name = buf.string()
                n_dims = buf.scalar(4)
                shape = tuple(buf.scalar(10) for _ in range(n_dims))
                tid = buf.scalar(4)
                offset = buf.scalar(10)
                tensors.append(GGUFTensorInfo(name, shape, GGML_TYPE_NAMES.get(tid, f"TYPE{tid}"), offset))
        except _Truncated:
            raise VramError(f"{path.name}: truncated GGUF (the file ends inside its header, at {size} bytes)") from None
        except (ValueError, struct.error) as exc:
            raise VramError(f"{path.name}: damaged GGUF header ({exc})") from None
    align = meta.get("general.alignment", 32)
    align = align if isinstance(align, int) and align > 0 else 32
    data_offset = -(-buf.pos // align) * align
    return GGUFHeader(version, meta, tensors, data_offset, size)
