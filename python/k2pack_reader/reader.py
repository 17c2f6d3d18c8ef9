"""Read k2pack folders (docs/FORMAT.md, version 1) from Python.

`open_pack(path)` opens a converted folder (`.k2p` files: zero-copy `numpy.memmap` views), a compressed archive
folder (`.k2z` files: read-only, decompressed per zstd frame), one rank folder of a shard set, or a shard set's
root (which lists its ranks). Every check the Swift reader makes before it trusts a file is made here too, with
the same conditions, so a file one refuses the other refuses.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from .xxh64 import XXH64

__all__ = [
    "FORMAT_VERSION",
    "K2PackError",
    "NotPackError",
    "UnsupportedVersionError",
    "HeaderError",
    "TableChecksumError",
    "TableError",
    "TensorError",
    "ChecksumMismatchError",
    "ShardSetError",
    "Slice",
    "Source",
    "Frame",
    "CarriedFile",
    "TensorInfo",
    "PackFile",
    "PackFolder",
    "ShardSet",
    "open_pack",
    "bf16_to_float32",
    "numpy_dtype",
    "zstd_backend",
]

FORMAT_VERSION = 1
MAGIC = b"K2PACK\x00\x00"
ARCHIVE_MAGIC = b"K2PACKZ\x00"
HEADER_SIZE = 64
# Header flags (offset 12): 0x1 some source is a block of its source tensor (`slice`), 0x2 the archive form.
# Unknown bits are refused; files written before the flags existed have 0 and are still read.
FLAG_SLICED = 0x1
FLAG_ARCHIVE = 0x2
KNOWN_FLAGS = FLAG_SLICED | FLAG_ARCHIVE
MAX_TABLE_LENGTH = 256 << 20
MAX_FRAME_SIZE = 64 << 20
MANIFEST = "k2pack.json"
SET_MANIFEST = "shards.json"
# Folder records (k2pack.json, shards.json): version 2 adds the `carried` list; .k2p/.k2z files stay version 1.
RECORD_VERSIONS = (1, 2)
# Names a record may not give a data file, a source shard or a carried file's first component.
RESERVED_NAMES = [MANIFEST, SET_MANIFEST, "config.json", "model.safetensors.index.json", "source"]
INT_MAX = (1 << 63) - 1  # the Swift reader's Int: sums past it are refused as overflow

# safetensors dtype spelling -> (bits per element, numpy dtype of the stored words). BF16 has no numpy type and
# is returned as its uint16 bit patterns (see bf16_to_float32); the 8-bit floats as uint8; F4/F6 are sub-byte
# and come back as their raw bytes (uint8, one dimension).
_DTYPES: Dict[str, Tuple[int, Optional[str]]] = {
    "F4": (4, None),
    "F6_E2M3": (6, None),
    "F6_E3M2": (6, None),
    "BOOL": (8, "?"),
    "U8": (8, "u1"),
    "I8": (8, "i1"),
    "F8_E5M2": (8, "u1"),
    "F8_E4M3": (8, "u1"),
    "F8_E8M0": (8, "u1"),
    "I16": (16, "<i2"),
    "U16": (16, "<u2"),
    "F16": (16, "<f2"),
    "BF16": (16, "<u2"),
    "I32": (32, "<i4"),
    "U32": (32, "<u4"),
    "F32": (32, "<f4"),
    "F64": (64, "<f8"),
    "I64": (64, "<i8"),
    "U64": (64, "<u8"),
    "C64": (64, "<c8"),
}


# ---- errors -------------------------------------------------------------------------------------------------


class K2PackError(Exception):
    """Bad or unsupported input. `file` names the file; `field` the header/table/manifest field, when one."""

    def __init__(self, message: str, file: str = "", field: Optional[str] = None) -> None:
        super().__init__(message)
        self.file = file
        self.field = field


class NotPackError(K2PackError):
    def __init__(self, file: str, reason: str, field: Optional[str] = None) -> None:
        super().__init__(f"{file}: not a k2pack file: {reason}", file, field)


class UnsupportedVersionError(K2PackError):
    def __init__(self, file: str, version: Any, field: str = "version", what: str = "k2pack format",
                 reads: str = f"version {FORMAT_VERSION}") -> None:
        super().__init__(f"{file}: {what} version {version} is not supported (this reader reads {reads})", file, field)
        self.version = version


class HeaderError(K2PackError):
    def __init__(self, file: str, reason: str, field: Optional[str] = None) -> None:
        super().__init__(f"{file}: invalid header: {reason}", file, field)


class TableChecksumError(K2PackError):
    def __init__(self, file: str, expected: str, actual: str) -> None:
        super().__init__(f"{file}: tensor table is corrupt: xxHash64 {actual}, header records {expected}", file, "table xxh64")


class TableError(K2PackError):
    def __init__(self, file: str, reason: str, field: Optional[str] = None) -> None:
        super().__init__(f"{file}: invalid tensor table: {reason}", file, field)


class TensorError(K2PackError):
    def __init__(self, file: str, tensor: str, reason: str, field: Optional[str] = None) -> None:
        super().__init__(f"{file}: tensor '{tensor}': {reason}", file, field)
        self.tensor = tensor


class ChecksumMismatchError(TensorError):
    def __init__(self, file: str, tensor: str, expected: str, actual: str) -> None:
        K2PackError.__init__(
            self, f"{file}: tensor '{tensor}': data is corrupt: xxHash64 {actual}, table records {expected}", file, "xxh64"
        )
        self.tensor = tensor
        self.expected = expected
        self.actual = actual


class ShardSetError(K2PackError):
    pass


# ---- table records ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Slice:
    """Block `[start, end)` along `dimension` of a source tensor: `runs` runs `stride` bytes apart in the source."""

    dimension: int
    start: int
    end: int
    runs: int
    stride: int


@dataclass(frozen=True)
class Source:
    """Where stored bytes came from: source tensor `name` at byte `offset` of shard file `shard`."""

    name: str
    shard: str
    offset: int
    length: int
    slice: Optional[Slice] = None


@dataclass(frozen=True)
class Frame:
    """Archive form: one independent zstd frame (`offset`, `length` in the file) decompressing to `size` bytes."""

    offset: int
    length: int
    size: int


@dataclass(frozen=True)
class CarriedFile:
    """A file the folder holds besides tensors (tokenizer, chat template, remote code, …), byte for byte."""

    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str
    shape: Tuple[int, ...]
    offset: int
    length: int
    xxh64: str
    sources: Tuple[Source, ...]
    frames: Optional[Tuple[Frame, ...]]
    file: str

    @property
    def is_stack(self) -> bool:
        """An expert-major stack: its own name, one source per entry of its first dimension, equal lengths."""
        if not self.sources or (len(self.sources) == 1 and self.sources[0].name == self.name):
            return False
        return bool(self.shape) and self.shape[0] == len(self.sources) and all(
            s.length * len(self.sources) == self.length for s in self.sources
        )


def numpy_dtype(dtype: str) -> Optional[np.dtype]:
    """The numpy dtype a stored tensor is returned as (None for the sub-byte F4/F6 types: raw bytes)."""
    entry = _DTYPES.get(dtype)
    if entry is None:
        raise ValueError(f"unknown dtype {dtype!r}")
    return None if entry[1] is None else np.dtype(entry[1])


def bf16_to_float32(words: np.ndarray) -> np.ndarray:
    """Widen BF16 bit patterns (uint16, as the reader returns BF16) to float32, exactly."""
    words = np.asarray(words)
    if words.dtype != np.uint16:
        raise TypeError(f"expected the uint16 bit patterns of BF16 values, got {words.dtype}")
    return (words.astype(np.uint32) << 16).view(np.float32)


def _byte_count(shape: Sequence[int], dtype: str) -> Optional[int]:
    """Bytes of a tensor, or None when a dimension is negative, the count overflows or bits are not whole bytes."""
    total = 1
    for dim in shape:
        if dim < 0:
            return None
        total *= dim
        if total > INT_MAX:
            return None
    bits = total * _DTYPES[dtype][0]
    if bits > INT_MAX or bits % 8:
        return None
    return bits // 8


# ---- strict JSON decoding (what Swift's Codable accepts) -----------------------------------------------------


def _flags_text(flags: int) -> str:
    names = [name for bit, name in ((FLAG_SLICED, "sliced sources"), (FLAG_ARCHIVE, "archive")) if flags & bit]
    return f"0x{flags:x}" + (f" ({', '.join(names)})" if names else "")


def _no_duplicates(pairs: List[Tuple[str, Any]]) -> Dict[str, Any]:
    doc: Dict[str, Any] = {}
    for key, value in pairs:
        if key in doc:
            raise ValueError(f"duplicate key '{key}'")
        doc[key] = value
    return doc


def _strict_loads(raw: bytes) -> Any:
    """A table or record as the Swift reader's strict scanner reads it: a duplicate key is refused."""
    return json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)


