"""Header readers for the weight and config files Pocket Pack inspects, without loading tensors.

One parser per format, shared by the VRAM estimator, the adapter library and the llama.cpp
backend; each maps :class:`FormatError` to its own error type. ``gguf.GGUFReader`` decodes
every tokenizer string into numpy (about 20 s for Gemma 3's 262k-token vocabulary on a small
CPU), so the GGUF layout (magic, version, counts, key/values, tensor infos) is read directly,
skipping long arrays by their lengths. The tests check it against ``GGUFReader``.
"""

from __future__ import annotations

from pocketpack.errors import PocketPackError

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path


class FormatError(PocketPackError, ValueError):
    """A file that is not what its format says; ``str(error)`` is ``"<path>: <problem>"``."""

    def __init__(self, path: str | Path, problem: str):
        self.path, self.problem = Path(path), problem
        super().__init__(f"{path}: {problem}")


# --------------------------------------------------------------------------- JSON

def read_json_object(path: str | Path) -> dict:
    """A JSON file that must hold an object."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise FormatError(path, f"cannot read ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise FormatError(path, f"not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise FormatError(path, "expected a JSON object")
    return data


# --------------------------------------------------------------------------- safetensors

SAFETENSORS_DTYPE_BYTES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
    "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1, "U16": 2, "U32": 4, "U64": 8,
}
_MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024


def read_safetensors_header(path: str | Path) -> tuple[dict, dict]:
    """``(tensors, metadata)`` of a safetensors file (8-byte little-endian length, then JSON).

    ``tensors`` maps names to ``{"dtype", "shape", "data_offsets"}``, each checked against the
    file's size, so anything that would make loading fail (short file, bad JSON, unknown dtype,
    offsets past the end) is a FormatError here.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise FormatError(path, f"not a safetensors file ({size} bytes)")
            (n,) = struct.unpack("<Q", head)
            if n > _MAX_SAFETENSORS_HEADER or n > size - 8:
                raise FormatError(path, f"corrupt safetensors header (claims {n} bytes, file has {size})")
            raw = fh.read(n)
    except OSError as exc:
        raise FormatError(path, f"cannot read ({exc.strerror or exc})") from None
    try:
        header = json.loads(raw.decode("utf-8"))
        if not isinstance(header, dict):
            raise ValueError("not an object")
    except (UnicodeDecodeError, ValueError) as exc:
        raise FormatError(path, f"corrupt safetensors header ({exc})") from None
    metadata = header.pop("__metadata__", None) or {}
    data_size = size - 8 - n
    for name, t in header.items():
        if isinstance(t, dict) and isinstance(t.get("dtype"), str) and t["dtype"] not in SAFETENSORS_DTYPE_BYTES:
            raise FormatError(path, f"corrupt safetensors header (unknown dtype {t['dtype']!r} for {name})")
        try:
            dtype, shape = t["dtype"], [int(s) for s in t["shape"]]
            start, end = (int(x) for x in t["data_offsets"])
            need = math.prod(shape) * SAFETENSORS_DTYPE_BYTES[dtype]
        except (KeyError, TypeError, ValueError):
            raise FormatError(path, f"corrupt safetensors header (bad entry for {name})") from None
        if end - start != need:
            raise FormatError(path, f"corrupt safetensors header ({name} has {end - start} bytes, needs {need})")
        if end > data_size:
            raise FormatError(path, f"truncated safetensors file ({name} ends at byte {end} "
                                    f"of a {data_size}-byte data section)")
    return header, metadata


