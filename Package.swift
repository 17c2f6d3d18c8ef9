// swift-tools-version: 6.0
import PackageDescription

let strict: [SwiftSetting] = [.enableUpcomingFeature("ExistentialAny")]

let package = Package(
    name: "k2pack",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "k2pack", targets: ["k2pack"]),
        // The readers of outside bytes, for the fuzz targets in Tests/Fuzz (a separate package).
        .library(name: "K2PackReaders", targets: ["Checkpoint", "JSONCore", "ModelConfig", "PackFormat", "Parity", "Forward", "Repack", "Shard", "Tokenizer"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // C libraries: module map + shim.h only; each has exactly one Swift importer.
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CHDF5", pkgConfig: "hdf5", providers: [.apt(["libhdf5-dev"])]),
        .systemLibrary(name: "CCrypto", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),
        // Our own C: the SIGBUS handler and the registry of temporary files and mapped inputs it reads
        // (async-signal-safe code Swift cannot express). Its one Swift importer is Checkpoint (FatalSignals).
        .target(name: "CSignals"),

        // Bottom layer: dtypes, shapes, checked size arithmetic. No I/O.
        .target(name: "TensorCore", swiftSettings: strict),
        // Strict, bounded JSON reading (duplicate keys, depth limit, exact integers).
        .target(name: "JSONCore", dependencies: ["TensorCore"], swiftSettings: strict),
        // safetensors files, index.json, checkpoint directories, hashing of files.
        .target(name: "Checkpoint", dependencies: ["TensorCore", "JSONCore", "CCrypto", "CSignals"], swiftSettings: strict),
        // Architecture facts as data (JSON resources).
        .target(name: "Manifests", path: "Manifests", resources: [.copy("json")], swiftSettings: strict),
        // config.json → typed config; manifests → expected tensor list.
        .target(name: "ModelConfig", dependencies: ["TensorCore", "JSONCore", "Manifests"], swiftSettings: strict),
        // INT4 pack-quantized math: nibbles, groups, scales.
        .target(name: "Quantization", dependencies: ["TensorCore"], swiftSettings: strict),
        // Our on-disk format: spec, checksums, atomic writer, validating reader (docs/FORMAT.md).
        .target(name: "PackFormat", dependencies: ["TensorCore", "JSONCore", "Checkpoint", "Archive"], swiftSettings: strict),
        // zstd framing (only CZstd importer).
        .target(name: "Archive", dependencies: ["CZstd"], swiftSettings: strict),
        // CPU reference forward pass (only COpenBLAS importer).
        .target(name: "Forward", dependencies: ["COpenBLAS", "TensorCore", "JSONCore", "ModelConfig", "Quantization"], swiftSettings: strict),
        // HDF5 reference dumps, layer-by-layer parity and logit statistics (only CHDF5 importer).
        .target(name: "Parity", dependencies: ["CHDF5", "Forward"], swiftSettings: strict),
        // inspect and verify: reports over a checkpoint.
        .target(
            name: "Inspection",
            dependencies: ["TensorCore", "JSONCore", "Checkpoint", "ModelConfig", "Quantization"],
            swiftSettings: strict),
        // convert / export between Hugging Face folders and the k2pack format.
        .target(
            name: "Repack",
            dependencies: ["Checkpoint", "JSONCore", "ModelConfig", "Inspection", "PackFormat", "TensorCore"],
            swiftSettings: strict),
        // quantize / dequantize / verify --requantize: BF16 ⇄ native INT4, bit-exact with compressed-tensors.
        .target(
            name: "Requantize",
            dependencies: ["Checkpoint", "Inspection", "JSONCore", "ModelConfig", "PackFormat", "Quantization", "Repack", "TensorCore"],
            swiftSettings: strict),
        // Per-GPU sharding plans from the manifest's tp / tp_unit / ep rules.
        .target(
            name: "Shard",
            dependencies: ["Checkpoint", "Forward", "Inspection", "JSONCore", "ModelConfig", "ModelStore", "PackFormat", "Repack", "TensorCore"],
            swiftSettings: strict),
        // Tensors for the forward pass from a Hugging Face folder or a k2pack folder.
        .target(
            name: "ModelStore",
            dependencies: ["Checkpoint", "Forward", "Inspection", "ModelConfig", "PackFormat", "Repack", "TensorCore"],
            swiftSettings: strict),
        // The Kimi tokenizer (tiktoken.model + tokenizer_config.json), bit-exact with tiktoken.
        .target(name: "Tokenizer", dependencies: ["Checkpoint", "JSONCore", "Manifests", "TensorCore"], swiftSettings: strict),
        // k2pack logits: reference logits from text or ids, run layer-major, written as a reference dump.
        .target(name: "ReferenceLogits", dependencies: ["Forward", "PackFormat", "Parity", "TensorCore", "Tokenizer"], swiftSettings: strict),
        // The commands: parsing, cross-option checks, output. A library so that tests parse commands in-process.
        .target(
            name: "K2PackCLI",
            dependencies: [
                "Inspection", "Checkpoint", "ModelConfig", "Repack", "PackFormat", "Forward", "ModelStore", "Parity", "ReferenceLogits", "Requantize", "Shard", "Tokenizer",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strict),
        // The executable: only the entry point.
        .executableTarget(name: "k2pack", dependencies: ["K2PackCLI"], swiftSettings: strict),

        .target(name: "TestSupport", dependencies: ["Checkpoint"], path: "Tests/TestSupport"),
        .testTarget(name: "TensorCoreTests", dependencies: ["TensorCore", "TestSupport"]),
        .testTarget(name: "JSONCoreTests", dependencies: ["JSONCore"]),
        .testTarget(name: "CheckpointTests", dependencies: ["Checkpoint", "JSONCore", "TestSupport"]),
        .testTarget(name: "ModelConfigTests", dependencies: ["ModelConfig", "TestSupport"]),
        .testTarget(name: "QuantizationTests", dependencies: ["Quantization", "Checkpoint", "TestSupport"]),
        .testTarget(name: "CLibraryTests", dependencies: ["Archive", "Forward", "Parity"]),
        .testTarget(name: "PackFormatTests", dependencies: ["PackFormat", "Repack", "Checkpoint", "TestSupport"]),
        .testTarget(name: "InspectionTests", dependencies: ["Inspection", "TestSupport"]),
        .testTarget(name: "ForwardTests", dependencies: ["Checkpoint", "Forward", "ModelStore", "Parity", "Requantize", "Shard", "Repack", "TestSupport"]),
        .testTarget(name: "RequantizeTests", dependencies: ["Requantize", "TensorCore", "Checkpoint", "Forward", "ModelStore", "Parity", "TestSupport"]),
        .testTarget(
            name: "ShardTests", dependencies: ["Shard", "Inspection", "ModelConfig", "Forward", "ModelStore", "PackFormat", "Parity", "Repack", "TestSupport"]),
        .testTarget(name: "EndToEndTests", dependencies: ["TestSupport", "Parity"]),
        .testTarget(name: "CLITests", dependencies: ["K2PackCLI", "Shard", .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        .testTarget(name: "LogitsTests", dependencies: ["ReferenceLogits", "Forward", "ModelStore", "Parity", "Tokenizer", "TestSupport"]),
        .testTarget(name: "TokenizerTests", dependencies: ["Tokenizer", "JSONCore", "Checkpoint", "TestSupport"]),
    ],
    swiftLanguageModes: [.v6]
)