def _only(obj: Any, keys: Tuple[str, ...], where: str) -> Any:
    """Keys a table or record does not define are refused (the Swift reader's `StrictJSON`); returns `obj`."""
    if isinstance(obj, dict):
        for key in obj:
            if key not in keys:
                raise ValueError(f"{where} has an unknown key '{key}'")
    return obj


def _require(obj: Any, key: str, kind: type, where: str, optional: bool = False) -> Any:
    if not isinstance(obj, dict):
        raise ValueError(f"{where} is not an object")
    if key not in obj:
        if optional:
            return None
        raise ValueError(f"{where} has no '{key}'")
    if obj[key] is None:
        raise ValueError(f"{where}: '{key}' is null" + (" (an absent optional key is omitted)" if optional else ""))
    value = obj[key]
    if kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool) and -(1 << 63) <= value <= INT_MAX
    elif kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    else:
        ok = isinstance(value, kind)
    if not ok:
        raise ValueError(f"{where}: '{key}' is not {kind.__name__ if kind is not list else 'an array'}")
    return value


def _int_list(value: Any, key: str, where: str) -> List[int]:
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise ValueError(f"{where}: '{key}' is not an array of integers")
    if any(not -(1 << 63) <= v <= INT_MAX for v in value):
        raise ValueError(f"{where}: '{key}' holds a number outside 64 bits")
    return value


def _decode_table(raw: bytes, file: str) -> Tuple[List[TensorInfo], Optional[str], Dict[str, Any]]:
    try:
        doc = _strict_loads(raw)
        _only(doc, ("format", "version", "alignment", "compression", "tensors"), "table")
        repeated = {key: _require(doc, key, kind, "table") for key, kind in (("format", str), ("version", int), ("alignment", int))}
        compression = _require(doc, "compression", str, "table", optional=True)
        tensors = []
        for i, t in enumerate(_require(doc, "tensors", list, "table")):
            where = f"tensors[{i}]"
            _only(t, ("name", "dtype", "shape", "offset", "length", "xxh64", "sources", "frames"), where)
            name = _require(t, "name", str, where)
            dtype = _require(t, "dtype", str, where)
            if dtype not in _DTYPES:
                raise ValueError(f"{where}: dtype '{dtype}' is not a safetensors dtype")
            shape = _int_list(_require(t, "shape", list, where), "shape", where)
            sources = []
            for j, s in enumerate(_require(t, "sources", list, where)):
                sw = f"{where}.sources[{j}]"
                _only(s, ("name", "shard", "offset", "length", "slice"), sw)
                sl = _require(s, "slice", dict, sw, optional=True)
                if sl is not None:
                    slw = sw + ".slice"
                    _only(sl, ("dimension", "start", "end", "runs", "stride"), slw)
                    sl = Slice(*(_require(sl, k, int, slw) for k in ("dimension", "start", "end", "runs", "stride")))
                sources.append(
                    Source(
                        _require(s, "name", str, sw),
                        _require(s, "shard", str, sw),
                        _require(s, "offset", int, sw),
                        _require(s, "length", int, sw),
                        sl,
                    )
                )
            frames = _require(t, "frames", list, where, optional=True)
            if frames is not None:
                frames = tuple(
                    Frame(*(_require(_only(f, ("offset", "length", "size"), f"{where}.frames[{j}]"), k, int,
                                      f"{where}.frames[{j}]") for k in ("offset", "length", "size")))
                    for j, f in enumerate(frames)
                )
            tensors.append(
                TensorInfo(
                    name,
                    dtype,
                    tuple(shape),
                    _require(t, "offset", int, where),
                    _require(t, "length", int, where),
                    _require(t, "xxh64", str, where),
                    tuple(sources),
                    frames,
                    file,
                )
            )
        return tensors, compression, repeated
    except (ValueError, UnicodeDecodeError) as error:  # json.JSONDecodeError is a ValueError
        raise TableError(file, str(error)) from None


