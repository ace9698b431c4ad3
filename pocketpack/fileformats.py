"""Header readers for the weight and config files Pocket Pack inspects, without loading tensors.

One parser per format, shared by the VRAM estimator, the adapter library and the llama.cpp
backend; each maps :class:`FormatError` to its own error type. ``gguf.GGUFReader`` decodes
every tokenizer string into numpy (about 20 s for Gemma 3's 262k-token vocabulary on a small
CPU), so the GGUF layout (magic, version, counts, key/values, tensor infos) is read directly,
skipping long arrays by their lengths. The tests check it against ``GGUFReader``.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
import struct
from dataclasses import dataclass
from pathlib import Path

from pocketpack.errors import PocketPackError


class FormatError(PocketPackError, ValueError):
    """A file that is not what its format says; ``str(error)`` is ``"<path>: <problem>"``."""

    def __init__(self, path: str | Path, problem: str):
        self.path, self.problem = Path(path), problem
        super().__init__(f"{path}: {problem}")


def open_regular(path: str | Path):
    """``(file, size)`` of a regular file opened for binary reading; FormatError for a folder,
    fifo, device or socket (opening a fifo to read would wait for a writer for ever)."""
    path = Path(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise FormatError(path, f"cannot read ({exc.strerror or exc})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise FormatError(path, "not a regular file (a folder, fifo, device or socket)")
        os.set_blocking(fd, True)
        fh = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    return fh, st.st_size


# --------------------------------------------------------------------------- JSON

# Bounds every JSON these readers parse is held to, checked before or while parsing so that no
# file can make the parser recurse, allocate or compute without limit: configs nest a few
# levels, safetensors headers three.
MAX_JSON_DEPTH = 64
MAX_JSON_BYTES = 16 * 1024 * 1024      # config.json, adapter_config.json, index files
MAX_JSON_INT_DIGITS = 40               # 2**64 has 20 digits; nothing here needs more

_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


def json_too_deep(text: str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether ``text`` nests arrays/objects deeper than ``limit``, found without parsing.

    Strings are blanked out, every other character but brackets dropped, then innermost
    ``[]`` pairs removed ``limit`` times (C-speed string passes): a pair left over means a
    deeper nest. Unbalanced text is left for the parser to report.
    """
    if text.count("[") + text.count("{") <= limit:
        return False
    s = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text)).replace("{", "[").replace("}", "]")
    for _ in range(limit):
        shorter = s.replace("[]", "")
        if len(shorter) == len(s):
            break
        s = shorter
    return "[]" in s


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range")
    return value


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_JSON_INT_DIGITS:
        raise ValueError(f"a {len(text)}-digit number")
    return int(text)


def parse_json(raw: bytes | str, path: str | Path, what: str = "not valid JSON"):
    """JSON text -> value, held to the bounds above; FormatError ``"<path>: <what> (<why>)"``.

    Rejects nesting deeper than MAX_JSON_DEPTH (checked before parsing), ``NaN`` and
    ``Infinity``, floats that overflow (``1e400``), integers longer than MAX_JSON_INT_DIGITS
    and text that is not UTF-8. Duplicate keys keep the last value, as Python's json,
    transformers and safetensors all do.
    """
    if isinstance(raw, (bytes, bytearray, memoryview)):
        try:
            raw = bytes(raw).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FormatError(path, f"{what} (not UTF-8: byte 0x{exc.object[exc.start]:02x} at {exc.start})") from None
    if json_too_deep(raw):
        raise FormatError(path, f"{what} (nested more than {MAX_JSON_DEPTH} levels deep)")
    try:
        return json.loads(raw, parse_constant=_no_constant, parse_float=_finite_float, parse_int=_bounded_int)
    except RecursionError:  # not reached after the depth check; kept so no input can escape as one
        raise FormatError(path, f"{what} (nested too deeply)") from None
    except ValueError as exc:
        raise FormatError(path, f"{what} ({_one_line(exc)})") from None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:200] if text else type(exc).__name__


def read_json_object(path: str | Path, max_bytes: int = MAX_JSON_BYTES) -> dict:
    """A JSON file that must hold an object, read within :func:`parse_json`'s bounds."""
    path = Path(path)
    fh, _ = open_regular(path)
    try:
        with fh:
            raw = fh.read(max_bytes + 1)
    except OSError as exc:
        raise FormatError(path, f"cannot read ({exc.strerror or exc})") from None
    if len(raw) > max_bytes:
        raise FormatError(path, f"too large for a JSON config (over {max_bytes // (1024 * 1024)} MiB)")
    data = parse_json(raw, path)
    if not isinstance(data, dict):
        raise FormatError(path, f"expected a JSON object, found {_json_type(data)}")
    return data


def _json_type(value) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "true/false", type(None): "null",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)


