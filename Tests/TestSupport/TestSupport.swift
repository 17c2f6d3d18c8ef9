import Checkpoint
import FileIO
import Foundation

/// Paths and file helpers shared by the test targets.
public enum TestPaths {
    /// The package root (found from this file's location).
    public static let packageRoot: URL = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url
    }()

    public static var fixtures: URL { packageRoot.appendingPathComponent("Fixtures") }

    public static func fixture(_ name: String) -> String { fixtures.appendingPathComponent(name).path }

    /// The built `k2pack` executable next to the test bundle, if it has been built.
    public static var executable: URL? {
        let candidates = [
            Bundle.main.bundleURL.appendingPathComponent("k2pack"),
            Bundle.main.bundleURL.deletingLastPathComponent().appendingPathComponent("k2pack"),
            packageRoot.appendingPathComponent(".build/debug/k2pack"),
        ]
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0.path) }
    }
}

/// A fresh temporary folder, removed when the value is released.
public final class TemporaryDirectory: @unchecked Sendable {
    public let url: URL
    public var path: String { url.path }

    public init() {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("k2pack-test-\(UUID().uuidString)")
        try! FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(at: url) }

    @discardableResult
    public func write(_ name: String, _ bytes: [UInt8]) -> String {
        let file = url.appendingPathComponent(name)
        // A name with folders in it ("full/x") gets its folders.
        try! FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
        try! Data(bytes).write(to: file)
        return file.path
    }

    /// Copies a fixture folder into this directory and returns the copy's path.
    public func copy(fixture name: String) -> String {
        let target = url.appendingPathComponent((name as NSString).lastPathComponent)
        try! FileManager.default.copyItem(atPath: TestPaths.fixture(name), toPath: target.path)
        return target.path
    }
}

/// Builds safetensors bytes by hand, including broken ones.
public struct SafetensorsBuilder: Sendable {
    public struct Tensor: Sendable {
        public var name: String
        public var dtype: String
        public var shape: [Int]
        public var data: [UInt8]
        public init(_ name: String, _ dtype: String, _ shape: [Int], _ data: [UInt8]) {
            self.name = name
            self.dtype = dtype
            self.shape = shape
            self.data = data
        }
    }

    public var tensors: [Tensor] = []
    public var metadata: [String: String]? = ["format": "pt"]

    public init(_ tensors: [Tensor] = []) { self.tensors = tensors }

    /// The JSON header text with contiguous offsets in the order given.
    public func headerJSON() -> String {
        var parts: [String] = []
        if let metadata {
            let items = metadata.sorted { $0.key < $1.key }.map { "\"\($0.key)\":\"\($0.value)\"" }
            parts.append("\"__metadata__\":{\(items.joined(separator: ","))}")
        }
        var offset = 0
        for t in tensors {
            let shape = t.shape.map(String.init).joined(separator: ",")
            parts.append("\"\(t.name)\":{\"dtype\":\"\(t.dtype)\",\"shape\":[\(shape)],\"data_offsets\":[\(offset),\(offset + t.data.count)]}")
            offset += t.data.count
        }
        return "{" + parts.joined(separator: ",") + "}"
    }

    /// The file: 8-byte length, header (padded with spaces to a multiple of 8), data.
    public func bytes(header: String? = nil, pad: Bool = true) -> [UInt8] {
        var json = Array((header ?? headerJSON()).utf8)
        if pad { while json.count % 8 != 0 { json.append(0x20) } }
        return Self.file(headerBytes: json, data: tensors.flatMap(\.data))
    }

    public static func file(headerBytes: [UInt8], data: [UInt8]) -> [UInt8] {
        var n = UInt64(headerBytes.count).littleEndian
        let prefix = withUnsafeBytes(of: &n) { Array($0) }
        return prefix + headerBytes + data
    }
}

/// Every regular file under `folder` (hidden ones too), relative path → bytes.
public func folderContents(_ folder: String) throws -> [String: Data] {
    var out: [String: Data] = [:]
    let fm = FileManager.default
    guard let paths = fm.enumerator(atPath: folder) else { return out }
    for case let path as String in paths {
        var isDirectory: ObjCBool = false
        if fm.fileExists(atPath: folder + "/" + path, isDirectory: &isDirectory), !isDirectory.boolValue {
            out[path] = fm.contents(atPath: folder + "/" + path)
        }
    }
    return out
}

/// A copy of a fixture laid out as huggingface_hub caches it: `models--org--tiny/blobs/<hash>` and
/// `models--org--tiny/snapshots/rev/<file>` → `../../blobs/<hash>`, large files' blobs named by their SHA-256
/// (small ones by a 40-digit name, as git's SHA-1). Returns the snapshot folder and each file's blob path.
public func makeCacheSnapshot(of fixture: String, in root: String) throws -> (snapshot: String, blobs: [String: String]) {
    let repo = root + "/models--org--tiny", snap = repo + "/snapshots/rev"
    try FileManager.default.createDirectory(atPath: repo + "/blobs", withIntermediateDirectories: true)
    try FileManager.default.createDirectory(atPath: snap, withIntermediateDirectories: true)
    var blobs: [String: String] = [:]
    // Files in sub-folders (docs/, figures/) link to the same blobs/, one `../` further up per level.
    for name in try folderContents(TestPaths.fixture(fixture)).keys.sorted() {
        let source = TestPaths.fixture(fixture) + "/" + name
        let digest = try ReadOnlyFile(path: source).sha256Hex()
        let blob = name.hasSuffix(".safetensors") ? digest : String(digest.prefix(40))
        if !FileManager.default.fileExists(atPath: repo + "/blobs/" + blob) {
            try FileManager.default.copyItem(atPath: source, toPath: repo + "/blobs/" + blob)
        }
        let depth = name.split(separator: "/").count - 1
        if depth > 0 {
            try FileManager.default.createDirectory(atPath: snap + "/" + (name as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        }
        let up = String(repeating: "../", count: depth + 2)
        try FileManager.default.createSymbolicLink(atPath: snap + "/" + name, withDestinationPath: up + "blobs/" + blob)
        blobs[name] = repo + "/blobs/" + blob
    }
    return (snap, blobs)
}

/// The scalars of `text` a terminal would act on rather than draw: C0/C1 controls and DEL (line feed aside),
/// bidi and other format characters (category Cf), line and paragraph separators. Empty for text made with
/// `displayed(_:)`.
public func rawTerminalControls(_ text: String) -> [Unicode.Scalar] {
    text.unicodeScalars.filter { s in
        guard s != "\n" else { return false }
        switch s.properties.generalCategory {
        case .control, .format, .lineSeparator, .paragraphSeparator: return true
        default: return false
        }
    }
}

/// A file's bytes as text, or nil when it cannot be read.
public func fileText(_ path: String) -> String? {
    FileManager.default.contents(atPath: path).map { String(decoding: $0, as: UTF8.self) }
}

/// Whether anything (a link included, not followed) is at `path`.
public func somethingAt(_ path: String) -> Bool {
    var st = stat()
    return lstat(path, &st) == 0
}

/// SplitMix64: a small deterministic generator for reproducible test positions.
public struct SeededGenerator: RandomNumberGenerator {
    public var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