def _sources_length(t: TensorInfo) -> Optional[int]:
    total = 0
    for s in t.sources:
        if s.length < 0:
            return None
        total += s.length
        if total > INT_MAX:
            return None
    return total


def _shape_text(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


# ---- zstd ---------------------------------------------------------------------------------------------------

try:  # optional: the archive form needs it
    import zstandard as _zstandard
except ImportError:  # pragma: no cover - depends on the environment
    _zstandard = None




def _load_libzstd():
    import ctypes
    import ctypes.util

    for name in ("libzstd.so.1", ctypes.util.find_library("zstd")):
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name)
            lib.ZSTD_decompress.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t]
            lib.ZSTD_decompress.restype = ctypes.c_size_t
            lib.ZSTD_isError.argtypes = [ctypes.c_size_t]
            lib.ZSTD_isError.restype = ctypes.c_uint
            lib.ZSTD_getErrorName.argtypes = [ctypes.c_size_t]
            lib.ZSTD_getErrorName.restype = ctypes.c_char_p
            return lib
        except (OSError, AttributeError):
            continue
    return None


_libzstd = None if _zstandard is not None else _load_libzstd()


def zstd_backend() -> Optional[str]:
    """How `.k2z` frames are decompressed: "zstandard" (the package), "libzstd" (the system library through
    ctypes), or None (archives cannot be read here)."""
    if _zstandard is not None:
        return "zstandard"
    return "libzstd" if _libzstd is not None else None


def _decompress_frame(compressed: bytes, size: int) -> bytes:
    """One frame, decoded into at most `size` bytes (a frame claiming more is an error, never a large buffer)."""
    if _zstandard is not None:
        return _zstandard.ZstdDecompressor().decompress(compressed, max_output_size=size)
    if _libzstd is not None:
        out = np.empty(max(size, 1), dtype=np.uint8)
        source = np.frombuffer(compressed, dtype=np.uint8)
        result = _libzstd.ZSTD_decompress(out.ctypes.data, size, source.ctypes.data, len(compressed))
        if _libzstd.ZSTD_isError(result):
            raise ValueError(_libzstd.ZSTD_getErrorName(result).decode("utf-8", "replace"))
        return out[:result].tobytes()
    raise K2PackError(
        "reading a .k2z archive needs the zstandard package (pip install zstandard) or libzstd; "
        "or read the uncompressed folder"
    )


# ---- one file -----------------------------------------------------------------------------------------------