# --------------------------------------------------------------------------- GGUF

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_SIZES = {k: struct.calcsize(v) for k, v in _SCALARS.items()}
# ggml type ids -> names (ggml.h enum ggml_type)
GGML_TYPE_NAMES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 9: "Q8_1", 10: "Q2_K",
    11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 15: "Q8_K", 16: "IQ2_XXS", 17: "IQ2_XS", 18: "IQ3_XXS",
    19: "IQ1_S", 20: "IQ4_NL", 21: "IQ3_S", 22: "IQ2_S", 23: "IQ4_XS", 24: "I8", 25: "I16", 26: "I32",
    27: "I64", 28: "F64", 29: "IQ1_M", 30: "BF16", 34: "TQ1_0", 35: "TQ2_0", 39: "MXFP4",
}
KEEP_ARRAY = 64  # by default arrays longer than this (token lists, merges) are skipped, keeping their length


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
    metadata: dict           # arrays longer than keep_array are given as {"__array_len__": n}
    tensors: list[GGUFTensorInfo]   # empty when the read stopped early at a key
    data_offset: int | None  # None when the read stopped early at a key
    file_size: int

    @property
    def tensor_data_end(self) -> int | None:
        """Where the last tensor's data starts (a file this short is truncated), or None."""
        if self.data_offset is None:
            return None
        return self.data_offset + max((t.offset for t in self.tensors), default=0)


def _value(buf: _Buffer, vtype: int, keep_array: int | None):
    if vtype in _SCALARS:
        return buf.scalar(vtype)
    if vtype == 8:
        return buf.string()
    if vtype == 9:
        itype, n = buf.scalar(4), buf.scalar(10)
        if n > buf.size - buf.pos:
            raise _Truncated
        if keep_array is None or n <= keep_array:
            return [_value(buf, itype, keep_array) for _ in range(n)]
        if itype in _SIZES:
            buf.skip(_SIZES[itype] * n)
        elif itype == 8:
            for _ in range(n):
                buf.skip(buf.scalar(10))
        else:
            for _ in range(n):
                _value(buf, itype, keep_array)
        return {"__array_len__": n}
    raise ValueError(f"unknown GGUF value type {vtype}")


def read_gguf_header(path: str | Path, *, stop_key_suffix: str | None = None,
                     keep_array: int | None = KEEP_ARRAY) -> GGUFHeader:
    """Parse a GGUF's metadata and tensor infos; FormatError names a file that is not GGUF or ends early.

    ``stop_key_suffix`` returns as soon as a key ending with it is read (a quick context-length
    look-up), with no tensors. ``keep_array=None`` keeps every array, however long.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        fh = open(path, "rb")
    except OSError as exc:
        raise FormatError(path, f"cannot read ({exc.strerror or exc})") from None
    with fh:
        buf = _Buffer(fh, size)
        try:
            if bytes(buf.need(4)) != b"GGUF":
                raise FormatError(path, "not a GGUF file (no GGUF magic)")
            version = buf.scalar(4)
            if version == 1:
                n_tensors, n_kv = buf.scalar(4), buf.scalar(4)
            else:
                n_tensors, n_kv = buf.scalar(10), buf.scalar(10)
            if n_tensors > 1 << 24 or n_kv > 1 << 24:
                raise FormatError(path, f"damaged GGUF header ({n_tensors} tensors, {n_kv} keys)")
            meta = {}
            for _ in range(n_kv):
                key = buf.string()
                meta[key] = _value(buf, buf.scalar(4), keep_array)
                if stop_key_suffix and key.endswith(stop_key_suffix):
                    return GGUFHeader(version, meta, [], None, size)
            tensors = []
            for _ in range(n_tensors):
                name = buf.string()
                n_dims = buf.scalar(4)
                if n_dims > 8:
                    raise ValueError(f"tensor {name} has {n_dims} dimensions")
                shape = tuple(buf.scalar(10) for _ in range(n_dims))
                tid = buf.scalar(4)
                offset = buf.scalar(10)
                tensors.append(GGUFTensorInfo(name, shape, GGML_TYPE_NAMES.get(tid, f"TYPE{tid}"), offset))
        except _Truncated:
            raise FormatError(path, f"truncated GGUF (the file ends inside its header, at {size} bytes)") from None
        except (ValueError, struct.error) as exc:
            if isinstance(exc, FormatError):
                raise
            raise FormatError(path, f"damaged GGUF header ({exc})") from None
    align = meta.get("general.alignment", 32)
    align = align if isinstance(align, int) and not isinstance(align, bool) and align > 0 else 32
    data_offset = -(-buf.pos // align) * align
    return GGUFHeader(version, meta, tensors, data_offset, size)
