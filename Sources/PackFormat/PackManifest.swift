import Checkpoint
import FileIO
import Foundation
import JSONCore
import TensorCore

/// `k2pack.json`: the folder-level record of a converted checkpoint, written last (its presence means the
/// conversion finished).
public struct PackManifest: Codable, Sendable, Equatable {
    public static let fileName = "k2pack.json"
    /// Folder holding the verbatim source headers (and index) that make export byte-identical.
    public static let sourceFolder = "source"
    public static let headerSuffix = ".header"
    /// A shard set's record, in the set's folder (`ShardSetManifest`).
    public static let setFileName = "shards.json"
    /// Versions of this record a reader accepts: 1, and 2 when the folder carries files (`carried`; an older
    /// reader, which knows only 1, refuses such a folder instead of exporting it without them). `.k2p` files
    /// stay at `PackSpec.version`.
    public static let versions = 1...2

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
    /// The files it holds besides tensors, byte for byte (tokenizer, chat template, remote code, docs, …); absent
    /// (version 1) when there are none.
    public var carriedFiles: [CarriedFile]?

    public var carried: [CarriedFile] { carriedFiles ?? [] }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case format, version, architecture, files
        case sourceShards = "source_shards"
        case sourceIndex = "source_index"
        case shard
        case carriedFiles = "carried"
    }

    public init(
        architecture: String, files: [String], sourceShards: [String], sourceIndex: Bool, shard: ShardRecord? = nil, carried: [CarriedFile] = []
    ) {
        self.architecture = architecture
        self.files = files
        self.sourceShards = sourceShards
        self.sourceIndex = sourceIndex
        self.shard = shard
        carriedFiles = carried.isEmpty ? nil : carried
        version = carried.isEmpty ? 1 : 2
    }

    public static func read(folder: String) throws -> PackManifest {
        let path = folder + "/" + fileName
        guard FileManager.default.fileExists(atPath: path) else {
            throw PackError.notPack(file: path, reason: "no \(fileName): not a k2pack folder, or its conversion did not finish")
        }
        let bytes = try ReadOnlyFile(folder: folder, name: fileName).readAll()
        let manifest: PackManifest
        do { manifest = try StrictJSON.decode(PackManifest.self, from: bytes) } catch {
            throw PackError.notPack(file: path, reason: "not a valid \(fileName): \(error.description)")
        }
        guard manifest.format == "k2pack", versions.contains(manifest.version) else {
            throw PackError.notPack(
                file: path, reason: "folder record version \(manifest.version) is not supported (this build reads versions \(versions.lowerBound) to \(versions.upperBound))")
        }
        if let reason = carriedVersionProblem(version: manifest.version, carried: manifest.carriedFiles) {
            throw PackError.notPack(file: path, reason: reason)
        }
        if let reason = manifest.namesProblem() { throw PackError.notPack(file: path, reason: reason) }
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


    /// A record of version 1 lists no carried files; one of version 2 lists at least one.
    public static func carriedVersionProblem(version: Int, carried: [CarriedFile]?) -> String? {
        switch (version, carried) {
        case (1, nil): nil
        case (1, _): "version 1 records no carried files, but this record lists some"
        case (_, nil): "version \(version) records carried files, but this record has no carried list"
        case (_, let list?) where list.isEmpty: "version \(version) records carried files, but this record's carried list is empty"
        default: nil
        }
    }

    /// The names every folder record (and shard set record) must not take for its data files, source shards or
    /// carried files: the folder's own records, and what export writes besides the shards.
    public static let reservedNames = [fileName, setFileName, CheckpointDirectory.configFileName, ShardIndex.fileName, sourceFolder]

    /// Why the record's names are unsafe, or nil. Data files and source shards: plain names, each once (as
    /// bytes), none reserved. Carried files: see `CarriedFiles.problem`; their top-level names may also not be a
    /// data file, a source shard (export writes both into one folder) or one of `alsoReserved`.
    public func namesProblem(alsoReserved: [String] = []) -> String? {
        Self.namesProblem(files: files, sourceShards: sourceShards, carried: carried.map(\.path), alsoReserved: alsoReserved)
    }

    public static func namesProblem(files: [String], sourceShards: [String], carried: [String], alsoReserved: [String] = []) -> String? {
        let reserved = Set(reservedNames.map { Array($0.utf8) })
        for (list, what) in [(files, "data file"), (sourceShards, "source shard")] {
            var seen: Set<[UInt8]> = []
            for name in list {
                guard ShardIndex.isPlainFileName(name) else { return "\(what) name \"\(displayed(name))\" is not a plain name inside the folder" }
                guard !reserved.contains(Array(name.utf8)) else { return "\(what) name \"\(displayed(name))\" is reserved for the folder's own records" }
                guard seen.insert(Array(name.utf8)).inserted else { return "\(what) \"\(displayed(name))\" is listed twice" }
            }
        }
        return CarriedFiles.problem(paths: carried, reserved: reservedNames + files + sourceShards + alsoReserved)
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

    enum CodingKeys: String, CodingKey, CaseIterable {
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
