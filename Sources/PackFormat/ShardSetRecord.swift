import FileIO
import Checkpoint
import Foundation
import JSONCore
import TensorCore

/// How a node's GPUs split the model: `tp × ep` ranks; rank `r` is tensor-parallel rank `r % tp` of expert
/// group `r / tp`.
public struct ShardLayout: Sendable, Codable, Equatable {
    public var tp: Int
    public var ep: Int
    /// Whether every rank holds the vision tower (else rank 0 alone).
    public var visionOnEveryRank: Bool
    public var ranks: Int { tp * ep }
    /// The most ranks (and the largest tp or ep) of a layout: far above any real cluster, so that a plan's
    /// per-rank tables stay small whatever the command line or a shards.json says.
    public static let maxRanks = 4096
    public init(tp: Int, ep: Int, visionOnEveryRank: Bool = true) {
        self.tp = tp
        self.ep = ep
        self.visionOnEveryRank = visionOnEveryRank
    }

    enum CodingKeys: String, CodingKey, CaseIterable { case tp, ep, visionOnEveryRank = "vision_on_every_rank" }
}

/// Why a split is impossible, naming the tensor and the numbers; or what is wrong with a shard set's records
/// (`input`).
public enum ShardError: Error, Equatable, Sendable, CustomStringConvertible {
    case layout(String)
    /// tp or ep below 1, or more than `ShardLayout.maxRanks` ranks.
    case implausibleLayout(tp: Int, ep: Int)
    /// The routed experts do not split into `ep` equal groups.
    case expertsIndivisible(experts: Int, ep: Int)
    /// The checkpoint's config.json is missing or does not describe a known architecture.
    case noUsableConfig
    case indivisible(tensor: String, reason: String)
    case input(String)

    public var description: String {
        switch self {
        case .layout(let reason): "cannot split the model: \(displayed(reason, limit: nil))"
        case let .implausibleLayout(tp, ep): "cannot split the model: tp \(tp) × ep \(ep) is not a plausible layout"
        case let .expertsIndivisible(experts, ep): "cannot split the model: \(experts) routed experts do not divide into \(ep) expert-parallel groups"
        case .noUsableConfig: "the checkpoint has no usable config.json"
        case let .indivisible(tensor, reason): "cannot split \(displayed(tensor)): \(displayed(reason, limit: nil))"
        case .input(let reason): displayed(reason, limit: nil)
        }
    }
}

/// `shards.json`: the record of a shard set, in the set's folder. Rank `r`'s files are in `rank-NNNN/`, each a
/// k2pack folder whose `k2pack.json` names its rank; the source headers (for `--merge`) are kept once, under
/// `source/`, by whoever writes rank 0.
public struct ShardSetManifest: Codable, Sendable, Equatable {
    public static let fileName = PackManifest.setFileName
    public var format = "k2pack-shards"
    public var version = 1
    public var architecture: String
    public var layout: ShardLayout
    public var sourceShards: [String]
    public var sourceIndex: Bool
    /// The checkpoint's files besides tensors, kept in the set's folder for `--merge` (and in every rank's);
    /// absent (version 1) when there are none, version 2 otherwise, as in `k2pack.json`.
    public var carriedFiles: [CarriedFile]?

    public var carried: [CarriedFile] { carriedFiles ?? [] }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case format, version, architecture, layout, sourceShards = "source_shards", sourceIndex = "source_index", carriedFiles = "carried"
    }

    public init(architecture: String, layout: ShardLayout, sourceShards: [String], sourceIndex: Bool, carried: [CarriedFile] = []) {
        self.architecture = architecture
        self.layout = layout
        self.sourceShards = sourceShards
        self.sourceIndex = sourceIndex
        carriedFiles = carried.isEmpty ? nil : carried
        version = carried.isEmpty ? 1 : 2
    }

    /// The names of the rank folders of a layout: a carried file may not take one.
    public static func rankFolders(_ layout: ShardLayout) -> [String] { (0..<layout.ranks).map(rankFolder) }

    public static func rankFolder(_ rank: Int) -> String { "rank-" + String(format: "%04d", rank) }

    public static func read(folder: String) throws -> ShardSetManifest {
        let path = folder + "/" + fileName
        guard FileManager.default.fileExists(atPath: path) else {
            throw ShardError.input("\(displayed(path)): missing: not a shard set, or rank 0 has not finished writing it")
        }
        let bytes = try ReadOnlyFile(folder: folder, name: fileName).readAll()
        let manifest: ShardSetManifest
        do { manifest = try StrictJSON.decode(ShardSetManifest.self, from: bytes) } catch {
            throw ShardError.input("\(displayed(path)): not a valid shard set record: \(error.description)")
        }
        guard manifest.format == "k2pack-shards", PackManifest.versions.contains(manifest.version) else {
            throw ShardError.input("\(displayed(path)): format \(displayed(manifest.format)) version \(manifest.version) is not supported (this build reads k2pack-shards 1 and 2)")
        }
        if let reason = PackManifest.carriedVersionProblem(version: manifest.version, carried: manifest.carriedFiles) {
            throw ShardError.input("\(displayed(path)): \(reason)")
        }
        guard manifest.layout.tp >= 1, manifest.layout.ep >= 1, manifest.layout.tp <= ShardLayout.maxRanks, manifest.layout.ep <= ShardLayout.maxRanks,
            manifest.layout.ranks <= ShardLayout.maxRanks
        else {
            throw ShardError.input("\(displayed(path)): tp \(manifest.layout.tp) × ep \(manifest.layout.ep) is not a plausible layout")
        }
        // Merge writes these names into its output folder: plain names only, each once (as bytes), none reserved.
        if let reason = PackManifest.namesProblem(
            files: [], sourceShards: manifest.sourceShards, carried: manifest.carried.map(\.path), alsoReserved: rankFolders(manifest.layout))
        {
            throw ShardError.input("\(displayed(path)): \(reason)")
        }
        try PackManifest.checkKeptIndex(folder: folder, sourceIndex: manifest.sourceIndex, record: path)
        return manifest
    }

    /// Every rank's finished manifest, checked against the set's layout.
    public func rankManifests(folder: String) throws -> [PackManifest] {
        try (0..<layout.ranks).map { r in
            let rankPath = folder + "/" + Self.rankFolder(r)
            guard FileManager.default.fileExists(atPath: rankPath + "/" + PackManifest.fileName) else {
                throw ShardError.input("\(displayed(rankPath)): rank \(r) of \(layout.ranks) is missing or unfinished (no \(PackManifest.fileName))")
            }
            // The rank folder itself must lie inside the set (its files are then checked inside the rank folder).
            try FolderLinks.check(folder: folder, name: Self.rankFolder(r))
            let manifest = try PackManifest.read(folder: rankPath)
            guard let record = manifest.shard, record.rank == r, record.tp == layout.tp, record.ep == layout.ep else {
                throw ShardError.input("\(displayed(rankPath))/\(PackManifest.fileName): does not describe rank \(r) of tp \(layout.tp) × ep \(layout.ep)")
            }
            return manifest
        }
    }

    public func encoded() throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return Array(try encoder.encode(self)) + [0x0A]
    }
}
