"""k2pack_reader: read k2pack folders (docs/FORMAT.md) from Python without a copy.

    import k2pack_reader as k2
    pack = k2.open_pack("out/k25")                 # a folder, an archive folder or one rank; a set root gives a ShardSet
    w = pack.get("language_model.model.embed_tokens.weight")        # numpy.memmap view (BF16 as uint16)
    e = pack.expert("language_model.model.layers.1.mlp.experts.*.gate_proj.weight_packed", 5)
    pack.verify()                                  # xxHash64 of every tensor; raises ChecksumMismatchError
"""

from .reader import (
    FORMAT_VERSION,
    CarriedFile,
    ChecksumMismatchError,
    Frame,
    HeaderError,
    K2PackError,
    NotPackError,
    PackFile,
    PackFolder,
    ShardSet,
    ShardSetError,
    Slice,
    Source,
    TableChecksumError,
    TableError,
    TensorError,
    TensorInfo,
    UnsupportedVersionError,
    bf16_to_float32,
    numpy_dtype,
    open_pack,
    zstd_backend,
)
from .xxh64 import XXH64, PureXXH64, xxh64_hex

__version__ = "0.1.0"

__all__ = [
    "FORMAT_VERSION",
    "CarriedFile",
    "ChecksumMismatchError",
    "Frame",
    "HeaderError",
    "K2PackError",
    "NotPackError",
    "PackFile",
    "PackFolder",
    "ShardSet",
    "ShardSetError",
    "Slice",
    "Source",
    "TableChecksumError",
    "TableError",
    "TensorError",
    "TensorInfo",
    "UnsupportedVersionError",
    "XXH64",
    "PureXXH64",
    "bf16_to_float32",
    "numpy_dtype",
    "open_pack",
    "xxh64_hex",
    "zstd_backend",
]
