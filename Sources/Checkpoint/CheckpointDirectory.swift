import Foundation
import TensorCore

/// Where a tensor lives: which shard, and which entry of that shard's header.
public struct TensorLocation: Sendable, Hashable {
    public var shard: Int
    public var entry: Int
}

/// A Hugging Face checkpoint folder: config.json, the index (or a single safetensors file) and its shards.
///
/// Opening reads every shard's header in parallel and cross-checks index and headers. Problems with one shard
/// do not stop the others: they are collected in `problems`; only a folder that is not a checkpoint at all throws.
public final class CheckpointDirectory: Sendable {
    public let path: String
    /// nil for a single-file checkpoint.
    public let index: ShardIndex?
    /// Every shard the checkpoint consists of (from the index, or the folder's `.safetensors` files).
    public let shardNames: [String]
    /// Opened shards, parallel to `shardNames`; nil where the shard is missing or invalid.
    public let shards: [SafetensorsFile?]
    /// `config.json`'s bytes, when the folder has one.
    public let configBytes: [UInt8]?
    public let problems: [CheckpointError]
    public let warnings: [Warning]

    /// Something odd that does not make the checkpoint wrong.
    public struct Warning: Sendable, Equatable {
        /// `index_total_size` or `unlisted_shard`.
        public var code: String
        public var file: String
        public var message: String
    }
    /// Tensor name → location, over all opened shards (first occurrence wins).
    public let locations: [String: TensorLocation]

    public static let configFileName = "config.json"

    public init(path: String) throws(CheckpointError) {
        self.path = path
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw .io(path: path, operation: "open", reason: "no such file or directory")
        }
        guard isDirectory.boolValue else {
            throw .notACheckpoint(path: path, reason: "expected a folder holding config.json and safetensors files")
        }
        let listing: [String]
        do {
            listing = try FileManager.default.contentsOfDirectory(atPath: path).sorted()
        } catch {
            throw .io(path: path, operation: "list", reason: error.localizedDescription)
        }

        var problems: [CheckpointError] = []
        var warnings: [Warning] = []
        // The index and the shard headers are read at the same time: every `.safetensors` file in the folder is
        // opened while the index is parsed, then the index decides which of them make up the checkpoint.
        // Files whose symlinks lead outside the folder are not opened (FolderLinks).
        var outside: Set<String> = []
        for name in listing where name.hasSuffix(".safetensors") || name == ShardIndex.fileName || name == Self.configFileName {
            do throws(CheckpointError) { try FolderLinks.check(folder: path, name: name) } catch {
                problems.append(error)
                outside.insert(name)
            }
        }
        let hasIndex = listing.contains(ShardIndex.fileName) && !outside.contains(ShardIndex.fileName)
        let files = listing.filter { $0.hasSuffix(".safetensors") && !outside.contains($0) }
        enum Loaded: Sendable {
            case index(Result<ShardIndex, CheckpointError>)
            case shard(Result<SafetensorsFile, CheckpointError>)
        }
        // The index (the longest single job) goes first.
        let offset = hasIndex ? 1 : 0
        let loaded: [Loaded] = parallelMap(count: files.count + offset) { i in
            if i < offset {
                return .index(Result { () throws(CheckpointError) -> ShardIndex in
                    try ShardIndex.parse(try ReadOnlyFile(path: path + "/" + ShardIndex.fileName).readAll())
                })
            }
            let file = files[i - offset]
            return .shard(Result { () throws(CheckpointError) -> SafetensorsFile in
                try SafetensorsFile(path: path + "/" + file, name: file)
            })
        }
        var byFile: [String: Result<SafetensorsFile, CheckpointError>] = [:]
        var index: ShardIndex?
        for (i, item) in loaded.enumerated() {
            switch item {
            case .index(let result): index = try result.get()
            case .shard(let result): byFile[files[i - offset]] = result
            }
        }
        let names: [String]
        if let index {
            names = index.shardNames
            // Files the index names that were not parsed above (no .safetensors suffix): they are shards too.
            let extra = names.filter { listing.contains($0) && byFile[$0] == nil }
            let results = parallelMap(count: extra.count) { i in
                Result { () throws(CheckpointError) -> SafetensorsFile in try SafetensorsFile(path: path + "/" + extra[i], name: extra[i]) }
            }
            for (name, result) in zip(extra, results) { byFile[name] = result }
            let listed = Set(names)
            for file in files where !listed.contains(file) {
                warnings.append(Warning(code: "unlisted_shard", file: file, message: "\(file): a .safetensors file the index does not list; ignored"))
            }
        } else {
            names = files
            guard !names.isEmpty else {
                if let first = problems.first { throw first }
                throw .notACheckpoint(path: path, reason: "no \(ShardIndex.fileName) and no .safetensors files")
            }
        }
        self.index = index
        self.shardNames = names
        self.configBytes =
            listing.contains(Self.configFileName) && !outside.contains(Self.configFileName)
            ? try ReadOnlyFile(path: path + "/" + Self.configFileName).readAll() : nil

        let opened: [Result<SafetensorsFile, CheckpointError>?] = names.map { byFile[$0] }
        var shards: [SafetensorsFile?] = []
        var missing: [Int] = []
        for (i, result) in opened.enumerated() {
            switch result {
            case .none:
                shards.append(nil)
                missing.append(i)
            case .success(let file)?:
                shards.append(file)
            case .failure(let error)?:
                shards.append(nil)
                problems.append(error)
            }
        }
        self.shards = shards

