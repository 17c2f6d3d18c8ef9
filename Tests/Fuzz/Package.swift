// swift-tools-version: 6.0
// libFuzzer targets for every reader of outside bytes. Build and run with Tests/Fuzz/run.sh (it passes
// -sanitize=fuzzer,address to every module, so the readers themselves are instrumented).
import PackageDescription

let readers: Target.Dependency = .product(name: "K2PackReaders", package: "main")

let package = Package(
    name: "k2pack-fuzz",
    dependencies: [.package(name: "main", path: "../..")],
    targets: [
        .target(name: "FuzzSupport", path: "Sources/FuzzSupport"),
        .executableTarget(name: "FuzzSafetensors", dependencies: [readers, "FuzzSupport"]),
        .executableTarget(name: "FuzzIndex", dependencies: [readers, "FuzzSupport"]),
        .executableTarget(name: "FuzzConfig", dependencies: [readers, "FuzzSupport"]),
        .executableTarget(name: "FuzzPackFile", dependencies: [readers, "FuzzSupport"]),
        .executableTarget(name: "FuzzReferenceDump", dependencies: [readers, "FuzzSupport"]),
        .executableTarget(name: "FuzzShardSet", dependencies: [readers, "FuzzSupport"]),
        .executableTarget(name: "FuzzConfigValidation", dependencies: [readers, "FuzzSupport"]),
        .executableTarget(name: "FuzzTokenizer", dependencies: [readers, "FuzzSupport"]),
        .executableTarget(name: "FuzzGGUF", dependencies: [readers, "FuzzSupport"]),
        .executableTarget(name: "FuzzGGUFVocabulary", dependencies: [readers, "FuzzSupport"]),
    ],
    swiftLanguageModes: [.v6]
)
