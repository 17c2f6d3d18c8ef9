import FileIO
import JSONCore
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
    /// Tensor name (as bytes) → location, over all opened shards (first occurrence wins). Built on first use
    /// when opening did not need it: with an index that accounts for every header entry exactly, no name can be
    /// in two shards, and inspect and verify never look a name up.
    public var locations: [ByteName: TensorLocation] {
        locationTable.withLock { table in
            if let table { return table }
            let built = Self.buildLocations(shards).locations
            table = built
            return built
        }
    }
    private let locationTable: Locked<[ByteName: TensorLocation]?>

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
        // Every file is opened through `ReadOnlyFile(folder:name:)`, which refuses one that resolves outside the
        // folder (FolderLinks); the index and config.json are screened first, so that an index outside the folder
        // is reported and the folder read as if it had none. Names are compared as bytes (ByteName).
        let present = Set(listing.map(ByteName.init))
        func listed(_ name: String) -> Bool { present.contains(ByteName(name)) }
        var outside: Set<ByteName> = []
        for name in [ShardIndex.fileName, Self.configFileName] where listed(name) {
            do throws(FileIOError) { try FolderLinks.check(folder: path, name: name) } catch {
                problems.append(CheckpointError(error))
                outside.insert(ByteName(name))
            }
        }
        let hasIndex = listed(ShardIndex.fileName) && !outside.contains(ByteName(ShardIndex.fileName))
        let files = listing.filter { $0.hasSuffix(".safetensors") }
        enum Loaded: Sendable {
            case index(Result<ShardIndex, CheckpointError>)
            case shard(Result<SafetensorsFile, CheckpointError>)
        }
        // The index (the longest single job) goes first.
        let offset = hasIndex ? 1 : 0
        let loaded: [Loaded] = parallelMap(count: files.count + offset) { i in
            if i < offset {
                return .index(Result { () throws(CheckpointError) -> ShardIndex in
                    let file = try fileIO { () throws(FileIOError) in try ReadOnlyFile(folder: path, name: ShardIndex.fileName) }
                    guard file.byteCount <= ShardIndex.maxBytes else {
                        throw .indexMalformed(
                            file: ShardIndex.fileName,
                            reason: "\(file.byteCount) bytes, more than k2pack reads for an index (\(ShardIndex.maxBytes); \(ShardIndex.maxEntries) entries fit in it)")
                    }
                    // Parsed straight from the file's mapping (no 20 MB copy); the file object, and so the mapping,
                    // lives until the parse returns.
                    defer { withExtendedLifetime(file) {} }
                    let bytes = try fileIO { () throws(FileIOError) in try file.mapped() }
                    return try ShardIndex.parse(bytes, fileName: ShardIndex.fileName)
                })
            }
            let file = files[i - offset]
            return .shard(Result { () throws(CheckpointError) -> SafetensorsFile in
                try SafetensorsFile(folder: path, name: file)
            })
        }
        var byFile: [ByteName: Result<SafetensorsFile, CheckpointError>] = [:]
        var index: ShardIndex?
        for (i, item) in loaded.enumerated() {
            switch item {
            case .index(let result): index = try result.get()
            case .shard(let result): byFile[ByteName(files[i - offset])] = result
            }
        }
        let names: [String]
        if let index {
            names = index.shardNames
            // Files the index names that were not parsed above (no .safetensors suffix): they are shards too,
            // opened the same way (an index entry `x.bin` → a link outside the folder is refused like any shard).
            let extra = names.filter { listed($0) && byFile[ByteName($0)] == nil }
            let results = parallelMap(count: extra.count) { i in
                Result { () throws(CheckpointError) -> SafetensorsFile in try SafetensorsFile(folder: path, name: extra[i]) }
            }
            for (name, result) in zip(extra, results) { byFile[ByteName(name)] = result }
            let listedShards = Set(names.map(ByteName.init))
            for file in files where !listedShards.contains(ByteName(file)) {
                // An unlisted file is not part of the checkpoint, but one that resolves outside the folder is
                // still reported as such (it was opened to be checked).
                if case .failure(let error)? = byFile[ByteName(file)], case .outsideFolder = error { problems.append(error); continue }
                warnings.append(Warning(code: "unlisted_shard", file: file, message: "\(displayed(file)): a .safetensors file the index does not list; ignored"))
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
            listed(Self.configFileName) && !outside.contains(ByteName(Self.configFileName))
            ? try fileIO { () throws(FileIOError) in try ReadOnlyFile(folder: path, name: Self.configFileName).readAll() } : nil

        let opened: [Result<SafetensorsFile, CheckpointError>?] = names.map { byFile[ByteName($0)] }
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

        // Each shard's tensors are looked up in the index (one job per shard, both cores). When every header entry
        // is listed under its own shard and the index lists nothing else, no name can be in two shards (two
        // entries of one header with one name are refused by the header's reader), so the location table is not
        // needed to find duplicates: it is built on first use. Otherwise it is built now, as before, and finds
        // them (first occurrence wins).
        let shardList = shards
        let lookups: [IndexLookup] = index.map { indexed in
            parallelMap(count: shardList.count) { s in Self.lookUp(shard: s, index: indexed, names: names, shards: shardList) }
        } ?? []
        let headerEntries = shards.reduce(0) { $0 + ($1?.tensors.count ?? 0) }
        let accounted = index.map { index in
            let matched = lookups.reduce(0) { $0 + $1.matched }
            return matched == index.entryCount && matched == headerEntries
        } ?? false
        var locations: [ByteName: TensorLocation]?
        if !accounted {
            let (table, duplicates) = Self.buildLocations(shards, names: names)
            problems += duplicates
            locations = table
        }
        self.locationTable = Locked(locations)

        if let index {
            problems += Self.crossCheck(
                index: index, names: names, shards: shards, missing: missing, locations: locations ?? [:], lookups: lookups)
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

    /// Tensor name → its first location over the opened shards, and the names found again in a later shard
    /// (`names`: the shard names, for the messages; without them no messages are made).
    private static func buildLocations(
        _ shards: [SafetensorsFile?], names: [String]? = nil
    ) -> (locations: [ByteName: TensorLocation], duplicates: [CheckpointError]) {
        var locations: [ByteName: TensorLocation] = [:]
        var duplicates: [CheckpointError] = []
        locations.reserveCapacity(shards.reduce(0) { $0 + ($1?.tensors.count ?? 0) })
        for (s, shard) in shards.enumerated() {
            guard let shard else { continue }
            let tensors = shard.tensors
            for e in tensors.indices {
                let entry = tensors[e]
                let key = ByteName(entry.name)
                // One hash per tensor: insert, and put the first location back in the rare case of a duplicate.
                if let first = locations.updateValue(TensorLocation(shard: s, entry: e), forKey: key) {
                    locations[key] = first
                    if let names {
                        duplicates.append(.duplicateTensor(tensor: entry.name, firstShard: names[first.shard], secondShard: names[s]))
                    }
                }
            }
        }
        return (locations, duplicates)
    }

    /// One shard's tensors looked up in the index: those it does not list, and how many it lists under this shard.
    struct IndexLookup: Sendable {
        var problems: [CheckpointError] = []
        var matched = 0
    }

    /// One lookup per tensor of shard `s`: in the index, and under this shard's name?
    private static func lookUp(shard s: Int, index: ShardIndex, names: [String], shards: [SafetensorsFile?]) -> IndexLookup {
        var result = IndexLookup()
        guard let shard = shards[s] else { return result }
        // `names` are the index's shard names: the shard is listed under its own name when at its own position.
        let tensors = shard.tensors
        let positions = index.shardPositions(count: tensors.count) { tensors[$0].name }
        for (entry, position) in zip(tensors, positions) {
            guard let listed = position else {
                result.problems.append(.shardTensorNotInIndex(tensor: entry.name, shard: names[s]))
                continue
            }
            if listed == s { result.matched += 1 }
        }
        return result
    }

    /// Index ⇄ headers: every index entry is in the named shard, every shard tensor is in the index. `lookups`:
    /// `lookUp(shard:…)` of every shard, in order.
    private static func crossCheck(
        index: ShardIndex, names: [String], shards: [SafetensorsFile?], missing: [Int],
        locations: [ByteName: TensorLocation], lookups perShard: [IndexLookup]
    ) -> [CheckpointError] {
        var problems: [CheckpointError] = []
        var matched = 0
        for shard in perShard {
            problems += shard.problems
            matched += shard.matched
        }
        // Index entries not accounted for: their shard is missing, unreadable, or does not hold them.
        if matched != index.entryCount {
            var position: [ByteName: Int] = [:]
            for (i, name) in names.enumerated() { position[ByteName(name)] = i }
            let missingNames = Set(missing.map { ByteName(names[$0]) })
            var missingCounts: [ByteName: (count: Int, example: ByteName)] = [:]
            for (tensor, shardName) in index.weightMap {
                let shardKey = ByteName(shardName)
                if missingNames.contains(shardKey) {
                    let prior = missingCounts[shardKey]
                    missingCounts[shardKey] = ((prior?.count ?? 0) + 1, min(prior?.example ?? tensor, tensor))
                    continue
                }
                guard let s = position[shardKey], let shard = shards[s] else { continue }  // unreadable shard: reported already
                let location = locations[tensor]
                if let location, location.shard == s { continue }
                let holds = location != nil && shard.tensors.contains { ByteName($0.name) == tensor }
                if !holds {
                    problems.append(.indexTensorNotInShard(tensor: tensor.string, shard: shardName, foundIn: location.map { names[$0.shard] }))
                }
            }
            for name in missingCounts.keys.sorted() {
                let info = missingCounts[name]!
                problems.append(.shardMissing(shard: name.string, tensorCount: info.count, example: info.example.string))
            }
        }
        // The index is a dictionary: sort what was found so reports are stable.
        problems.sort { ($0.file ?? "", $0.description) < ($1.file ?? "", $1.description) }
        return problems
    }

    /// The header entry and shard of a tensor, if any opened shard holds it.
    public func entry(named name: String) -> (shard: SafetensorsFile, entry: TensorEntry)? {
        guard let location = locations[ByteName(name)], let shard = shards[location.shard] else { return nil }
        return (shard, shard.tensors[location.entry])
    }

    /// All tensors of all opened shards.
    public var allEntries: [(shard: Int, entry: TensorEntry)] {
        shards.enumerated().flatMap { s, shard in (shard?.tensors ?? []).map { (s, $0) } }
    }
}
