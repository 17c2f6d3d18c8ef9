"""xxHash64, the per-tensor checksum of the k2pack format (seed 0, 16 lowercase hex digits).

Uses, in order: the `xxhash` package when it is installed; the system's libxxhash (`libxxhash.so.0`, via
ctypes) when present; else a pure-Python implementation written from the algorithm's description (the same
rounds as Sources/PackFormat/XXHash64.swift), where numpy only turns whole 32-byte stripes into integers in
bulk. The last is correct but slow (a few MB/s): install `xxhash` to verify large checkpoints.
"""

from __future__ import annotations

import numpy as np

import ctypes
import ctypes.util

try:  # optional accelerator
    import xxhash as _xxhash
except ImportError:  # pragma: no cover - depends on the environment
    _xxhash = None


def _load_libxxhash():
    for name in ("libxxhash.so.0", ctypes.util.find_library("xxhash")):
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name)
            lib.XXH64_createState.restype = ctypes.c_void_p
            lib.XXH64_freeState.argtypes = [ctypes.c_void_p]
            lib.XXH64_reset.argtypes = [ctypes.c_void_p, ctypes.c_uint64]
            lib.XXH64_update.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
            lib.XXH64_digest.argtypes = [ctypes.c_void_p]
            lib.XXH64_digest.restype = ctypes.c_uint64
            return lib
        except (OSError, AttributeError):
            continue
    return None


_libxxhash = _load_libxxhash()

__all__ = ["XXH64", "PureXXH64", "LibXXH64", "xxh64_hex", "backend"]

_M = (1 << 64) - 1
_P1 = 11400714785074694791
_P2 = 14029467366897019727
_P3 = 1609587929392839161
_P4 = 9650029242287828579
_P5 = 2870177450012600261
# Stripes turned into integers per step of the fallback (bounds its temporary lists).
_CHUNK = 1 << 20


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (64 - r))) & _M


def _round(acc: int, lane: int) -> int:
    acc = (acc + lane * _P2) & _M
    return (_rotl(acc, 31) * _P1) & _M


def _merge(h: int, v: int) -> int:
    return ((h ^ _round(0, v)) * _P1 + _P4) & _M


class PureXXH64:
    """Streaming xxHash64 in pure Python: `update(bytes-like)`, then `intdigest()` / `hexdigest()`."""

    def __init__(self, seed: int = 0) -> None:
        self._seed = seed & _M
        self._v = [
            (self._seed + _P1 + _P2) & _M,
            (self._seed + _P2) & _M,
            self._seed,
            (self._seed - _P1) & _M,
        ]
        self._total = 0
        self._tail = b""

    def update(self, data) -> None:
        view = memoryview(data).cast("B")
        self._total += view.nbytes
        if self._tail:
            take = min(32 - len(self._tail), view.nbytes)
            self._tail += bytes(view[:take])
            view = view[take:]
            if len(self._tail) < 32:
                return
            self._stripes(np.frombuffer(self._tail, dtype="<u8"))
            self._tail = b""
        whole = view.nbytes // 32 * 32
        at = 0
        while at < whole:
            stop = min(whole, at + _CHUNK)
            self._stripes(np.frombuffer(view[at:stop], dtype="<u8"))
            at = stop
        self._tail = bytes(view[whole:])

    def _stripes(self, lanes: np.ndarray) -> None:
        a, b, c, d = self._v
        words = lanes.tolist()
        p1, p2, m = _P1, _P2, _M
        for i in range(0, len(words), 4):
            a = (a + words[i] * p2) & m
            a = (((a << 31) | (a >> 33)) & m) * p1 & m
            b = (b + words[i + 1] * p2) & m
            b = (((b << 31) | (b >> 33)) & m) * p1 & m
            c = (c + words[i + 2] * p2) & m
            c = (((c << 31) | (c >> 33)) & m) * p1 & m
            d = (d + words[i + 3] * p2) & m
            d = (((d << 31) | (d >> 33)) & m) * p1 & m
        self._v = [a, b, c, d]

    def intdigest(self) -> int:
        v1, v2, v3, v4 = self._v
        if self._total >= 32:
            h = (_rotl(v1, 1) + _rotl(v2, 7) + _rotl(v3, 12) + _rotl(v4, 18)) & _M
            for v in (v1, v2, v3, v4):
                h = _merge(h, v)
        else:
            h = (self._seed + _P5) & _M
        h = (h + self._total) & _M
        tail = self._tail
        p = 0
        while p + 8 <= len(tail):
            h ^= _round(0, int.from_bytes(tail[p:p + 8], "little"))
            h = (_rotl(h, 27) * _P1 + _P4) & _M
            p += 8
        if p + 4 <= len(tail):
            h ^= (int.from_bytes(tail[p:p + 4], "little") * _P1) & _M
            h = (_rotl(h, 23) * _P2 + _P3) & _M
            p += 4
        while p < len(tail):
            h ^= (tail[p] * _P5) & _M
            h = (_rotl(h, 11) * _P1) & _M
            p += 1
        h ^= h >> 33
        h = (h * _P2) & _M
        h ^= h >> 29
        h = (h * _P3) & _M
        h ^= h >> 32
        return h

    def hexdigest(self) -> str:
        return format(self.intdigest(), "016x")


class LibXXH64:
    """Streaming xxHash64 through the system's libxxhash (ctypes)."""

    def __init__(self, seed: int = 0) -> None:
        if _libxxhash is None:
            raise RuntimeError("libxxhash is not installed")
        self._state = _libxxhash.XXH64_createState()
        if not self._state:
            raise MemoryError("XXH64_createState failed")
        _libxxhash.XXH64_reset(self._state, seed & _M)

    def __del__(self) -> None:
        if getattr(self, "_state", None):
            _libxxhash.XXH64_freeState(self._state)
            self._state = None

    def update(self, data) -> None:
        view = memoryview(data).cast("B")
        if view.nbytes == 0:
            return
        if view.readonly:
            # ctypes needs a writable buffer to take an address; numpy gives the address of a read-only one.
            array = np.frombuffer(view, dtype=np.uint8)
            _libxxhash.XXH64_update(self._state, array.ctypes.data, view.nbytes)
        else:
            holder = (ctypes.c_char * view.nbytes).from_buffer(view)
            _libxxhash.XXH64_update(self._state, ctypes.addressof(holder), view.nbytes)

    def intdigest(self) -> int:
        return int(_libxxhash.XXH64_digest(self._state))

    def hexdigest(self) -> str:
        return format(self.intdigest(), "016x")


def backend() -> str:
    """Which implementation `XXH64` uses: "xxhash", "libxxhash" or "pure-python"."""
    if _xxhash is not None:
        return "xxhash"
    return "libxxhash" if _libxxhash is not None else "pure-python"


def XXH64(seed: int = 0):
    """A streaming hasher (`update`, `intdigest`, `hexdigest`): the fastest implementation available."""
    if _xxhash is not None:
        return _xxhash.xxh64(seed=seed)
    if _libxxhash is not None:
        return LibXXH64(seed)
    return PureXXH64(seed)


def xxh64_hex(data, seed: int = 0) -> str:
    """xxHash64 of a bytes-like object as 16 lowercase hex digits (the k2pack table's spelling)."""
    h = XXH64(seed)
    h.update(data)
    return h.hexdigest()
