#!/usr/bin/env python3
"""Tests of the Python k2pack reader against the Swift writer, on every fixture.

For each fixture in Fixtures/ the Swift binary converts it (plain and --compress) and shards it (tp 2 × ep 2 on
4 ranks, and DeepSeek-V3 also tp 2 alone, which splits the expert stacks too); the reader must give back every
checkpoint tensor exactly as the original safetensors file holds it (read here by a few lines of numpy), pass
checksum verification, catch a flipped byte, and refuse a future version, undefined flags and the other broken
headers and tables the Swift reader refuses — and for the version and flags the Swift binary is run on the same
files to show it refuses them too.

    python3 python/tests/test_reader.py            # from the repository root; K2PACK_BIN overrides the binary

Needs numpy only (zstandard, xxhash and torch are used when installed; archives fall back to the system libzstd).
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import unittest

import numpy as np

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(REPO, "python"))

import k2pack_reader as k2  # noqa: E402
from k2pack_reader import reader as k2reader  # noqa: E402
from k2pack_reader.xxh64 import PureXXH64  # noqa: E402

# K2PACK_BIN names the binary (a missing one is then an error); by default the debug build, skipped if absent.
BINARY = os.path.abspath(os.environ.get("K2PACK_BIN", os.path.join(REPO, ".build", "debug", "k2pack")))
FIXTURES = ["k25-tiny", "k2-thinking-tiny", "deepseek-v3-tiny"]
# The shard layouts each fixture allows (the tiny INT4 experts have one quantization group per row: no tp split
# without ep).
SHARDINGS = {
    "k25-tiny": [("tp2ep2", ["--gpus", "4", "--tp", "2", "--ep", "2"])],
    "k2-thinking-tiny": [("tp2ep2", ["--gpus", "4", "--tp", "2", "--ep", "2"])],
    "deepseek-v3-tiny": [
        ("tp2ep2", ["--gpus", "4", "--tp", "2", "--ep", "2"]),
        ("tp2", ["--gpus", "2", "--tp", "2"]),
    ],
}

# Independent of the reader's table: safetensors dtype -> numpy dtype of the stored words.
ST_DTYPES = {
    "BOOL": "?", "U8": "u1", "I8": "i1", "F8_E4M3": "u1", "F8_E5M2": "u1", "I16": "<i2", "U16": "<u2",
    "F16": "<f2", "BF16": "<u2", "I32": "<i4", "U32": "<u4", "F32": "<f4", "F64": "<f8", "I64": "<i8", "U64": "<u8",
}

WORK = None  # temp dir with every output
OUT = {}  # (fixture, form) -> path


def read_safetensors(folder):
    """Every tensor of a Hugging Face folder: name -> numpy array (BF16 as uint16), from the raw header."""
    tensors = {}
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".safetensors"):
            continue
        with open(os.path.join(folder, name), "rb") as handle:
            data = handle.read()
        (n,) = struct.unpack_from("<Q", data, 0)
        header = json.loads(data[8:8 + n])
        base = 8 + n
        for tensor, entry in header.items():
            if tensor == "__metadata__":
                continue
            start, end = entry["data_offsets"]
            raw = np.frombuffer(data, dtype=np.uint8, count=end - start, offset=base + start)
            tensors[tensor] = raw.view(ST_DTYPES[entry["dtype"]]).reshape(entry["shape"])
    return tensors


def run_binary(*args, check=True):
    result = subprocess.run([BINARY, *args], capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def setUpModule():
    global WORK
    if not os.access(BINARY, os.X_OK):
        if "K2PACK_BIN" in os.environ:
            raise RuntimeError(f"K2PACK_BIN={os.environ['K2PACK_BIN']}: no executable there")
        raise unittest.SkipTest(f"no k2pack binary at {BINARY} (swift build, or set K2PACK_BIN)")
    WORK = tempfile.mkdtemp(prefix="k2pack-pyreader-")
    for fixture in FIXTURES:
        source = os.path.join(REPO, "Fixtures", fixture)
        OUT[fixture, "hf"] = source
        OUT[fixture, "pack"] = os.path.join(WORK, fixture + ".pack")
        run_binary("convert", source, OUT[fixture, "pack"])
        OUT[fixture, "archive"] = os.path.join(WORK, fixture + ".k2z")
        run_binary("convert", source, OUT[fixture, "archive"], "--compress")
        for label, args in SHARDINGS[fixture]:
            OUT[fixture, label] = os.path.join(WORK, f"{fixture}.{label}")
            run_binary("shard", source, OUT[fixture, label], *args, "--quiet")


def tearDownModule():
    if WORK:
        shutil.rmtree(WORK, ignore_errors=True)


def copy_of(path):
    """A private copy of an output folder to damage."""
    target = tempfile.mkdtemp(prefix="damaged-", dir=WORK)
    shutil.rmtree(target)
    shutil.copytree(path, target)
    return target


def patch(path, offset, data):
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(data)


def header_fields(path):
    with open(path, "rb") as handle:
        header = handle.read(64)
    names = ["alignment", "table_offset", "table_length", "data_offset", "file_length", "table_hash"]
    return dict(zip(names, struct.unpack_from("<6Q", header, 16)))


def rewrite_table(path, change):
    """Edits a file's tensor table (JSON) with `change(dict)` and rewrites it with a matching length and checksum,
    so that only the edit is wrong."""
    fields = header_fields(path)
    with open(path, "rb") as handle:
        data = bytearray(handle.read())
    start, length = fields["table_offset"], fields["table_length"]
    table = json.loads(bytes(data[start:start + length]))
    change(table)
    raw = json.dumps(table, sort_keys=True, separators=(",", ":")).encode()
    if data[0:8] == k2reader.ARCHIVE_MAGIC:  # the table ends the file
        data = data[:start] + raw
        struct.pack_into("<Q", data, 48, len(data))
    else:
        room = fields["data_offset"] - start
        assert len(raw) <= room, "edited table no longer fits"
        data[start:start + room] = raw + bytes(room - len(raw))
    struct.pack_into("<Q", data, 32, len(raw))
    hasher = PureXXH64()
    hasher.update(raw)
    struct.pack_into("<Q", data, 56, hasher.intdigest())
    with open(path, "wb") as handle:
        handle.write(data)


class XXHash64Tests(unittest.TestCase):
    # The vectors of Tests/PackFormatTests/XXHash64Tests.swift (from the reference C library).
    VECTORS = [
        (b"", 0, 0xEF46DB3751D8E999),
        (b"a", 0, 0xD24EC4F1A98C6E5B),
        (b"abc", 0, 0x44BC2CF5AD770999),
        (b"abc", 1, 0xBEA9CA8199328908),
        (b"0123456789abcdef0123456789abcdef0", 0, 0xE87684F08D6D0816),
        (bytes(i % 256 for i in range(1280)), 0, 0xAFC184AD7938A354),
    ]

    def test_pure_python_matches_reference_whole_and_in_pieces(self):
        for data, seed, expected in self.VECTORS:
            for split in [len(data) or 1, 1, 7, 31, 32, 33]:
                h = PureXXH64(seed)
                for at in range(0, len(data), split):
                    h.update(data[at:at + split])
                self.assertEqual(h.intdigest(), expected, f"{data[:8]!r}… seed {seed}, pieces of {split}")
                self.assertEqual(h.hexdigest(), format(expected, "016x"))

    def test_default_backend_matches_pure_python(self):
        rng = np.random.default_rng(7)
        for size in [0, 5, 31, 32, 33, 100, 4096 + 13, 300_000]:
            data = rng.integers(0, 256, size, dtype=np.uint8)
            pure = PureXXH64()
            pure.update(data)
            self.assertEqual(k2.xxh64_hex(data), pure.hexdigest(), f"{size} bytes with {k2.xxh64.backend()}")


class FixtureContentTests(unittest.TestCase):
    """Every checkpoint tensor, read through the reader, equals the safetensors original."""

    def check_folder(self, pack, original, expect_whole=True):
        seen = set()
        for name in pack.source_names():
            self.assertIn(name, original, f"{pack.path}: source '{name}' is not in the checkpoint")
            want = original[name]
            got = pack.source(name)
            info = pack.source_info(name)
            if info.slice is not None:
                s = info.slice
                want = np.take(want, np.arange(s.start, s.end), axis=s.dimension)
            self.assertEqual(got.dtype, want.dtype, name)
            self.assertEqual(got.shape, want.shape, name)
            self.assertTrue(np.array_equal(got, want), f"{pack.path}: '{name}' differs from the checkpoint")
            seen.add(name)
        if expect_whole:
            self.assertEqual(seen, set(original), f"{pack.path}: tensors missing")
        return seen

    def test_converted_folders_equal_the_checkpoint(self):
        for fixture in FIXTURES:
            original = read_safetensors(OUT[fixture, "hf"])
            with k2.open_pack(OUT[fixture, "pack"]) as pack:
                self.assertIsInstance(pack, k2.PackFolder)
                self.assertFalse(pack.is_archive)
                self.check_folder(pack, original)
                for info in pack.tensors():
                    view = pack.get(info.name)
                    # Zero-copy: a view of the file's read-only mapping.
                    self.assertIsInstance(view, np.memmap, info.name)
                    self.assertFalse(view.flags.writeable)
                    self.assertEqual(tuple(view.shape), info.shape)
                    # copy=True: read with pread into a new writable array, the same values.
                    copied = pack.get(info.name, copy=True, verify=True)
                    self.assertNotIsInstance(copied, np.memmap)
                    self.assertTrue(copied.flags.writeable)
                    self.assertFalse(np.shares_memory(copied, view))
                    self.assertTrue(np.array_equal(copied, view), info.name)

    def test_archives_equal_the_checkpoint(self):
        if k2.zstd_backend() is None:
            self.skipTest("neither zstandard nor libzstd is available")
        for fixture in FIXTURES:
            original = read_safetensors(OUT[fixture, "hf"])
            with k2.open_pack(OUT[fixture, "archive"]) as pack, k2.open_pack(OUT[fixture, "pack"]) as plain:
                self.assertTrue(pack.is_archive)
                self.check_folder(pack, original)
                self.assertEqual(pack.names(), plain.names())
                for name in plain.names():
                    self.assertTrue(np.array_equal(pack.get(name), plain.get(name)), name)

    def test_shard_sets_tile_the_checkpoint(self):
        for fixture in FIXTURES:
            original = read_safetensors(OUT[fixture, "hf"])
            for label, _ in SHARDINGS[fixture]:
                shards = k2.open_pack(OUT[fixture, label])
                self.assertIsInstance(shards, k2.ShardSet)
                self.assertEqual(shards.ranks, 4 if label == "tp2ep2" else 2)
                covered = {}
                for r in range(shards.ranks):
                    with shards.rank(r) as rank:
                        self.assertEqual(rank.shard["rank"], r)
                        for name in self.check_folder(rank, original, expect_whole=False):
                            s = rank.source_info(name).slice
                            covered.setdefault(name, set()).add(None if s is None else (s.dimension, s.start, s.end))
                self.assertEqual(set(covered), set(original), f"{fixture} {label}: tensors on no rank")
                for name, blocks in covered.items():  # whole on some rank, or blocks tiling one dimension
                    if None in blocks:
                        continue
                    (dimension,) = {b[0] for b in blocks}
                    edges = sorted((b[1], b[2]) for b in blocks)
                    self.assertEqual(edges[0][0], 0, name)
                    self.assertEqual(edges[-1][1], original[name].shape[dimension], name)
                    for (_, a), (b, _) in zip(edges, edges[1:]):
                        self.assertEqual(a, b, f"{name}: blocks do not tile")

    def test_expert_ranges_are_one_slice(self):
        for fixture in FIXTURES:
            original = read_safetensors(OUT[fixture, "hf"])
            for form in ["pack", "archive", "tp2ep2"]:
                if form == "archive" and k2.zstd_backend() is None:
                    continue
                opened = k2.open_pack(OUT[fixture, form])
                folders = [opened.rank(r) for r in range(opened.ranks)] if isinstance(opened, k2.ShardSet) else [opened]
                stacks = 0
                for pack in folders:
                    first, end = pack.expert_range
                    for info in pack.tensors():
                        if not info.is_stack:
                            continue
                        stacks += 1
                        count = info.shape[0]
                        lo, hi = first + 1, first + min(count, 3)
                        block = pack.experts(info.name, lo, hi)
                        self.assertEqual(block.shape, (hi - lo,) + info.shape[1:])
                        want = np.stack([original[s.name] for s in info.sources[lo - first:hi - first]])
                        self.assertTrue(np.array_equal(block, want), f"{info.name} experts {lo}..<{hi}")
                        one = pack.expert(info.name, first + count - 1)
                        self.assertTrue(np.array_equal(one, original[info.sources[-1].name]), info.name)
                        copied = pack.experts(info.name, lo, hi, copy=True)
                        self.assertTrue(copied.flags.writeable)
                        self.assertTrue(np.array_equal(copied, want), f"{info.name} experts {lo}..<{hi}, copied")
                        self.assertTrue(np.array_equal(pack.source(info.sources[0].name, copy=True),
                                                       original[info.sources[0].name]))
                        if not pack.is_archive:
                            self.assertIsInstance(block, np.memmap)
                        with self.assertRaises(IndexError) as caught:
                            pack.experts(info.name, first, first + count + 1)
                        self.assertIn(f"are not within the stack's [{first}, {first + count})", str(caught.exception))
                    pack.close()
                self.assertGreater(stacks, 0, f"{fixture} {form}: no expert stacks")

    def test_dtypes_are_stored_words_and_bf16_widens(self):
        with k2.open_pack(OUT["k25-tiny", "pack"]) as pack:
            kinds = {info.dtype for info in pack.tensors()}
            self.assertTrue({"BF16", "I32"} <= kinds, kinds)
            for info in pack.tensors():
                view = pack.get(info.name)
                self.assertEqual(view.dtype, {"BF16": np.uint16, "I32": np.int32, "F32": np.float32,
                                              "I64": np.int64}[info.dtype], info.name)
                if info.dtype == "BF16":
                    wide = k2.bf16_to_float32(view)
                    self.assertEqual(wide.dtype, np.float32)
                    # Exact: narrowing back by dropping the low half gives the stored words.
                    self.assertTrue(np.array_equal((wide.view(np.uint32) >> 16).astype(np.uint16), view))
        words = np.array([0x3F80, 0xC000, 0x0000, 0x8000, 0x7F80, 0x3E20], dtype=np.uint16)
        self.assertEqual(k2.bf16_to_float32(words).tolist(), [1.0, -2.0, 0.0, -0.0, float("inf"), 0.15625])
        with self.assertRaises(TypeError) as caught:
            k2.bf16_to_float32(np.zeros(2, dtype=np.int32))
        self.assertIn("expected the uint16 bit patterns of BF16 values, got int32", str(caught.exception))
        self.assertIsNone(k2.numpy_dtype("F4"))
        self.assertEqual(k2.numpy_dtype("F8_E4M3"), np.uint8)

    def test_torch_views_share_memory(self):
        try:
            import torch
        except ImportError:
            self.skipTest("torch is not installed")
        with k2.open_pack(OUT["k25-tiny", "pack"]) as pack:
            for info in pack.tensors():
                tensor = pack.get(info.name, framework="pt")
                if info.dtype == "BF16":
                    self.assertEqual(tensor.dtype, torch.bfloat16)
                    wide = k2.bf16_to_float32(np.asarray(pack.get(info.name)))
                    self.assertTrue(np.array_equal(tensor.float().numpy(), wide))
                self.assertEqual(tuple(tensor.shape), info.shape)
                self.assertEqual(tensor.data_ptr(), pack.get(info.name).ctypes.data, f"{info.name} was copied")


class ChecksumTests(unittest.TestCase):
    def test_every_output_verifies(self):
        for (fixture, form), path in OUT.items():
            if form == "hf" or (form == "archive" and k2.zstd_backend() is None):
                continue
            opened = k2.open_pack(path)
            folders = [opened.rank(r) for r in range(opened.ranks)] if isinstance(opened, k2.ShardSet) else [opened]
            for pack in folders:
                self.assertEqual(pack.verify(raise_on_error=False), [], pack.path)
                for info in pack.tensors()[:3]:
                    self.assertEqual(pack.checksum(info.name), info.xxh64)
                    pack.get(info.name, verify=True)
                    pure = PureXXH64()  # the fallback, whatever backend is installed
                    pure.update(np.ascontiguousarray(pack.get(info.name)).view(np.uint8))
                    self.assertEqual(pure.hexdigest(), info.xxh64, info.name)
                pack.close()

    def flip_and_check(self, folder, pick):
        with k2.open_pack(folder) as pack:
            info = pick(pack.tensors())
            file, at = info.file, info.offset + info.length // 2
        with open(file, "r+b") as handle:
            handle.seek(at)
            byte = handle.read(1)
            handle.seek(at)
            handle.write(bytes([byte[0] ^ 0x10]))
        with k2.open_pack(folder) as pack:
            errors = pack.verify(raise_on_error=False)
            self.assertEqual([e.tensor for e in errors], [info.name])
            self.assertIn(f"{file}: tensor '{info.name}': data is corrupt: xxHash64 ", str(errors[0]))
            self.assertIn(f", table records {info.xxh64}", str(errors[0]))
            with self.assertRaises(k2.ChecksumMismatchError):
                pack.verify()
            with self.assertRaises(k2.ChecksumMismatchError):
                pack.get(info.name, verify=True)
            with self.assertRaises(k2.ChecksumMismatchError) as caught:
                pack.get(info.name, verify=True, copy=True)  # the copy's own bytes are hashed
            self.assertIn(f"tensor '{info.name}': data is corrupt", str(caught.exception))
            pack.get(info.name)  # without verify=True the view is handed out unchecked

    def test_flipped_byte_is_named_in_every_form(self):
        for fixture in FIXTURES:
            self.flip_and_check(copy_of(OUT[fixture, "pack"]), lambda ts: max(ts, key=lambda t: t.length))
            self.flip_and_check(copy_of(OUT[fixture, "pack"]), lambda ts: [t for t in ts if t.dtype == "BF16"][0])
            rank = os.path.join(copy_of(OUT[fixture, "tp2ep2"]), "rank-0003")
            self.flip_and_check(rank, lambda ts: [t for t in ts if t.is_stack][-1])

    def test_flipped_byte_in_an_archive_frame_is_caught(self):
        if k2.zstd_backend() is None:
            self.skipTest("neither zstandard nor libzstd is available")
        folder = copy_of(OUT["k25-tiny", "archive"])
        with k2.open_pack(folder) as pack:
            info = max(pack.tensors(), key=lambda t: t.length)
            frame = info.frames[0]
        patch(info.file, frame.offset + frame.length // 2, b"\xa5")
        with k2.open_pack(folder) as pack:
            with self.assertRaises(k2.TensorError) as caught:  # a decode error or a checksum mismatch
                pack.verify()
            self.assertIn(f"tensor '{info.name}'", str(caught.exception))
            with self.assertRaises(k2.TensorError) as caught:
                pack.get(info.name, verify=True)
            self.assertIn(f"tensor '{info.name}'", str(caught.exception))


class CommandLineTests(unittest.TestCase):
    def module(self, *args):
        env = dict(os.environ, PYTHONPATH=os.path.join(REPO, "python"))
        return subprocess.run([sys.executable, "-m", "k2pack_reader", *args], capture_output=True, text=True, env=env)

    def test_lists_verifies_and_refuses(self):
        result = self.module(OUT["k25-tiny", "tp2ep2"], "--verify")
        self.assertEqual(result.returncode, 0, result.stderr)
        with k2.open_pack(OUT["k25-tiny", "tp2ep2"]).rank(3) as rank:
            for info in rank.tensors():
                self.assertIn(info.name + "\t" + info.dtype, result.stdout)
        self.assertIn("# rank 3 (tp 1 of 2, ep 1 of 2), experts 4..<8", result.stdout)
        self.assertIn("[48, 96) of dim 1", result.stdout)
        self.assertIn("no checksum mismatches", result.stderr)
        folder = copy_of(OUT["deepseek-v3-tiny", "pack"])
        with k2.open_pack(folder) as pack:
            info = pack.tensors()[-1]
        patch(info.file, info.offset, b"\xff\xfe")
        result = self.module(folder, "--verify")
        self.assertEqual(result.returncode, 1)
        self.assertIn(f"tensor '{info.name}': data is corrupt", result.stderr)
        self.assertIn("1 checksum mismatch", result.stderr)
        with open(os.path.join(folder, "k2pack.json")) as handle:
            first_file = json.load(handle)["files"][0]
        patch(os.path.join(folder, first_file), 8, b"\x07")
        result = self.module(folder)
        self.assertEqual(result.returncode, 2)
        self.assertIn("k2pack format version 7 is not supported (this reader reads version 1)", result.stderr)


class RefusalTests(unittest.TestCase):
    """What the Swift reader refuses, the reader refuses: same conditions, the file and field named."""

    def first_file(self, folder, suffix):
        with open(os.path.join(folder, "k2pack.json")) as handle:
            name = json.load(handle)["files"][0]
        self.assertTrue(name.endswith(suffix))
        return os.path.join(folder, name)

    def assert_refused(self, folder, error_type, message, field=None, swift=True, swift_message=None):
        with self.assertRaises(error_type) as caught:
            k2.open_pack(folder)
        self.assertIn(message, str(caught.exception))
        if field is not None:
            self.assertEqual(caught.exception.field, field)
        if swift:  # the Swift reader refuses the same folder
            result = run_binary("verify", folder, check=False)
            self.assertNotEqual(result.returncode, 0, f"k2pack verify accepted what Python refused: {message}")
            if swift_message is not None:
                self.assertIn(swift_message, result.stdout + result.stderr)
        return caught.exception

    def test_future_version_is_refused(self):
        for form, suffix in [("pack", ".k2p"), ("archive", ".k2z")]:
            for version in [2, 0, 0xFFFFFFFF]:
                folder = copy_of(OUT["k2-thinking-tiny", form])
                path = self.first_file(folder, suffix)
                patch(path, 8, struct.pack("<I", version))
                error = self.assert_refused(
                    folder, k2.UnsupportedVersionError,
                    f"{path}: k2pack format version {version} is not supported (this reader reads version 1)", "version",
                    swift_message=f"k2pack format version {version} is not supported")
                self.assertEqual(error.file, path)
                self.assertEqual(error.version, version)

    def test_undefined_flags_are_refused(self):
        for form, suffix in [("pack", ".k2p"), ("archive", ".k2z")]:
            for flags in [4, 0x8000, 0x80000000]:
                folder = copy_of(OUT["deepseek-v3-tiny", form])
                path = self.first_file(folder, suffix)
                patch(path, 12, struct.pack("<I", flags))
                message = (f"flags 0x{flags:x} are not defined in version 1 (this build knows 0x3 (sliced sources, archive)): "
                           "written by a newer or different tool")
                self.assert_refused(folder, k2.HeaderError, f"{path}: invalid header: {message}", "flags",
                                    swift_message=message)

    def test_duplicate_keys_are_refused(self):
        folder = copy_of(OUT["k2-thinking-tiny", "pack"])
        manifest = os.path.join(folder, "k2pack.json")
        with open(manifest) as handle:
            text = handle.read()
        with open(manifest, "w") as handle:
            handle.write(text.replace('"format"', '"format" : "k2pack", "format"', 1))
        self.assert_refused(folder, k2.NotPackError, "duplicate key 'format'", swift_message='duplicate key "format"')

    def edit_record(self, folder, name, change):
        path = os.path.join(folder, name)
        with open(path) as handle:
            doc = json.load(handle)
        change(doc)
        with open(path, "w") as handle:
            json.dump(doc, handle)
        return path

    def test_future_folder_and_set_records_are_refused(self):
        # k25-tiny carries files (tokenizer, remote code, docs/…): its records are version 2.
        for change, message in [
            (lambda d: d.update(version=3), "folder record version 3 is not supported (this reader reads versions 1 to 2)"),
            (lambda d: d.update(version=0), "folder record version 0 is not supported (this reader reads versions 1 to 2)"),
        ]:
            folder = copy_of(OUT["k25-tiny", "pack"])
            manifest = self.edit_record(folder, "k2pack.json", change)
            self.assert_refused(folder, k2.UnsupportedVersionError, f"{manifest}: {message}", "version",
                                swift_message="folder record version")
        folder = copy_of(OUT["k25-tiny", "pack"])
        manifest = self.edit_record(folder, "k2pack.json", lambda d: d.update(format="k3pack"))
        self.assert_refused(folder, k2.UnsupportedVersionError, "format 'k3pack' version 2 is not supported", "format")
        for change, message in [
            (lambda d: d.update(version=1), "version 1 records no carried files, but this record lists some"),
            (lambda d: d.pop("carried"), "version 2 records carried files, but this record has no carried list"),
            (lambda d: d.update(carried=[]), "version 2 records carried files, but this record's carried list is empty"),
            (lambda d: d["carried"].append(dict(d["carried"][0])), "is listed twice"),
            (lambda d: d["carried"].append({"path": "../up.txt", "size": 1, "sha256": "0" * 64}),
             'carried file "../up.txt" is not a plain relative path inside the folder'),
            (lambda d: d["carried"].append({"path": "source/x", "size": 1, "sha256": "0" * 64}),
             'carried file "source/x" takes the name "source", which the folder uses for its own records'),
            (lambda d: d["carried"].append({"path": "docs", "size": 1, "sha256": "0" * 64}),
             'carried file "docs" is also a folder holding "docs/'),
            (lambda d: d["carried"].append({"path": d["files"][0], "size": 1, "sha256": "0" * 64}),
             "which the folder uses for its own records"),
        ]:
            folder = copy_of(OUT["k25-tiny", "pack"])
            manifest = self.edit_record(folder, "k2pack.json", change)
            error = self.assert_refused(folder, k2.NotPackError, message)
            self.assertTrue(str(error).startswith(f"{manifest}: not a k2pack file: "), str(error))
        # deepseek-v3-tiny carries nothing: version 1, and a version 2 without a list is refused.
        folder = copy_of(OUT["deepseek-v3-tiny", "pack"])
        manifest = self.edit_record(folder, "k2pack.json", lambda d: d.update(version=2))
        self.assert_refused(folder, k2.NotPackError, "version 2 records carried files, but this record has no carried list")
        for change, message in [
            (lambda d: d.update(version=3), "format k2pack-shards version 3 is not supported (this reader reads k2pack-shards 1 and 2)"),
            (lambda d: d.update(format="k2pack"), "format k2pack version 2 is not supported"),
            (lambda d: d.update(version=1), "version 1 records no carried files, but this record lists some"),
            (lambda d: d["layout"].update(tp=0), "tp 0 × ep 2 is not a plausible layout"),
            (lambda d: d["source_shards"].append("../escape.safetensors"),
             'source shard name "../escape.safetensors" is not a plain name inside the folder'),
            (lambda d: d["source_shards"].append("a\\b"), 'source shard name "a\\b" is not a plain name inside the folder'),
            (lambda d: d["source_shards"].append("config.json"), 'source shard name "config.json" is reserved'),
            (lambda d: d["source_shards"].append(d["source_shards"][0]),
             'source shard "model-00001-of-000006.safetensors" is listed twice'),
            (lambda d: d["carried"].append({"path": "rank-0001/x", "size": 1, "sha256": "0" * 64}),
             'carried file "rank-0001/x" takes the name "rank-0001", which the folder uses for its own records'),
        ]:
            folder = copy_of(OUT["k25-tiny", "tp2ep2"])
            manifest = self.edit_record(folder, "shards.json", change)
            self.assert_refused(folder, k2.ShardSetError, f"{manifest}: {message}")

    def test_carried_files_are_listed_and_checked(self):
        with k2.open_pack(OUT["k25-tiny", "pack"]) as pack:
            self.assertEqual(pack.record_version, 2)
            paths = [c.path for c in pack.carried]
            self.assertIn("tiktoken.model", paths)
            self.assertTrue(any(p.startswith("docs/") for p in paths), paths)
            self.assertEqual(pack.verify_carried(), [])
        with k2.open_pack(OUT["k2-thinking-tiny", "pack"]) as pack:
            self.assertEqual(sorted(c.path for c in pack.carried), ["tiktoken.model", "tokenizer_config.json"])
            self.assertEqual(pack.verify_carried(), [])
        with k2.open_pack(OUT["deepseek-v3-tiny", "pack"]) as pack:
            self.assertEqual((pack.record_version, pack.carried), (1, []))
        folder = copy_of(OUT["k25-tiny", "pack"])
        with k2.open_pack(folder) as pack:
            victim = os.path.join(folder, pack.carried[0].path)
            with open(victim, "rb") as handle:
                first = handle.read(1)
            patch(victim, 0, bytes([first[0] ^ 0x01]))
            os.remove(os.path.join(folder, pack.carried[1].path))
            problems = pack.verify_carried()
        self.assertEqual(len(problems), 2, [str(p) for p in problems])
        self.assertIn(f"{victim}: carried file changed: ", str(problems[0]))
        self.assertIn("carried file cannot be read", str(problems[1]))
        rank = k2.open_pack(OUT["k25-tiny", "tp2ep2"]).rank(1)
        self.assertEqual(rank.verify_carried(), [])  # each rank is self-contained

    def test_rank_records_are_checked_against_the_set(self):
        folder = copy_of(OUT["k25-tiny", "tp2ep2"])
        manifest = os.path.join(folder, "rank-0002", "k2pack.json")
        with open(manifest) as handle:
            doc = json.load(handle)
        doc["shard"]["rank"] = 1
        with open(manifest, "w") as handle:
            json.dump(doc, handle)
        shards = k2.open_pack(folder)
        with self.assertRaises(k2.ShardSetError) as caught:
            shards.rank(2)
        self.assertIn(f"{folder}/rank-0002/k2pack.json: does not describe rank 2 of tp 2 × ep 2", str(caught.exception))
        shutil.rmtree(os.path.join(folder, "rank-0003"))
        with self.assertRaises(k2.ShardSetError) as caught:
            shards.rank(3)
        self.assertIn("rank 3 of 4 is missing or unfinished (no k2pack.json)", str(caught.exception))
        with self.assertRaises(IndexError):
            shards.rank(4)

    def test_folder_records_are_checked(self):
        for change, error_type, message in [
            (lambda d: d["files"].append("../x.k2p"), k2.NotPackError, 'data file name "../x.k2p" is not a plain name inside the folder'),
            (lambda d: d["files"].append("a\x00b"), k2.NotPackError, "is not a plain name inside the folder"),
            (lambda d: d["files"].append("a\\b.k2p"), k2.NotPackError, 'data file name "a\\b.k2p" is not a plain name'),
            (lambda d: d["files"].append("k2pack.json"), k2.NotPackError, 'data file name "k2pack.json" is reserved for the folder\'s own records'),
            (lambda d: d["files"].append(d["files"][0]), k2.NotPackError, 'data file "layer-0000.k2p" is listed twice'),
            (lambda d: d["source_shards"].append(".."), k2.NotPackError, 'source shard name ".." is not a plain name inside the folder'),
            (lambda d: d["source_shards"].append("source"), k2.NotPackError, 'source shard name "source" is reserved'),
            (lambda d: d.pop("architecture"), k2.NotPackError, "not a valid folder record (k2pack.json has no 'architecture')"),
            (lambda d: d.update(files="layer-0000.k2p"), k2.NotPackError, "'files' is not an array"),
            (lambda d: d.update(formats="k2pack"), k2.NotPackError, "not a valid folder record (k2pack.json has an unknown key 'formats')"),
        ]:
            folder = copy_of(OUT["k2-thinking-tiny", "pack"])
            manifest = os.path.join(folder, "k2pack.json")
            with open(manifest) as handle:
                doc = json.load(handle)
            change(doc)
            with open(manifest, "w") as handle:
                json.dump(doc, handle)
            self.assert_refused(folder, error_type, message)
        folder = copy_of(OUT["k2-thinking-tiny", "pack"])
        outside = os.path.join(WORK, "outside-layer.k2p")
        data_file = self.first_file(folder, ".k2p")
        shutil.move(data_file, outside)
        os.symlink(outside, data_file)
        self.assert_refused(folder, k2.NotPackError, f"is a symlink to {outside}, outside the folder")
        folder = copy_of(OUT["k2-thinking-tiny", "pack"])
        os.remove(os.path.join(folder, "k2pack.json"))
        self.assert_refused(folder, k2.NotPackError,
                            f"{folder}: not a k2pack file: no k2pack.json or shards.json: not a k2pack folder or shard set")
        with self.assertRaises(k2.NotPackError) as caught:
            k2.PackFolder(folder)
        self.assertIn("no k2pack.json: not a k2pack folder, or its conversion did not finish", str(caught.exception))
        with self.assertRaises(k2.ShardSetError) as caught:
            k2.ShardSet(folder)
        self.assertIn("shards.json: missing: not a shard set, or rank 0 has not finished writing it", str(caught.exception))

    def test_broken_headers_are_refused(self):
        pack = OUT["k2-thinking-tiny", "pack"]
        size = os.path.getsize(self.first_file(pack, ".k2p"))
        u64 = lambda v: struct.pack("<Q", v)  # noqa: E731
        cases = [
            (0, b"X", k2.NotPackError, "not a k2pack file: wrong magic bytes", "magic"),
            (0, b"K2PACKZ\x00", k2.HeaderError, "do not fit a", "table offset"),  # a .k2p posing as an archive
            (16, u64(100), k2.HeaderError, "alignment 100 is not a power of two between 64 and 2^30", "alignment"),
            (16, u64(32), k2.HeaderError, "alignment 32 is not a power of two between 64 and 2^30", "alignment"),
            (16, u64(1 << 31), k2.HeaderError, "alignment 2147483648 is not a power of two", "alignment"),
            (48, u64(size + 1), k2.HeaderError, f"header records {size + 1} bytes but the file has {size} (truncated or extended)", "file length"),
            (24, u64((1 << 64) - 16), k2.HeaderError, f"table [{(1 << 64) - 16}, +", "table offset"),
            (24, u64(32), k2.HeaderError, "do not fit a", "table offset"),
            (32, u64((1 << 64) - 1), k2.HeaderError, f"+{(1 << 64) - 1}) and data offset", "table offset"),
            (32, u64((256 << 20) + 1), k2.HeaderError, "do not fit a", "table offset"),
            (40, u64(size + 4096), k2.HeaderError, "do not fit a", "table offset"),
            (56, u64(12345), k2.TableChecksumError, "tensor table is corrupt: xxHash64 ", "table xxh64"),
        ]
        for offset, data, error_type, message, field in cases:
            folder = copy_of(pack)
            path = self.first_file(folder, ".k2p")
            patch(path, offset, data)
            self.assert_refused(folder, error_type, f"{path}: ", field)
            self.assert_refused(folder, error_type, message, field, swift=False)
        for cut in [10, 63]:
            folder = copy_of(pack)
            path = self.first_file(folder, ".k2p")
            os.truncate(path, cut)
            self.assert_refused(folder, k2.NotPackError, f"{path}: not a k2pack file: {cut} bytes is shorter than the 64-byte header")
        folder = copy_of(pack)
        path = self.first_file(folder, ".k2p")
        os.truncate(path, size - 1)
        self.assert_refused(folder, k2.HeaderError, "(truncated or extended)", "file length")

    def test_broken_tables_are_refused(self):
        def tensor(i):
            return lambda table: table["tensors"][i]

        def set_(i, key, value):
            return lambda table: table["tensors"][i].update({key: value})

        cases = [
            (lambda t: t["tensors"].append(dict(t["tensors"][0])), k2.TableError, "is listed twice", None),
            (lambda t: t.update(compression="zstd"), k2.TableError, 'compression "zstd" in an uncompressed file', "compression"),
            (lambda t: t.update(format="k3pack"), k2.TableError, 'invalid tensor table: format "k3pack", expected "k2pack"', "format"),
            (lambda t: t.update(version=2), k2.TableError, "invalid tensor table: version 2, expected 1 (the header's)", "version"),
            (lambda t: t.update(alignment=8192), k2.TableError, "invalid tensor table: alignment 8192, but the header says 4096", "alignment"),
            (lambda t: t.update(version="1"), k2.TableError, "'version' is not int", None),
            (lambda t: t.pop("tensors"), k2.TableError, "invalid tensor table: table has no 'tensors'", None),
            (set_(0, "dtype", "F7"), k2.TableError, "dtype 'F7' is not a safetensors dtype", None),
            (set_(0, "shape", [1, "2"]), k2.TableError, "'shape' is not an array of integers", None),
            (set_(0, "length", 3), k2.TensorError, "length 3 does not match shape", "length"),
            (set_(0, "shape", [-1, 4]), k2.TensorError, "does not match shape [-1, 4]", "length"),
            (set_(0, "offset", 4097), k2.TensorError, "is misaligned, overlaps the previous tensor or runs past the file", "offset"),
            (set_(0, "offset", 1 << 62), k2.TensorError, "is misaligned, overlaps the previous tensor or runs past the file", "offset"),
            (lambda t: t["tensors"][1].update(offset=t["tensors"][0]["offset"]), k2.TensorError, "overlaps the previous tensor", "offset"),
            (lambda t: tensor(0)(t)["sources"][0].update(length=tensor(0)(t)["sources"][0]["length"] + 2), k2.TensorError,
             "its source slices do not add up to its length", "sources"),
            (lambda t: tensor(0)(t)["sources"][0].update(length=-1), k2.TensorError, "its source slices do not add up", "sources"),
            (set_(0, "frames", []), k2.TensorError, "frames in an uncompressed file", "frames"),
            # Strict decoding, as the Swift reader's StrictJSON: unknown keys and null refused by name.
            (lambda t: t.update(extra=1), k2.TableError, "invalid tensor table: table has an unknown key 'extra'", None),
            (lambda t: tensor(0)(t)["sources"][0].update(size=1), k2.TableError, "tensors[0].sources[0] has an unknown key 'size'", None),
            (set_(0, "frames", None), k2.TableError, "tensors[0]: 'frames' is null (an absent optional key is omitted)", None),
        ]
        for change, error_type, message, field in cases:
            folder = copy_of(OUT["k25-tiny", "pack"])
            path = self.first_file(folder, ".k2p")
            rewrite_table(path, change)
            error = self.assert_refused(folder, error_type, message, field)
            self.assertTrue(str(error).startswith(path + ": "), str(error))

    def test_broken_archive_tables_are_refused(self):
        def frames_of(t):
            return max(t["tensors"], key=lambda x: x["length"])

        cases = [
            (lambda t: t.pop("compression"), k2.TableError, 'an archive\'s table must say compression "zstd"', "compression"),
            (lambda t: t.update(compression="lz4"), k2.TableError, 'an archive\'s table must say compression "zstd"', "compression"),
            (lambda t: frames_of(t).pop("frames"), k2.TensorError, "its frames hold 0 bytes, its shape needs", "frames"),
            (lambda t: frames_of(t)["frames"][0].update(size=0), k2.TensorError, "is out of order, overlaps, runs past the data or is implausibly sized", "frames"),
            (lambda t: frames_of(t)["frames"][0].update(size=(64 << 20) + 1), k2.TensorError, "implausibly sized", "frames"),
            (lambda t: frames_of(t)["frames"][0].update(offset=10), k2.TensorError, "frame 0 [10, +", "frames"),
            (lambda t: frames_of(t)["frames"][0].update(length=frames_of(t)["frames"][0]["size"] * 2 + 5000), k2.TensorError, "implausibly sized", "frames"),
            (lambda t: frames_of(t)["frames"].append(dict(frames_of(t)["frames"][-1])), k2.TensorError, "frame ", "frames"),
            (lambda t: t["tensors"][0].update(shape=[1 << 40, 1 << 40]), k2.TensorError, "does not match shape", "length"),
        ]
        for change, error_type, message, field in cases:
            folder = copy_of(OUT["k25-tiny", "archive"])
            path = self.first_file(folder, ".k2z")
            rewrite_table(path, change)
            self.assert_refused(folder, error_type, message, field)
        # Frames that tile the tensor but straddle a source boundary: an expert would not decompress alone.
        folder = copy_of(OUT["k25-tiny", "archive"])
        with k2.open_pack(folder) as pack:
            stack = [t for t in pack.tensors() if t.is_stack][0]
            name, path = stack.name, stack.file

        def move_boundary(table):
            t = [x for x in table["tensors"] if x["name"] == name][0]
            t["sources"][0]["length"] += 4
            t["sources"][1]["length"] -= 4

        rewrite_table(path, move_boundary)
        self.assert_refused(folder, k2.TensorError, "its frames do not end where source ", "frames")


if __name__ == "__main__":
    unittest.main(verbosity=2)
