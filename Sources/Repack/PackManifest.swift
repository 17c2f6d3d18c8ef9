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
    /// Present in a rank folder of `k2pack shard`: which rank it is (its sources are that rank's slices; the
    /// source headers are kept once, in the shard set's folder).
    public var shard: ShardRecord?

    enum CodingKeys: String, CodingKey {
        case format, version, architecture, files
        case sourceShards = "source_shards"
        case sourceIndex = "source_index"
        case shard
    }

    public init(architecture: String, files: [String], sourceShards: [String], sourceIndex: Bool, shard: ShardRecord? = nil) {
        self.architecture = architecture
        self.files = files
        self.sourceShards = sourceShards
        self.sourceIndex = sourceIndex
        self.shard = shard
    }

    public static func read(folder: String) throws -> PackManifest {
        let path = folder + "/" + fileName
        guard FileManager.default.fileExists(atPath: path) else {
            throw PackError.notPack(file: path, reason: "no \(fileName): not a k2pack folder, or its conversion did not finish")
        }
        let data = Data(try ReadOnlyFile(folder: folder, name: fileName).readAll())
        let manifest = try JSONDecoder().decode(PackManifest.self, from: data)
        guard manifest.format == "k2pack", manifest.version == Int(PackSpec.version) else {
            throw PackError.unsupportedVersion(file: path, version: UInt32(clamping: manifest.version))
        }
        for name in manifest.files + manifest.sourceShards where !isPlainFileName(name) {
            throw PackError.notPack(file: path, reason: "file name \"\(name)\" is not a plain name inside the folder")
        }
        if manifest.shard == nil { try checkKeptIndex(folder: folder, sourceIndex: manifest.sourceIndex, record: path) }
        return manifest
    }

    /// `source_index` must say whether the source index is kept: false with an index kept would drop it from
    /// the export; true without one would fail the export half-way.
    public static func checkKeptIndex(folder: String, sourceIndex: Bool, record: String) throws {
        let kept = sourceFolder + "/" + ShardIndex.fileName
        let exists = FileManager.default.fileExists(atPath: folder + "/" + kept)
        guard exists == sourceIndex else {
            throw PackError.notPack(
                file: record,
                reason: sourceIndex
                    ? "source_index is true but \(kept) is missing"
                    : "source_index is false but \(kept) is kept: the record and the folder disagree")
        }
    }

    /// The verbatim header kept for `shard` (length field and JSON), parsed once and validated.
    public static func sourceHeader(folder: String, shard: String) throws -> (bytes: [UInt8], header: SafetensorsHeader) {
        let path = folder + "/" + sourceFolder + "/" + shard + headerSuffix
        guard FileManager.default.fileExists(atPath: path) else {
            throw PackError.notPack(file: path, reason: "the source header kept for export is missing")
        }
        let bytes = try ReadOnlyFile(folder: folder, name: sourceFolder + "/" + shard + headerSuffix).readAll()
        let result = bytes.withUnsafeBytes { raw in
            Result { () throws(CheckpointError) -> SafetensorsHeader in try SafetensorsHeader.parse(detached: raw, fileName: shard) }
        }
        return (bytes, try result.get())
    }

    public func encoded() throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return Array(try encoder.encode(self)) + [0x0A]
    }
}

func isPlainFileName(_ name: String) -> Bool {
    !name.isEmpty && name != "." && name != ".." && !name.contains("/") && !name.contains("\0")
}

/// One rank of a shard set: rank `rank` = tensor-parallel rank `tpRank` of expert group `epRank`.
public struct ShardRecord: Codable, Sendable, Equatable {
    public var tp: Int
    public var ep: Int
    public var rank: Int
    public var tpRank: Int
    public var epRank: Int
    /// The routed experts it holds, `[first, end)`.
    public var experts: [Int]
    /// Whether it holds the vision tower.
    public var vision: Bool

    enum CodingKeys: String, CodingKey {
        case tp, ep, rank, tpRank = "tp_rank", epRank = "ep_rank", experts, vision
    }

    public init(tp: Int, ep: Int, rank: Int, experts: [Int], vision: Bool) {
        self.tp = tp
        self.ep = ep
        self.rank = rank
        tpRank = rank % max(tp, 1)
        epRank = rank / max(tp, 1)
        self.experts = experts
        self.vision = vision
    }
}