class PackFile:
    """One `.k2p` or `.k2z` file: header and table checked on open; `.k2p` data memory-mapped read-only."""

    def __init__(self, path: str, name: Optional[str] = None) -> None:
        self.path = path
        self.name = name or os.path.basename(path)
        file = self.path
        try:
            self._fd = os.open(path, os.O_RDONLY)
        except OSError as error:
            raise K2PackError(f"{path}: cannot open: {error.strerror}", path) from None
        try:
            self._open(file)
        except BaseException:
            os.close(self._fd)
            self._fd = -1
            raise

    def _pread(self, count: int, at: int) -> bytes:
        data = os.pread(self._fd, count, at)
        if len(data) != count:
            raise K2PackError(f"{self.path}: cannot read: {count} bytes at {at}: the file ended", self.path)
        return data

    def _open(self, file: str) -> None:
        size = os.fstat(self._fd).st_size
        self.byte_count = size
        if size < HEADER_SIZE:
            raise NotPackError(file, f"{size} bytes is shorter than the {HEADER_SIZE}-byte header")
        header = self._pread(HEADER_SIZE, 0)
        magic = header[0:8]
        self.is_archive = magic == ARCHIVE_MAGIC
        if magic != MAGIC and not self.is_archive:
            raise NotPackError(file, "wrong magic bytes", "magic")
        version = int.from_bytes(header[8:12], "little")
        if version != FORMAT_VERSION:
            raise UnsupportedVersionError(file, version)
        flags = int.from_bytes(header[12:16], "little")
        if flags & ~KNOWN_FLAGS:
            raise HeaderError(
                file,
                f"flags 0x{flags:x} are not defined in version {FORMAT_VERSION} (this build knows "
                f"{_flags_text(KNOWN_FLAGS)}): written by a newer or different tool",
                "flags",
            )
        # An archive written before the flag existed has flags 0: its magic says the same thing unambiguously.
        if flags & FLAG_ARCHIVE and not self.is_archive:
            raise HeaderError(file, f"flags {_flags_text(flags)} mark an archive, but the magic is K2PACK, not K2PACKZ", "flags")
        u64 = lambda at: int.from_bytes(header[at:at + 8], "little")  # noqa: E731
        alignment, table_offset, table_length = u64(16), u64(24), u64(32)
        data_offset, file_length, table_hash = u64(40), u64(48), u64(56)
        if not (64 <= alignment <= 1 << 30 and alignment & (alignment - 1) == 0):
            raise HeaderError(file, f"alignment {alignment} is not a power of two between 64 and 2^30", "alignment")
        if file_length != size:
            raise HeaderError(
                file, f"header records {file_length} bytes but the file has {size} (truncated or extended)", "file length"
            )
        if self.is_archive:
            fits = (
                data_offset == HEADER_SIZE
                and table_offset >= data_offset
                and table_length <= file_length
                and table_offset == file_length - table_length
            )
        else:
            fits = (
                table_offset >= HEADER_SIZE
                and table_length <= MAX_TABLE_LENGTH
                and table_offset <= data_offset
                and table_length <= data_offset - table_offset
                and data_offset <= file_length
            )
        if table_length > MAX_TABLE_LENGTH or not fits:
            raise HeaderError(
                file,
                f"table [{table_offset}, +{table_length}) and data offset {data_offset} do not fit a {file_length}-byte file",
                "table offset",
            )
        raw = self._pread(table_length, table_offset)
        hasher = XXH64()
        hasher.update(raw)
        actual = hasher.intdigest()
        if actual != table_hash:
            raise TableChecksumError(file, format(table_hash, "016x"), format(actual, "016x"))
        tensors, compression, repeated = _decode_table(raw, file)
        # The table repeats the format, version and alignment: all must agree with the header.
        if repeated["format"] != "k2pack":
            raise TableError(file, f'format "{repeated["format"]}", expected "k2pack"', "format")
        if repeated["version"] != FORMAT_VERSION:
            raise TableError(file, f"version {repeated['version']}, expected {FORMAT_VERSION} (the header's)", "version")
        if repeated["alignment"] != alignment:
            raise TableError(file, f"alignment {repeated['alignment']}, but the header says {alignment}", "alignment")
        if (compression == "zstd") != self.is_archive or (compression is not None and not self.is_archive):
            raise TableError(
                file,
                'an archive\'s table must say compression "zstd"'
                if self.is_archive
                else f'compression "{compression}" in an uncompressed file',
                "compression",
            )
        if flags & FLAG_SLICED and not any(src.slice is not None for t in tensors for src in t.sources):
            raise TableError(
                file, f"the header's flags {_flags_text(flags)} mark sliced sources, but no source has a slice", "flags"
            )
        seen = set()
        for t in tensors:
            if t.name in seen:
                raise TableError(file, f"tensor '{t.name}' is listed twice")
            seen.add(t.name)
        if self.is_archive:
            self._validate_frames(tensors, file, table_offset)
            self._source_frames = [self._frame_ranges(t, file) for t in tensors]
            self._map = None
        else:
            end = data_offset
            for t in sorted(tensors, key=lambda t: t.offset):
                if _byte_count(t.shape, t.dtype) != t.length:
                    raise TensorError(
                        file, t.name, f"length {t.length} does not match shape {_shape_text(t.shape)} {t.dtype}", "length"
                    )
                stop = t.offset + t.length
                if not (t.offset % alignment == 0 and t.offset >= end and stop <= INT_MAX and stop <= size):
                    raise TensorError(
                        file,
                        t.name,
                        f"data [{t.offset}, +{t.length}) is misaligned, overlaps the previous tensor or runs past the file",
                        "offset",
                    )
                if _sources_length(t) != t.length:
                    raise TensorError(file, t.name, "its source slices do not add up to its length", "sources")
                if t.frames is not None:
                    raise TensorError(file, t.name, "frames in an uncompressed file", "frames")
                end = stop
            self._source_frames = []
            self._map = np.memmap(self.path, dtype=np.uint8, mode="r")
        self.alignment = alignment
        self.tensors: Dict[str, TensorInfo] = {t.name: t for t in tensors}
        self._order = [t.name for t in tensors]
        self._position = {t.name: i for i, t in enumerate(tensors)}

    @staticmethod
    def _validate_frames(tensors: List[TensorInfo], file: str, data_end: int) -> None:
        end = HEADER_SIZE
        for t in tensors:
            if _byte_count(t.shape, t.dtype) != t.length:
                raise TensorError(
                    file, t.name, f"length {t.length} does not match shape {_shape_text(t.shape)} {t.dtype}", "length"
                )
            if _sources_length(t) != t.length:
                raise TensorError(file, t.name, "its source slices do not add up to its length", "sources")
            total = 0
            for i, f in enumerate(t.frames or ()):
                stop = f.offset + f.length
                if not (
                    0 < f.size <= MAX_FRAME_SIZE
                    and 0 < f.length <= f.size + f.size // 64 + 4096
                    and f.offset >= end
                    and stop <= INT_MAX
                    and stop <= data_end
                ):
                    raise TensorError(
                        file,
                        t.name,
                        f"frame {i} [{f.offset}, +{f.length}) → {f.size} bytes is out of order, overlaps, runs past the "
                        "data or is implausibly sized",
                        "frames",
                    )
                end = stop
                total += f.size
            if total != t.length:
                raise TensorError(file, t.name, f"its frames hold {total} bytes, its shape needs {t.length}", "frames")

    @staticmethod
    def _frame_ranges(t: TensorInfo, file: str) -> List[range]:
        if t.frames is None:
            raise TensorError(file, t.name, "an archive tensor needs its frames", "frames")
        ranges = []
        f = 0
        for s in t.sources:
            first = f
            covered = 0
            while covered < s.length and f < len(t.frames):
                covered += t.frames[f].size
                f += 1
            if covered != s.length:
                raise TensorError(file, t.name, f"its frames do not end where source '{s.name}' ends", "frames")
            ranges.append(range(first, f))
        if f != len(t.frames):
            raise TensorError(file, t.name, f"it has {len(t.frames) - f} frame(s) beyond its sources", "frames")
        return ranges

    # -- access --

    def names(self) -> List[str]:
        return list(self._order)

    def _info(self, name: str) -> TensorInfo:
        try:
            return self.tensors[name]
        except KeyError:
            raise KeyError(f"{self.path}: no tensor '{name}'") from None

    def stored_bytes(self, name: str, start: int = 0, stop: Optional[int] = None, copy: bool = False) -> np.ndarray:
        """Bytes `[start, stop)` of a stored tensor as uint8. `.k2p`: a view of the file's read-only mapping (the
        kernel is asked to read the range ahead, `POSIX_FADV_WILLNEED`), or with `copy=True` a new writable
        array filled by `pread` (large sequential reads, no page faults on the file). `.k2z`: decompressed, only
        the frames that hold them (always a new array). In an archive, `start` and `stop` must be source
        boundaries."""
        t = self._info(name)
        stop = t.length if stop is None else stop
        if not 0 <= start <= stop <= t.length:
            raise IndexError(f"{self.path}: tensor '{name}': bytes [{start}, {stop}) outside its {t.length}")
        if not self.is_archive:
            if copy:
                return self._read(t.offset + start, stop - start)
            if stop > start and hasattr(os, "posix_fadvise"):
                os.posix_fadvise(self._fd, t.offset + start, stop - start, os.POSIX_FADV_WILLNEED)
            return self._map[t.offset + start:t.offset + stop]
        # Archive: the sources covering [start, stop) (frames never span two sources).
        position = self._position[name]
        at = 0
        pieces: List[bytes] = []
        for s, frames in zip(t.sources, self._source_frames[position]):
            if at >= stop:
                break
            if at >= start:
                if at + s.length > stop:
                    raise IndexError(f"{self.path}: tensor '{name}': byte {stop} is not a source boundary")
                for f in frames:
                    pieces.append(self._frame(t, f))
            elif at + s.length > start:
                raise IndexError(f"{self.path}: tensor '{name}': byte {start} is not a source boundary")
            at += s.length
        out = np.empty(stop - start, dtype=np.uint8)
        at = 0
        for piece in pieces:
            out[at:at + len(piece)] = np.frombuffer(piece, dtype=np.uint8)
            at += len(piece)
        return out

    def _read(self, offset: int, count: int) -> np.ndarray:
        """`count` bytes at `offset` into a new array, by `preadv` straight into it (no intermediate copy)."""
        out = np.empty(count, dtype=np.uint8)
        view = memoryview(out)
        done = 0
        while done < count:
            got = os.preadv(self._fd, [view[done:]], offset + done)
            if got <= 0:
                raise K2PackError(f"{self.path}: cannot read: {count} bytes at {offset}: the file ended", self.path)
            done += got
        return out

    def _frame(self, t: TensorInfo, index: int) -> bytes:
        frame = t.frames[index]
        compressed = self._pread(frame.length, frame.offset)
        try:
            content = _decompress_frame(compressed, frame.size)
        except K2PackError:
            raise
        except Exception as error:  # zstandard.ZstdError and friends
            raise TensorError(self.path, t.name, f"frame {index}: {error}", "frames") from None
        if len(content) != frame.size:
            raise TensorError(
                self.path, t.name, f"frame {index} holds {len(content)} bytes, the table says {frame.size}", "frames"
            )
        return content

    def checksum(self, name: str) -> str:
        """The tensor's xxHash64 recomputed from its bytes (16 hex digits), in pieces of at most 64 MiB."""
        t = self._info(name)
        hasher = XXH64()
        if self.is_archive:
            for f in range(len(t.frames or ())):
                hasher.update(self._frame(t, f))
        else:
            step = 64 << 20
            for at in range(0, t.length, step):
                hasher.update(self._map[t.offset + at:t.offset + min(t.length, at + step)])
        return hasher.hexdigest()

    def verify(self, names: Optional[Iterable[str]] = None) -> List[ChecksumMismatchError]:
        """Recomputes the checksums of `names` (default: all); returns the mismatches."""
        errors = []
        for name in self._order if names is None else names:
            t = self._info(name)
            actual = self.checksum(name)
            if actual != t.xxh64:
                errors.append(ChecksumMismatchError(self.path, name, t.xxh64, actual))
        return errors

    def close(self) -> None:
        """Closes the file descriptor. Arrays already returned keep their own mapping alive."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._map = None

    def __del__(self) -> None:
        if getattr(self, "_fd", -1) >= 0:
            os.close(self._fd)
            self._fd = -1


# ---- views and torch ----------------------------------------------------------------------------------------


def _typed(raw: np.ndarray, dtype: str, shape: Sequence[int]) -> np.ndarray:
    np_dtype = numpy_dtype(dtype)
    if np_dtype is None:
        return raw  # sub-byte types: the packed bytes as stored
    return raw.view(np_dtype).reshape(tuple(shape))


def _to_framework(array: np.ndarray, dtype: str, framework: str):
    if framework in ("np", "numpy"):
        return array
    if framework not in ("pt", "torch"):
        raise ValueError(f"framework {framework!r}: use 'np' or 'pt'")
    import torch  # optional dependency

    if dtype == "BF16":
        array = array.view(np.int16)  # same bits; torch reads int16 everywhere (uint16 only from 2.3 on)
    with warnings.catch_warnings():
        # A read-only mapping: torch warns that writing would be undefined; the tensor shares the mapping.
        warnings.simplefilter("ignore", UserWarning)
        tensor = torch.from_numpy(array)
    if dtype == "BF16":
        tensor = tensor.view(torch.bfloat16)
    return tensor


def _plain(name: str) -> bool:
    return name not in ("", ".", "..") and "/" not in name and "\\" not in name and "\x00" not in name


def _carried_version_problem(version: int, carried: Optional[list]) -> Optional[str]:
    """A record of version 1 lists no carried files; one of version 2 lists at least one."""
    if version == 1:
        return None if carried is None else "version 1 records no carried files, but this record lists some"
    if carried is None:
        return f"version {version} records carried files, but this record has no carried list"
    if not carried:
        return f"version {version} records carried files, but this record's carried list is empty"
    return None


def _carried_problem(paths: Sequence[str], reserved: Sequence[str]) -> Optional[str]:
    seen = set()
    for path in paths:
        parts = path.split("/")
        if not all(_plain(p) for p in parts):
            return f'carried file "{path}" is not a plain relative path inside the folder'
        if parts[0] in reserved:
            return f'carried file "{path}" takes the name "{parts[0]}", which the folder uses for its own records'
        if path in seen:
            return f'carried file "{path}" is listed twice'
        seen.add(path)
    for path in paths:
        parent = path.rpartition("/")[0]
        while parent:
            if parent in seen:
                return f'carried file "{parent}" is also a folder holding "{path}"'
            parent = parent.rpartition("/")[0]
    return None


def _names_problem(files: Sequence[str], source_shards: Sequence[str], carried: Sequence[str],
                   also_reserved: Sequence[str] = ()) -> Optional[str]:
    """The Swift reader's rule for a record's names (str equality is code-point equality: compared as bytes)."""
    for names, what in ((files, "data file"), (source_shards, "source shard")):
        seen = set()
        for name in names:
            if not _plain(name):
                return f'{what} name "{name}" is not a plain name inside the folder'
            if name in RESERVED_NAMES:
                return f'{what} name "{name}" is reserved for the folder\'s own records'
            if name in seen:
                return f'{what} "{name}" is listed twice'
            seen.add(name)
    return _carried_problem(carried, RESERVED_NAMES + list(files) + list(source_shards) + list(also_reserved))


def _decode_carried(doc: dict, where: str) -> Optional[List[CarriedFile]]:
    carried = _require(doc, "carried", list, where, optional=True)
    if carried is None:
        return None
    return [
        CarriedFile(_require(_only(c, ("path", "size", "sha256"), f"{where} carried[{i}]"), "path", str, f"{where} carried[{i}]"), _require(c, "size", int, f"{where} carried[{i}]"),
                    _require(c, "sha256", str, f"{where} carried[{i}]"))
        for i, c in enumerate(carried)
    ]


# ---- a folder -----------------------------------------------------------------------------------------------


class PackFolder:
    """A k2pack folder (converted, archived, or one rank of a shard set).

    Tensors keep the names in the tables: routed experts are expert-major stacks named with `*` in place of the
    expert number; `source(name)` finds a checkpoint tensor (one expert of a stack, or a rank's block) by its
    own name.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        manifest_path = os.path.join(path, MANIFEST)
        try:
            with open(manifest_path, "rb") as handle:
                raw = handle.read()
        except FileNotFoundError:
            raise NotPackError(
                manifest_path, f"no {MANIFEST}: not a k2pack folder, or its conversion did not finish"
            ) from None
        try:
            doc = _strict_loads(raw)
            _only(doc, ("format", "version", "architecture", "files", "source_shards", "source_index", "shard", "carried"), MANIFEST)
            fmt = _require(doc, "format", str, MANIFEST)
            version = _require(doc, "version", int, MANIFEST)
            self.architecture = _require(doc, "architecture", str, MANIFEST)
            files = _require(doc, "files", list, MANIFEST)
            self.source_shards = _require(doc, "source_shards", list, MANIFEST)
            self.source_index = _require(doc, "source_index", bool, MANIFEST)
            shard = _require(doc, "shard", dict, MANIFEST, optional=True)
            if shard is not None:
                _only(shard, ("tp", "ep", "rank", "tp_rank", "ep_rank", "experts", "vision"), MANIFEST + " shard")
                for key in ("tp", "ep", "rank", "tp_rank", "ep_rank"):
                    _require(shard, key, int, MANIFEST + " shard")
                _int_list(_require(shard, "experts", list, MANIFEST + " shard"), "experts", MANIFEST + " shard")
                _require(shard, "vision", bool, MANIFEST + " shard")
            for name in files + self.source_shards:
                if not isinstance(name, str):
                    raise ValueError(f"{MANIFEST}: a file name is not a string")
            carried = _decode_carried(doc, MANIFEST)
        except (ValueError, UnicodeDecodeError) as error:
            raise NotPackError(manifest_path, f"not a valid folder record ({error})") from None
        if fmt != "k2pack":
            raise UnsupportedVersionError(manifest_path, version, "format", what=f"format '{fmt}'", reads="k2pack")
        if version not in RECORD_VERSIONS:
            raise UnsupportedVersionError(manifest_path, version, what="folder record", reads="versions 1 to 2")
        problem = _carried_version_problem(version, carried) or _names_problem(
            files, self.source_shards, [c.path for c in carried or []])
        if problem:
            raise NotPackError(manifest_path, problem, "carried" if "carried" in problem else "files")
        self.record_version = version
        self.carried: List[CarriedFile] = carried or []
        self.shard: Optional[Dict[str, Any]] = shard
        if shard is not None:
            experts = shard["experts"]
            if len(experts) != 2 or not 0 <= experts[0] <= experts[1]:
                raise NotPackError(manifest_path, f"experts {experts} is not a range [first, end)", "shard.experts")
        self.files: List[PackFile] = []
        root = os.path.realpath(path)
        try:
            for name in files:
                target = os.path.realpath(os.path.join(path, name))
                if os.path.commonpath([root, target]) != root:  # as the Swift reader: never read outside the folder
                    raise NotPackError(os.path.join(path, name), f"{name} is a symlink to {target}, outside the folder")
                self.files.append(PackFile(os.path.join(path, name), name))
        except BaseException:
            self.close()
            raise
        self.is_archive = any(f.is_archive for f in self.files)
        self._where: Dict[str, PackFile] = {}
        self._sources: Dict[str, Tuple[PackFile, TensorInfo, int]] = {}
        for f in self.files:
            for name in f.names():
                if name in self._where:
                    raise TableError(f.path, f"tensor '{name}' is also stored in {self._where[name].name}")
                self._where[name] = f
                t = f.tensors[name]
                for i, s in enumerate(t.sources):
                    self._sources.setdefault(s.name, (f, t, i))

    # -- listing --

    @property
    def expert_range(self) -> Tuple[int, Optional[int]]:
        """The routed experts this folder's stacks hold, `(first, end)`; `end` None for a whole checkpoint."""
        if self.shard is not None:
            first, end = self.shard["experts"]
            return first, end
        return 0, None

    def names(self) -> List[str]:
        """Stored tensor names, file by file in table order."""
        return [n for f in self.files for n in f.names()]

    def __contains__(self, name: str) -> bool:
        return name in self._where

    def __len__(self) -> int:
        return len(self._where)

    def info(self, name: str) -> TensorInfo:
        """Name, dtype, shape, file, offset, length, checksum, sources (with slices) and frames of a tensor."""
        return self._file(name).tensors[name]

    def tensors(self) -> List[TensorInfo]:
        return [f.tensors[n] for f in self.files for n in f.names()]

    def _file(self, name: str) -> PackFile:
        try:
            return self._where[name]
        except KeyError:
            raise KeyError(f"{self.path}: no tensor '{name}'") from None

    # -- data --

    def get(self, name: str, framework: str = "np", verify: bool = False, copy: bool = False):
        """A stored tensor. `.k2p`: a read-only view of the file's mapping (no copy; pages are read when
        touched), or with `copy=True` a new writable array read with `pread` (the fastest way into memory).
        `.k2z`: decompressed into a new array. BF16 comes back as uint16 bit patterns (numpy) or torch.bfloat16
        (framework="pt"); F8 as uint8; INT4-packed weights as the int32 words they are stored as.
        `verify=True` checks the tensor's xxHash64 (raises ChecksumMismatchError): of the very bytes returned
        when they are a copy, else of the file before the view is handed out."""
        f = self._file(name)
        t = f.tensors[name]
        if verify and (copy or f.is_archive):
            raw = f.stored_bytes(name, copy=True)
            hasher = XXH64()
            hasher.update(raw)
            if hasher.hexdigest() != t.xxh64:
                raise ChecksumMismatchError(f.path, name, t.xxh64, hasher.hexdigest())
        else:
            if verify:
                self._verify_one(f, name)
            raw = f.stored_bytes(name, copy=copy)
        return _to_framework(_typed(raw, t.dtype, t.shape), t.dtype, framework)

    def experts(self, name: str, start: int, stop: int, framework: str = "np", copy: bool = False):
        """Experts `start..<stop` (the checkpoint's expert numbers) of an expert-major stack, as one slice of
        shape `[stop - start, ...]` (one contiguous byte range of a `.k2p` file: a view, no copy; `copy=True`
        reads it into a new array)."""
        f = self._file(name)
        t = f.tensors[name]
        if not t.is_stack:
            raise TensorError(f.path, name, "is not an expert-major stack")
        first, _ = self.expert_range
        count = t.shape[0]
        if not (first <= start <= stop <= first + count):
            raise IndexError(
                f"{f.path}: tensor '{name}': experts [{start}, {stop}) are not within the stack's [{first}, {first + count})"
            )
        per = t.length // count
        raw = f.stored_bytes(name, (start - first) * per, (stop - first) * per, copy=copy)
        return _to_framework(_typed(raw, t.dtype, (stop - start,) + tuple(t.shape[1:])), t.dtype, framework)

    def expert(self, name: str, expert: int, framework: str = "np", copy: bool = False):
        """One expert of an expert-major stack (the checkpoint's expert number), shape `shape[1:]`."""
        stack = self.experts(name, expert, expert + 1, framework, copy)
        return stack[0]

    def source(self, name: str, framework: str = "np", copy: bool = False):
        """A checkpoint tensor by its own (source) name: a tensor stored as itself, one expert of a stack, or a
        rank's block of a split tensor (its slice: `source_info(name)`), in its stored shape."""
        f, t, i = self._source_entry(name)
        if t.is_stack:
            per = t.length // len(t.sources)
            shape = tuple(t.shape[1:])
            raw = f.stored_bytes(t.name, i * per, (i + 1) * per, copy=copy)
        else:
            shape = t.shape
            raw = f.stored_bytes(t.name, copy=copy)
        return _to_framework(_typed(raw, t.dtype, shape), t.dtype, framework)

    def source_info(self, name: str) -> Source:
        """Where a checkpoint tensor's stored bytes came from (shard, offset, length, and slice for a block)."""
        f, t, i = self._source_entry(name)
        return t.sources[i]

    def source_names(self) -> List[str]:
        return list(self._sources)

    def _source_entry(self, name: str) -> Tuple[PackFile, TensorInfo, int]:
        try:
            f, t, i = self._sources[name]
        except KeyError:
            raise KeyError(f"{self.path}: no source tensor '{name}'") from None
        if not t.is_stack and len(t.sources) != 1:
            raise TensorError(f.path, t.name, f"source '{name}' is one of {len(t.sources)} pieces of a stored tensor")
        return f, t, i

    def _verify_one(self, f: PackFile, name: str) -> None:
        errors = f.verify([name])
        if errors:
            raise errors[0]

    def checksum(self, name: str) -> str:
        return self._file(name).checksum(name)

    def verify(self, names: Optional[Iterable[str]] = None, raise_on_error: bool = True) -> List[ChecksumMismatchError]:
        """Recomputes xxHash64 of `names` (default: every tensor). Raises the first mismatch, or with
        `raise_on_error=False` returns them all (empty: clean)."""
        errors: List[ChecksumMismatchError] = []
        if names is None:
            for f in self.files:
                errors += f.verify()
        else:
            for name in names:
                errors += self._file(name).verify([name])
        if errors and raise_on_error:
            raise errors[0]
        return errors

    def verify_carried(self) -> List[K2PackError]:
        """Each carried file's size and SHA-256 against the record; returns the problems (empty: all match).
        A carried file reached through a link that leads out of the folder is a problem, not read."""
        import hashlib

        problems: List[K2PackError] = []
        root = os.path.realpath(self.path)
        for c in self.carried:
            path = os.path.join(self.path, c.path)
            real = os.path.realpath(path)
            if os.path.commonpath([root, real]) != root:
                problems.append(K2PackError(f"{path}: carried file leads out of the folder (to {real})", path, "carried"))
                continue
            try:
                digest, size = hashlib.sha256(), 0
                with open(real, "rb") as handle:
                    for block in iter(lambda: handle.read(1 << 20), b""):
                        digest.update(block)
                        size += len(block)
            except OSError as error:
                problems.append(K2PackError(f"{path}: carried file cannot be read: {error.strerror}", path, "carried"))
                continue
            if size != c.size or digest.hexdigest() != c.sha256:
                problems.append(K2PackError(
                    f"{path}: carried file changed: {size} bytes, SHA-256 {digest.hexdigest()}; the record says "
                    f"{c.size} bytes, {c.sha256}", path, "carried"))
        return problems

    def close(self) -> None:
        for f in self.files:
            f.close()

    def __enter__(self) -> "PackFolder":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# ---- a shard set --------------------------------------------------------------------------------------------


class ShardSet:
    """The root of a shard set: `shards.json` and `rank-NNNN/` folders. `rank(r)` opens one rank."""

    def __init__(self, path: str) -> None:
        self.path = path
        manifest_path = os.path.join(path, SET_MANIFEST)
        try:
            with open(manifest_path, "rb") as handle:
                raw = handle.read()
        except FileNotFoundError:
            raise ShardSetError(
                f"{manifest_path}: missing: not a shard set, or rank 0 has not finished writing it", manifest_path
            ) from None
        try:
            doc = _strict_loads(raw)
            _only(doc, ("format", "version", "architecture", "layout", "source_shards", "source_index", "carried"), SET_MANIFEST)
            fmt = _require(doc, "format", str, SET_MANIFEST)
            version = _require(doc, "version", int, SET_MANIFEST)
            self.architecture = _require(doc, "architecture", str, SET_MANIFEST)
            layout = _require(doc, "layout", dict, SET_MANIFEST)
            _only(layout, ("tp", "ep", "vision_on_every_rank"), SET_MANIFEST + " layout")
            self.tp = _require(layout, "tp", int, SET_MANIFEST + " layout")
            self.ep = _require(layout, "ep", int, SET_MANIFEST + " layout")
            self.vision_on_every_rank = _require(layout, "vision_on_every_rank", bool, SET_MANIFEST + " layout")
            self.source_shards = _require(doc, "source_shards", list, SET_MANIFEST)
            self.source_index = _require(doc, "source_index", bool, SET_MANIFEST)
            if not all(isinstance(s, str) for s in self.source_shards):
                raise ValueError("source_shards holds a non-string")
            carried = _decode_carried(doc, SET_MANIFEST)
        except (ValueError, UnicodeDecodeError) as error:
            raise ShardSetError(f"{manifest_path}: not a valid shard set record ({error})", manifest_path) from None
        if fmt != "k2pack-shards" or version not in RECORD_VERSIONS:
            raise ShardSetError(
                f"{manifest_path}: format {fmt} version {version} is not supported (this reader reads k2pack-shards 1 and 2)",
                manifest_path,
                "version",
            )
        problem = _carried_version_problem(version, carried)
        if problem:
            raise ShardSetError(f"{manifest_path}: {problem}", manifest_path, "carried")
        if not (1 <= self.tp <= 4096 and 1 <= self.ep <= 4096 and self.tp * self.ep <= 4096):
            raise ShardSetError(f"{manifest_path}: tp {self.tp} × ep {self.ep} is not a plausible layout", manifest_path, "layout")
        problem = _names_problem([], self.source_shards, [c.path for c in carried or []],
                                 [f"rank-{r:04d}" for r in range(self.tp * self.ep)])
        if problem:
            raise ShardSetError(f"{manifest_path}: {problem}", manifest_path, "source_shards")
        self.carried: List[CarriedFile] = carried or []

    @property
    def ranks(self) -> int:
        return self.tp * self.ep

    def rank_path(self, rank: int) -> str:
        return os.path.join(self.path, f"rank-{rank:04d}")

    def rank(self, rank: int) -> PackFolder:
        """Rank `rank`'s folder, checked to describe that rank of this layout."""
        if not 0 <= rank < self.ranks:
            raise IndexError(f"{self.path}: rank {rank} is not in 0..<{self.ranks}")
        path = self.rank_path(rank)
        if not os.path.exists(os.path.join(path, MANIFEST)):
            raise ShardSetError(f"{path}: rank {rank} of {self.ranks} is missing or unfinished (no {MANIFEST})", path)
        folder = PackFolder(path)
        record = folder.shard
        if record is None or record["rank"] != rank or record["tp"] != self.tp or record["ep"] != self.ep:
            folder.close()
            raise ShardSetError(
                f"{path}/{MANIFEST}: does not describe rank {rank} of tp {self.tp} × ep {self.ep}", path, "shard"
            )
        return folder


def open_pack(path: str):
    """A `ShardSet` for a set's root (`shards.json`), else a `PackFolder` (`k2pack.json`)."""
    if os.path.exists(os.path.join(path, SET_MANIFEST)):
        return ShardSet(path)
    if not os.path.exists(os.path.join(path, MANIFEST)):
        raise NotPackError(
            path, f"no {MANIFEST} or {SET_MANIFEST}: not a k2pack folder or shard set, or its writer did not finish"
        )
    return PackFolder(path)