        // Locations, and tensors that appear in two shards.
        var locations: [String: TensorLocation] = [:]
        locations.reserveCapacity(index?.weightMap.count ?? 0)
        for (s, shard) in shards.enumerated() {
            guard let shard else { continue }
            let tensors = shard.tensors
            for e in tensors.indices {
                let entry = tensors[e]
                // One hash per tensor: insert, and put the first location back in the rare case of a duplicate.
                if let first = locations.updateValue(TensorLocation(shard: s, entry: e), forKey: entry.name) {
                    locations[entry.name] = first
                    problems.append(.duplicateTensor(tensor: entry.name, firstShard: names[first.shard], secondShard: names[s]))
                }
            }
        }
        self.locations = locations

        if let index {
            problems += Self.crossCheck(index: index, names: names, shards: shards, missing: missing, locations: locations)
            let dataBytes = shards.compactMap { $0?.header.tensors.reduce(0) { $0 + $1.byteCount } }.reduce(0, +)
            if let total = index.totalSize, missing.isEmpty, shards.allSatisfy({ $0 != nil }), total != dataBytes {
                warnings.append(Warning(
                    code: "index_total_size", file: ShardIndex.fileName,
                    message: "\(ShardIndex.fileName): metadata.total_size is \(total) but the shards' tensors hold \(dataBytes) bytes"))
            }
        } else if let missingName = missing.first {
            problems.append(.io(path: names[missingName], operation: "open", reason: "no such file"))
        }
        self.problems = problems
        self.warnings = warnings
    }

    /// Index ⇄ headers: every index entry is in the named shard, every shard tensor is in the index.
    private static func crossCheck(
        index: ShardIndex, names: [String], shards: [SafetensorsFile?], missing: [Int],
        locations: [String: TensorLocation]
    ) -> [CheckpointError] {
        var problems: [CheckpointError] = []
        // One lookup per shard tensor: in the index, and under this shard's name? Shards in parallel.
        let perShard = parallelMap(count: shards.count) { s -> (problems: [CheckpointError], matched: Int) in
            guard let shard = shards[s] else { return ([], 0) }
            var problems: [CheckpointError] = []
            var matched = 0
            for entry in shard.tensors {
                guard let listed = index.weightMap[entry.name] else {
                    problems.append(.shardTensorNotInIndex(tensor: entry.name, shard: names[s]))
                    continue
                }
                if listed == names[s] { matched += 1 }
            }
            return (problems, matched)
        }
        var matched = 0
        for shard in perShard {
            problems += shard.problems
            matched += shard.matched
        }
        // Index entries not accounted for: their shard is missing, unreadable, or does not hold them.
        if matched != index.weightMap.count {
            let opened = Set(names.indices.filter { shards[$0] != nil }.map { names[$0] })
            let missingNames = Set(missing.map { names[$0] })
            var missingCounts: [String: (count: Int, example: String)] = [:]
            for (tensor, shardName) in index.weightMap {
                if missingNames.contains(shardName) {
                    let prior = missingCounts[shardName]
                    missingCounts[shardName] = ((prior?.count ?? 0) + 1, min(prior?.example ?? tensor, tensor))
                    continue
                }
                guard opened.contains(shardName) else { continue }  // unreadable shard: reported already
                let location = locations[tensor]
                if let location, names[location.shard] == shardName { continue }
                let holds = location != nil && shards[names.firstIndex(of: shardName)!]!.tensors.contains { $0.name == tensor }
                if !holds {
                    problems.append(.indexTensorNotInShard(tensor: tensor, shard: shardName, foundIn: location.map { names[$0.shard] }))
                }
            }
            for name in missingCounts.keys.sorted() {
                let info = missingCounts[name]!
                problems.append(.shardMissing(shard: name, tensorCount: info.count, example: info.example))
            }
        }
        // The index is a dictionary: sort what was found so reports are stable.
        problems.sort { ($0.file ?? "", $0.description) < ($1.file ?? "", $1.description) }
        return problems
    }

    /// The header entry and shard of a tensor, if any opened shard holds it.
    public func entry(named name: String) -> (shard: SafetensorsFile, entry: TensorEntry)? {
        guard let location = locations[name], let shard = shards[location.shard] else { return nil }
        return (shard, shard.tensors[location.entry])
    }

    /// All tensors of all opened shards.
    public var allEntries: [(shard: Int, entry: TensorEntry)] {
        shards.enumerated().flatMap { s, shard in (shard?.tensors ?? []).map { (s, $0) } }
    }
}

extension ReadOnlyFile {
    /// The whole file's bytes (for small files: config.json, the index).
    public func readAll() throws(CheckpointError) -> [UInt8] {
        guard byteCount <= 256 << 20 else {
            throw .io(path: path, operation: "read", reason: "\(byteCount) bytes is too large for a JSON file (limit 256 MiB)")
        }
        // Not zero-filled first: every byte is read into it (or the read throws).
        var failure: CheckpointError?
        let bytes = [UInt8](unsafeUninitializedCapacity: byteCount) { buffer, count in
            do throws(CheckpointError) {
                try read(into: UnsafeMutableRawBufferPointer(buffer), at: 0)
                count = byteCount
            } catch {
                failure = error
                count = 0
            }
        }
        if let failure { throw failure }
        return bytes
    }
}