def int_field(data: dict, key: str, where: str | Path, *, default=None, lo: int = 1, hi: int = 1 << 32):
    """``data[key]`` as an int from ``lo`` to ``hi``, or ``default`` when absent or null.

    A number of the wrong type (a string, true/false, a list) or out of range is a
    FormatError naming the field and the value, never a silent default. A float with an
    integral value (``4096.0``) counts as that integer.
    """
    value = data.get(key)
    if value is None:
        return default
    if isinstance(value, float) and math.isfinite(value) and value.is_integer() and lo <= value <= hi:
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi:
        return value
    raise FormatError(where, f"{clip(key, 60)} must be a whole number from {lo} to {hi} (got {_shown(value)})")


def float_field(data: dict, key: str, where: str | Path, *, default=None, lo: float = 0.0, hi: float = 1e9):
    """``data[key]`` as a finite float from ``lo`` to ``hi``, or ``default`` when absent or null."""
    value = data.get(key)
    if value is None:
        return default
    if isinstance(value, (int, float)) and not isinstance(value, bool) and lo <= value <= hi:
        return float(value)
    raise FormatError(where, f"{clip(key, 60)} must be a number from {lo:g} to {hi:g} (got {_shown(value)})")


def str_list_field(data: dict, key: str, where: str | Path) -> list[str]:
    """``data[key]`` as a list of strings (a single string is a list of one; absent is [])."""
    value = data.get(key)
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise FormatError(where, f"{clip(key, 60)} must be a string or a list of strings (got {_shown(value)})")


def dict_field(data: dict, key: str, where: str | Path) -> dict:
    """``data[key]`` as an object ({} when absent or null)."""
    value = data.get(key)
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    raise FormatError(where, f"{clip(key, 60)} must be a JSON object (got {_shown(value)})")


