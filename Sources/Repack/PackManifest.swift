import Checkpoint
import Foundation
import PackFormat

/// `k2pack.json`: the folder-level record of a converted checkpoint, written last (its presence means the
/// conversion finished).
public struct PackManifest: Codable, Sendable, Equatable {
    public static let fileName = "k2pack.json"
    /// Folder holding the verbatim source headers (and index) that make export byte-identical.
    public static let sourceFolder = "source"
    public static let headerSuffix = ".header"

    public var format = "k2pack"
    public var version = Int(PackSpec.version)
    public var architecture: String
    /// The data files, in the order they were planned.
    public var files: [String]
    /// The source checkpoint's shard files, in their order.
    public var sourceShards: [String]
    /// Whether the source had a `model.safetensors.index.json` (kept verbatim under `source/`).
    public var sourceIndex: Bool

    enum CodingKeys: String, CodingKey {
        case format, version, architecture, files
        case sourceShards = "source_shards"
        case sourceIndex = "source_index"
    }

    public static func read(folder: String) throws -> PackManifest {
        let path = folder + "/" + fileName
        guard let data = FileManager.default.contents(atPath: path) else {
            throw PackError.notPack(file: path, reason: "no \(fileName): not a k2pack folder, or its conversion did not finish")
        }
        let manifest = try JSONDecoder().decode(PackManifest.self, from: data)
        guard manifest.format == "k2pack", manifest.version == Int(PackSpec.version) else {
            throw PackError.unsupportedVersion(file: path, version: UInt32(clamping: manifest.version))
        }
        for name in manifest.files + manifest.sourceShards where !isPlainFileName(name) {
            throw PackError.notPack(file: path, reason: "file name \"\(name)\" is not a plain name inside the folder")
        }
        return manifest
    }

    /// The verbatim header kept for `shard` (length field and JSON), parsed once and validated.
    public static func sourceHeader(folder: String, shard: String) throws -> (bytes: [UInt8], header: SafetensorsHeader) {
        let path = folder + "/" + sourceFolder + "/" + shard + headerSuffix
        guard FileManager.default.fileExists(atPath: path) else {
            throw PackError.notPack(file: path, reason: "the source header kept for export is missing")
        }
        let bytes = try ReadOnlyFile(path: path).readAll()
        let result = bytes.withUnsafeBytes { raw in
            Result { () throws(CheckpointError) -> SafetensorsHeader in try SafetensorsHeader.parse(detached: raw, fileName: shard) }
        }
        return (bytes, try result.get())
    }

    func encoded() throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return Array(try encoder.encode(self)) + [0x0A]
    }
}

func isPlainFileName(_ name: String) -> Bool {
    !name.isEmpty && name != "." && name != ".." && !name.contains("/") && !name.contains("\0")
}
