// swift-tools-version: 6.0
import PackageDescription

let strict: [SwiftSetting] = [.enableUpcomingFeature("ExistentialAny")]

let package = Package(
    name: "k2pack",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "k2pack", targets: ["k2pack"]),
        // The readers of outside bytes, for the fuzz targets in Tests/Fuzz (a separate package).
        .library(
            name: "K2PackReaders",
            targets: ["FileIO", "Checkpoint", "JSONCore", "ModelConfig", "LoadedModel", "PackFormat", "Parity", "Forward", "Repack", "Shard", "Inspection", "Tokenizer", "GGUF", "GGUFConvert"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // C libraries: module map + shim.h only; each has exactly one Swift importer.
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        // OpenBLAS and HDF5 are loaded on first use (dlopen), not linked: our own C declares the calls k2pack makes
        // and forwards them, so commands that use neither (inspect, verify, convert) never load them or OpenBLAS's
        // threads. Their runtimes come with libopenblas-dev and libhdf5-dev (scripts/setup.sh).
        .target(name: "COpenBLAS", linkerSettings: [.linkedLibrary("dl", .when(platforms: [.linux]))]),
        .target(name: "CHDF5", linkerSettings: [.linkedLibrary("dl", .when(platforms: [.linux]))]),
        .systemLibrary(name: "CCrypto", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),
        // Our own C: the SIGBUS handler and the registry of temporary files and mapped inputs it reads
        // (async-signal-safe code Swift cannot express). Its one Swift importer is FileIO (FatalSignals).
        .target(name: "CSignals"),
        // Our own C: the forward pass's hot loops (INT4 / BF16 mat-vec, BF16 and INT4 decoding), a portable path
        // and x86-64 variants with per-function target attributes, chosen at run time by cpuid (no global -m
        // flags; aarch64 builds the portable path). Its one Swift importer is Forward (Kernels).
        .target(name: "CKernels"),

        // Layer 0, values: dtypes, shapes, checked size arithmetic, strict JSON. No I/O.
        .target(name: "TensorCore", swiftSettings: strict),
        // Strict, bounded JSON reading (duplicate keys, depth limit, exact integers).
        .target(name: "JSONCore", dependencies: ["TensorCore"], swiftSettings: strict),

        // Layer 1, files: the one owner of file I/O, and the safetensors/checkpoint readers built on it.
        // File I/O: read-only mapping with the folder guard (ReadOnlyFile, FolderLinks, PathBytes), the SIGBUS
        // registry (FatalSignals, the only CSignals importer), atomic write and output folders (AtomicFile,
        // OutputPaths), and the one chunked copy with page release (ChunkedCopy).
        .target(name: "FileIO", dependencies: ["TensorCore", "CSignals"], swiftSettings: strict),
        // safetensors files, index.json, checkpoint directories, hashing of files.
        .target(name: "Checkpoint", dependencies: ["TensorCore", "JSONCore", "FileIO", "CCrypto", "CKernels"], swiftSettings: strict),

        // Layer 2, model facts: what a checkpoint should contain (manifests, config, expected tensors, INT4 math)
        // and the frames of our archive form.
        // Architecture facts as data (JSON resources).
        .target(name: "Manifests", path: "Manifests", resources: [.copy("json")], swiftSettings: strict),
        // config.json → typed config; manifests → expected tensor list.
        .target(name: "ModelConfig", dependencies: ["TensorCore", "JSONCore", "Manifests"], swiftSettings: strict),
        // INT4 pack-quantized math: nibbles, groups, scales.
        .target(name: "Quantization", dependencies: ["TensorCore"], swiftSettings: strict),
        // zstd framing (only CZstd importer).
        .target(name: "Archive", dependencies: ["CZstd"], swiftSettings: strict),

        // Layer 3, a model opened: a checkpoint folder opened and checked against its config, and our own folder
        // format. Both read through FileIO; neither knows about reports or writers.
        // A checkpoint opened and checked: the folder, its parsed config, the expected tensor list (built once per
        // open), the position map, and what is wrong as typed `CheckpointProblem`s (no report types).
        .target(
            name: "LoadedModel",
            dependencies: ["TensorCore", "JSONCore", "FileIO", "Checkpoint", "ModelConfig"],
            swiftSettings: strict),
        // The whole k2pack folder format (docs/FORMAT.md): files, folder and shard-set records, folder kind, the one
        // slice index, the folder writer and the one export/merge path; carried files. Plans come from the
        // architecture manifest, hence ModelConfig.
        .target(name: "PackFormat", dependencies: ["TensorCore", "JSONCore", "FileIO", "Checkpoint", "Archive", "ModelConfig"], swiftSettings: strict),

        // GGUF files (llama.cpp's format): validating reader, split sets, ggml block dequantization, the deepseek2
        // config.
        .target(name: "GGUF", dependencies: ["TensorCore", "JSONCore", "FileIO", "Checkpoint"], swiftSettings: strict),

        // Layer 4, compute: the CPU forward pass and its parity tooling; the tokenizer.
        // CPU reference forward pass (only COpenBLAS importer).
        .target(name: "Forward", dependencies: ["COpenBLAS", "CKernels", "TensorCore", "JSONCore", "ModelConfig", "Quantization"], swiftSettings: strict),
        // HDF5 reference dumps, layer-by-layer parity and logit statistics (only CHDF5 importer).
        // The vision path of K2.5 (MoonViT, patch merger, projector) in float32: weights read by manifest slot
        // from a model store; Forward is used for its GEMM only.
        .target(name: "Vision", dependencies: ["Forward", "JSONCore", "Manifests", "ModelConfig", "TensorCore"], swiftSettings: strict),
        .target(name: "Parity", dependencies: ["CHDF5", "Forward", "Vision"], swiftSettings: strict),
        // The Kimi tokenizer (tiktoken.model + tokenizer_config.json), bit-exact with tiktoken.
        .target(name: "Tokenizer", dependencies: ["FileIO", "Checkpoint", "JSONCore", "Manifests", "TensorCore"], swiftSettings: strict),

        // Layer 5, writers and weight sources: each reads through layer 3 and writes through PackFormat/FileIO;
        // none depends on Inspection.
        // convert / export between Hugging Face folders and the k2pack format.
        .target(
            name: "Repack",
            dependencies: ["FileIO", "Checkpoint", "JSONCore", "ModelConfig", "LoadedModel", "PackFormat", "TensorCore"],
            swiftSettings: strict),
        // Tensors for the forward pass from a Hugging Face folder or a k2pack folder.
        .target(
            name: "ModelStore",
            dependencies: ["FileIO", "Checkpoint", "Forward", "LoadedModel", "ModelConfig", "PackFormat", "TensorCore"],
            swiftSettings: strict),
        // quantize / dequantize / verify --requantize: BF16 ⇄ native INT4, bit-exact with compressed-tensors.
        .target(
            name: "Requantize",
            dependencies: ["FileIO", "Checkpoint", "LoadedModel", "JSONCore", "ModelConfig", "PackFormat", "Quantization", "TensorCore"],
            swiftSettings: strict),
        // Per-GPU sharding plans from the manifest's tp / tp_unit / ep rules.
        .target(
            name: "Shard",
            dependencies: ["FileIO", "Checkpoint", "Forward", "LoadedModel", "JSONCore", "ModelConfig", "ModelStore", "PackFormat", "TensorCore"],
            swiftSettings: strict),

        // A GGUF model as the forward pass's weight source (deepseek2 metadata → config, tensor map manifest → slots),
        // and the one function that picks a model's source by what its path is.
        .target(
            name: "GGUFModel",
            dependencies: ["FileIO", "Checkpoint", "Forward", "GGUF", "JSONCore", "Manifests", "ModelConfig", "ModelStore", "TensorCore"],
            swiftSettings: strict),

        // convert --to gguf: a Hugging Face checkpoint (INT4 experts) into llama.cpp's deepseek2 GGUF, experts moved
        // nibble for nibble into Q4_0, the tokenizer into GGUF metadata, split parts as gguf-split names them.
        .target(
            name: "GGUFConvert",
            dependencies: ["FileIO", "Checkpoint", "GGUF", "JSONCore", "LoadedModel", "Manifests", "ModelConfig", "Quantization", "TensorCore", "Tokenizer"],
            swiftSettings: strict),
        // A GGUF back to a Hugging Face checkpoint: dequantized (bf16/f32) with the original names, or with the
        // experts re-packed to compressed-tensors INT4 when every block is Q4_0.
        .target(
            name: "GGUFUnpack",
            dependencies: ["FileIO", "Checkpoint", "Forward", "GGUF", "GGUFModel", "JSONCore", "Manifests", "ModelConfig", "Quantization", "Requantize", "TensorCore"],
            swiftSettings: strict),

        // k2pack logits: reference logits from text or ids, run layer-major, written as a reference dump.
        .target(name: "ReferenceLogits", dependencies: ["Checkpoint", "FileIO", "Forward", "PackFormat", "Parity", "TensorCore", "Tokenizer"], swiftSettings: strict),

        // Layer 6, reports: inspect and verify render what the earlier layers found.
        // inspect and verify: reports over a checkpoint, a k2pack folder or a shard set (findings, text, JSON).
        // Above the writers: it reads their records; no writer depends on it.
        .target(
            name: "Inspection",
            dependencies: ["TensorCore", "JSONCore", "FileIO", "Checkpoint", "ModelConfig", "Quantization", "LoadedModel", "PackFormat", "Repack", "Shard", "GGUF", "GGUFModel", "Manifests"],
            swiftSettings: strict),

        // Layer 7, the commands: parsing, cross-option checks, output. A library so that tests parse commands
        // in-process; the executable is only the entry point.
        .target(
            name: "K2PackCLI",
            dependencies: [
                "Inspection", "LoadedModel", "FileIO", "Checkpoint", "ModelConfig", "Repack", "PackFormat", "Forward", "ModelStore", "Parity", "Requantize", "Shard", "Tokenizer", "GGUF", "GGUFModel", "GGUFConvert", "GGUFUnpack", "ReferenceLogits", "Vision",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strict),
        .executableTarget(name: "k2pack", dependencies: ["K2PackCLI"], swiftSettings: strict),

        .target(name: "TestSupport", dependencies: ["FileIO", "Checkpoint"], path: "Tests/TestSupport"),
        .testTarget(name: "TensorCoreTests", dependencies: ["TensorCore", "TestSupport"]),
        .testTarget(name: "JSONCoreTests", dependencies: ["JSONCore"]),
        .testTarget(name: "FileIOTests", dependencies: ["FileIO", "TestSupport"]),
        .testTarget(name: "CheckpointTests", dependencies: ["Checkpoint", "FileIO", "JSONCore", "TestSupport"]),
        .testTarget(name: "ModelConfigTests", dependencies: ["ModelConfig", "TestSupport"]),
        .testTarget(name: "QuantizationTests", dependencies: ["Quantization", "Checkpoint", "TestSupport"]),
        .testTarget(name: "CLibraryTests", dependencies: ["Archive", "Forward", "Parity"]),
        .testTarget(name: "PackFormatTests", dependencies: ["PackFormat", "Repack", "Inspection", "FileIO", "Checkpoint", "TestSupport"]),
        .testTarget(name: "LoadedModelTests", dependencies: ["LoadedModel", "Checkpoint", "TensorCore", "TestSupport"]),
        .testTarget(name: "InspectionTests", dependencies: ["Inspection", "LoadedModel", "FileIO", "TestSupport"]),
        .testTarget(name: "ForwardTests", dependencies: ["Checkpoint", "Forward", "ModelStore", "PackFormat", "Parity", "Requantize", "Shard", "Repack", "TestSupport"]),
        .testTarget(name: "RequantizeTests", dependencies: ["Requantize", "TensorCore", "Checkpoint", "Forward", "ModelStore", "Parity", "TestSupport"]),
        .testTarget(
            name: "ShardTests", dependencies: ["Shard", "Inspection", "LoadedModel", "ModelConfig", "Forward", "ModelStore", "PackFormat", "Parity", "Repack", "TestSupport"]),
        .testTarget(name: "EndToEndTests", dependencies: ["TestSupport", "FileIO", "Parity"]),
        .testTarget(name: "CLITests", dependencies: ["K2PackCLI", "PackFormat", "Shard", "TestSupport", .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        .testTarget(name: "GGUFTests", dependencies: ["GGUF", "Checkpoint", "FileIO", "TestSupport", "GGUFModel", "Forward", "ModelStore", "Parity", "Inspection"]),
        .testTarget(name: "LogitsTests", dependencies: ["ReferenceLogits", "Forward", "ModelStore", "Parity", "Tokenizer", "TestSupport"]),
        .testTarget(name: "GGUFUnpackTests", dependencies: ["GGUFUnpack", "GGUF", "GGUFModel", "Checkpoint", "FileIO", "Forward", "ModelStore", "Parity", "Requantize", "Inspection", "LoadedModel", "TensorCore", "K2PackCLI", "TestSupport", .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        .testTarget(name: "GGUFConvertTests", dependencies: ["GGUFConvert", "GGUFUnpack", "GGUF", "GGUFModel", "Checkpoint", "FileIO", "Tokenizer", "TestSupport"]),
        .testTarget(name: "TokenizerTests", dependencies: ["Tokenizer", "JSONCore", "Checkpoint", "TestSupport"]),
    ],
    swiftLanguageModes: [.v6]
)