def clip(text: str, limit: int = 80) -> str:
    """A name from a file, on one line and at most ``limit`` characters, for a message."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _shown(value) -> str:
    """A short, one-line rendering of a bad value for an error message."""
    text = json.dumps(value) if isinstance(value, (str, bool, type(None))) else repr(value)
    if isinstance(value, (dict, list)):
        text = _json_type(value)
    text = " ".join(text.split())
    return text if len(text) <= 40 else text[:37] + "..."


# --------------------------------------------------------------------------- safetensors

SAFETENSORS_DTYPE_BYTES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
    "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1, "U16": 2, "U32": 4, "U64": 8,
}
_MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024


MAX_TENSOR_DIMS = 8


def _count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def read_safetensors_header(path: str | Path) -> tuple[dict, dict]:
    """``(tensors, metadata)`` of a safetensors file (8-byte little-endian length, then JSON).

    ``tensors`` maps names to ``{"dtype", "shape", "data_offsets"}``, each checked against the
    file's size, so anything that would make loading fail (short file, bad JSON, unknown dtype,
    offsets past the end) is a FormatError here. The header's length is checked against the
    file before it is read, its JSON is held to :func:`parse_json`'s bounds, and shapes and
    offsets must be non-negative integers (at most MAX_TENSOR_DIMS dimensions).
    """
    path = Path(path)
    fh, size = open_regular(path)
    try:
        with fh:
            head = fh.read(8)
            if len(head) < 8:
                raise FormatError(path, f"not a safetensors file ({size} bytes)")
            (n,) = struct.unpack("<Q", head)
            if n > _MAX_SAFETENSORS_HEADER or n > size - 8:
                raise FormatError(path, f"corrupt safetensors header (claims {n} bytes, file has {size})")
            raw = fh.read(n)
    except OSError as exc:
        raise FormatError(path, f"cannot read ({exc.strerror or exc})") from None
    header = parse_json(raw, path, "corrupt safetensors header")
    if not isinstance(header, dict):
        raise FormatError(path, f"corrupt safetensors header (expected a JSON object, found {_json_type(header)})")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict):
        raise FormatError(path, f"corrupt safetensors header (__metadata__ is {_json_type(metadata)}, not an object)")
    data_size = size - 8 - n
    for name, t in header.items():
        if isinstance(t, dict) and isinstance(t.get("dtype"), str) and t["dtype"] not in SAFETENSORS_DTYPE_BYTES:
            raise FormatError(path, f"corrupt safetensors header (unknown dtype {clip(t['dtype'], 40)!r} for {clip(name)})")
        shape = t.get("shape") if isinstance(t, dict) else None
        offsets = t.get("data_offsets") if isinstance(t, dict) else None
        if not (isinstance(t, dict) and isinstance(t.get("dtype"), str) and t["dtype"] in SAFETENSORS_DTYPE_BYTES
                and isinstance(shape, list) and len(shape) <= MAX_TENSOR_DIMS and all(_count(d) for d in shape)
                and isinstance(offsets, list) and len(offsets) == 2 and all(_count(x) for x in offsets)
                and offsets[0] <= offsets[1]):
            raise FormatError(path, f"corrupt safetensors header (bad entry for {clip(name)})")
        start, end = offsets
        need = math.prod(shape) * SAFETENSORS_DTYPE_BYTES[t["dtype"]]
        if end - start != need:
            raise FormatError(path, f"corrupt safetensors header ({clip(name)} has {end - start} bytes, needs {need})")
        if end > data_size:
            raise FormatError(path, f"truncated safetensors file ({clip(name)} ends at byte {end} "
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
            loaded_end = self.base + len(self.data)
            if self.pos >= loaded_end:  # skipped past what was read: start afresh at the cursor
                keep, start = b"", self.pos
            else:
                keep, start = self.data[self.pos - self.base:], loaded_end
            self.fh.seek(start)
            self.data = keep + self.fh.read(max(n - len(keep), 1 << 22))
            self.base = self.pos
        view = memoryview(self.data)[self.pos - self.base:end - self.base]
        self.pos = end
        return view

    def scalar(self, vtype: int):
        return struct.unpack(_SCALARS[vtype], self.need(_SIZES[vtype]))[0]

    def string(self, limit: int = 1 << 30) -> str:
        n = self.scalar(10)
        if n > self.size - self.pos:
            raise _Truncated
        if n > limit:
            raise ValueError(f"a {n}-byte string where at most {limit} are allowed")
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


MAX_GGUF_ARRAY_DEPTH = 8      # arrays of arrays: the format allows them, real files nest one level at most
MAX_GGUF_KEY = 65535          # the GGUF spec's limit on a key's length
# the fewest bytes one array element of each type takes, to check a declared count against the file
_MIN_ITEM = {**_SIZES, 8: 8, 9: 12}


def _value(buf: _Buffer, vtype: int, keep_array: int | None, depth: int = 0):
    if vtype in _SCALARS:
        return buf.scalar(vtype)
    if vtype == 8:
        return buf.string()
    if vtype == 9:
        if depth >= MAX_GGUF_ARRAY_DEPTH:
            raise ValueError(f"arrays nested more than {MAX_GGUF_ARRAY_DEPTH} deep")
        itype, n = buf.scalar(4), buf.scalar(10)
        if itype not in _MIN_ITEM:
            raise ValueError(f"unknown GGUF value type {itype}")
        if n * _MIN_ITEM[itype] > buf.size - buf.pos:
            raise _Truncated
        if keep_array is None or n <= keep_array:
            return [_value(buf, itype, keep_array, depth + 1) for _ in range(n)]
        if itype in _SIZES:
            buf.skip(_SIZES[itype] * n)
        elif itype == 8:
            for _ in range(n):
                buf.skip(buf.scalar(10))
        else:
            for _ in range(n):
                _value(buf, itype, keep_array, depth + 1)
        return {"__array_len__": n}
    raise ValueError(f"unknown GGUF value type {vtype}")


def read_gguf_header(path: str | Path, *, stop_key_suffix: str | None = None,
                     keep_array: int | None = KEEP_ARRAY) -> GGUFHeader:
    """Parse a GGUF's metadata and tensor infos; FormatError names a file that is not GGUF or ends early.

    ``stop_key_suffix`` returns as soon as a key ending with it is read (a quick context-length
    look-up), with no tensors. ``keep_array=None`` keeps every array, however long.
    """
    path = Path(path)
    fh, size = open_regular(path)
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
            if n_kv * 13 + n_tensors * 24 > size - buf.pos:  # the fewest bytes a key/value, a tensor info take
                raise _Truncated
            meta = {}
            for _ in range(n_kv):
                key = buf.string(MAX_GGUF_KEY)
                meta[key] = _value(buf, buf.scalar(4), keep_array)
                if stop_key_suffix and key.endswith(stop_key_suffix):
                    return GGUFHeader(version, meta, [], None, size)
            tensors = []
            for _ in range(n_tensors):
                name = buf.string(MAX_GGUF_KEY)
                n_dims = buf.scalar(4)
                if n_dims > 8:
                    raise ValueError(f"tensor {clip(name)} has {n_dims} dimensions")
                shape = tuple(buf.scalar(10) for _ in range(n_dims))
                tid = buf.scalar(4)
                offset = buf.scalar(10)
                tensors.append(GGUFTensorInfo(name, shape, GGML_TYPE_NAMES.get(tid, f"TYPE{tid}"), offset))
        except _Truncated:
            raise FormatError(path, f"truncated GGUF (the file ends inside its header, at {size} bytes)") from None
        except OSError as exc:
            raise FormatError(path, f"cannot read ({exc.strerror or exc})") from None
        except (ValueError, struct.error) as exc:
            if isinstance(exc, FormatError):
                raise
            raise FormatError(path, f"damaged GGUF header ({exc})") from None
    align = meta.get("general.alignment", 32)
    align = align if isinstance(align, int) and not isinstance(align, bool) and align > 0 else 32
    data_offset = -(-buf.pos // align) * align
    return GGUFHeader(version, meta, tensors, data_offset, size)
