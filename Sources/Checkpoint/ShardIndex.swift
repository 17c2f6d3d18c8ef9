import FileIO
import JSONCore
import TensorCore

/// `model.safetensors.index.json`: which shard file holds each tensor.
public struct ShardIndex: Sendable {
    public static let fileName = "model.safetensors.index.json"
    /// Most `weight_map` entries accepted: a checkpoint's config may imply at most 1,000,000 tensors
    /// (`ExpectedTensorList.maxTensorCount`, 5× the real K2.5), so a longer index cannot describe one.
    public static let maxEntries = 1_000_000
    /// Largest index file read: 1,000,000 entries of 120-byte names and a shard name fit well within it (the real
    /// K2.5 index is about 20 MB).
    public static let maxBytes = 192 << 20

    /// `metadata.total_size`, when present.
    public var totalSize: Int?
    /// Tensor name → shard file name. Names are compared as bytes: canonically equivalent spellings (NFC and
    /// NFD) are different tensors, as they are to Python and safetensors. An index read by `parse` keeps its names
    /// in a `NameTable` and builds this dictionary on first use (`shardPosition(of:)` and `entryCount` need none).
    public var weightMap: [ByteName: String] {
        get {
            switch storage {
            case .map(let map): return map
            case .table(let table): return table.weightMap()
            }
        }
        set { storage = .map(newValue) }
    }
    /// The distinct shard file names (as bytes), in byte order.
    public var shardNames: [String]

    private enum Storage: Sendable {
        case map([ByteName: String])
        case table(ParsedNames)
    }
    private var storage: Storage

    /// The names as `parse` read them: each name's value is its shard's position in `shardNames` as read.
    private final class ParsedNames: Sendable {
        let names: NameTable
        let shardNames: [String]
        private let map = Locked<[ByteName: String]?>(nil)

        init(names: NameTable, shardNames: [String]) {
            self.names = names
            self.shardNames = shardNames
        }

        func weightMap() -> [ByteName: String] {
            map.withLock { map in
                if let map { return map }
                var built: [ByteName: String] = [:]
                built.reserveCapacity(names.count)
                names.forEach { name, shard in
                    built[ByteName(String(decoding: name, as: UTF8.self))] = shardNames[shard]
                }
                map = built
                return built
            }
        }
    }

    public init(totalSize: Int?, weightMap: [ByteName: String]) {
        self.totalSize = totalSize
        self.storage = .map(weightMap)
        self.shardNames = Set(weightMap.values.map(ByteName.init)).sorted().map(\.string)
    }

    /// Entries in `weightMap`.
    public var entryCount: Int {
        switch storage {
        case .map(let map): return map.count
        case .table(let table): return table.names.count
        }
    }

    /// Where the index lists `name`: the position of its shard in `shardNames` (as `parse` read them), -1 when
    /// that shard is not in `shardNames` (possible only after `weightMap` was replaced), nil when the index does
    /// not list it. One hash of the name's bytes for an index `parse` read.
    public func shardPosition(of name: String) -> Int? {
        switch storage {
        case .table(let table):
            var name = name
            return name.withUTF8 { table.names.value(of: UnsafeRawBufferPointer($0)) }
        case .map(let map):
            guard let shard = map[ByteName(name)] else { return nil }
            // A replaced map's shards are not indexed by position: a linear search (writers and tests only).
            return shardNames.firstIndex { ByteName($0) == ByteName(shard) } ?? -1
        }
    }

    /// `shardPosition(of:)` of `names[0..<count]` (`name(i)` gives name `i`), with the index's table read for all of
    /// them at once (see `NameTable.values`).
    public func shardPositions(count: Int, name: (Int) -> String) -> [Int?] {
        switch storage {
        case .table(let table):
            return table.names.values(count: count) { i, body in
                var text = name(i)
                text.withUTF8 { body(UnsafeRawBufferPointer($0)) }
            }
        case .map:
            return (0..<count).map { shardPosition(of: name($0)) }
        }
    }

    /// Parses an index; shard names must be plain file names (no directories, no `..`).
    /// `weight_map` is read straight into a dictionary (the real index has 208,550 entries).
    public static func parse(_ bytes: [UInt8], fileName: String = ShardIndex.fileName, maxEntries: Int = ShardIndex.maxEntries) throws(CheckpointError) -> ShardIndex {
        let result: Result<ShardIndex, CheckpointError> = bytes.withUnsafeBytes { raw in
            Result { () throws(CheckpointError) -> ShardIndex in try parse(raw, fileName: fileName, maxEntries: maxEntries) }
        }
        return try result.get()
    }

    static func parse(_ raw: UnsafeRawBufferPointer, fileName: String, maxEntries: Int = ShardIndex.maxEntries) throws(CheckpointError) -> ShardIndex {
        var scanner = JSONScanner(bytes: raw, maxDepth: JSONDepth.shardIndex)
        func invalid(_ error: JSONError) -> CheckpointError {
            .indexMalformed(file: fileName, reason: "not valid JSON: \(error.description)")
        }
        var parsed: (names: NameTable, shardNames: [String])?
        var totalSize: Int?
        var seenKeys = Set<ByteName>()
        do {
            guard scanner.peek() == UInt8(ascii: "{") else {
                let value = try scanner.parseValue()
                throw WrongShape(reason: "must be a JSON object, found \(value.kindName)")
            }
            scanner.skipOne()
            if !scanner.consume(UInt8(ascii: "}")) {
                repeat {
                    let keyOffset = scanner.position
                    let key = try scanner.parseString()
                    guard seenKeys.insert(ByteName(key)).inserted else { throw JSONError(offset: keyOffset, reason: "duplicate key \"\(displayed(key))\"") }
                    try scanner.expect(UInt8(ascii: ":"), "':' after an object key")
                    switch key {
                    case "weight_map":
                        parsed = try parseWeightMap(&scanner, fileName: fileName, maxEntries: maxEntries)
                    case "metadata":
                        totalSize = try parseTotalSize(scanner.parseValue(depth: 1))
                    default:
                        _ = try scanner.parseValue(depth: 1)
                    }
                } while scanner.consume(UInt8(ascii: ","))
                try scanner.expect(UInt8(ascii: "}"), "',' or '}' in an object")
            }
            try scanner.expectEnd()
        } catch let shape as WrongShape {
            throw .indexMalformed(file: fileName, reason: shape.reason)
        } catch let bad as UnsafeName {
            throw .unsafeShardName(index: fileName, shard: bad.name)
        } catch let error as JSONError {
            throw invalid(error)
        } catch {
            throw .indexMalformed(file: fileName, reason: "\(error)")
        }
        guard let parsed else { throw .indexMalformed(file: fileName, reason: "missing \"weight_map\" object") }
        return ShardIndex(
            totalSize: totalSize, storage: .table(ParsedNames(names: parsed.names, shardNames: parsed.shardNames)),
            shardNames: parsed.shardNames)
    }

    private init(totalSize: Int?, storage: Storage, shardNames: [String]) {
        self.totalSize = totalSize
        self.storage = storage
        self.shardNames = shardNames
    }

    /// The map as a name table whose values are positions in the returned shard names (distinct, in byte order).
    /// Tensor names are read as bytes (`parseStringBytes`): no `String` per entry.
    private static func parseWeightMap(
        _ scanner: inout JSONScanner, fileName: String, maxEntries: Int
    ) throws -> (names: NameTable, shardNames: [String]) {
        guard scanner.peek() == UInt8(ascii: "{") else {
            let value = try scanner.parseValue(depth: 1)
            throw WrongShape(reason: "\"weight_map\" must be an object, found \(value.kindName)")
        }
        scanner.skipOne()
        var names = NameTable(expectedCount: min(scanner.bytes.count / 100, maxEntries), expectedBytes: scanner.bytes.count)
        // Shard names in order of first appearance, and their ids; the table holds ids until the end.
        var shards: [String] = []
        var shardIDs: [ByteName: Int] = [:]
        // Consecutive entries almost always name the same shard: compared with it first, on the bytes, no hashing.
        var previous = -1
        var decoded: [UInt8] = []
        if scanner.consume(UInt8(ascii: "}")) { return (names, []) }
        // Names are inserted a batch at a time: each is hashed, and its slot asked for, as it is read, so the inserts'
        // cache misses in the large table overlap. A duplicate is reported when its batch is inserted, and before
        // any error found later in the input (the batch is inserted first), as if each name were inserted at once.
        var pendingBytes: [UInt8] = []
        var pending: [(start: Int, length: Int, id: Int, keyOffset: Int, hash: NameTable.PreparedHash)] = []
        let batch = 32
        func insertPending() throws {
            defer {
                pending.removeAll(keepingCapacity: true)
                pendingBytes.removeAll(keepingCapacity: true)
            }
            try pendingBytes.withUnsafeBytes { all in
                for p in pending {
                    let name = UnsafeRawBufferPointer(rebasing: all[p.start..<p.start + p.length])
                    guard names.insert(name, value: p.id, prepared: p.hash) == nil else {
                        throw JSONError(offset: p.keyOffset, reason: "duplicate key \"\(displayed(String(decoding: name, as: UTF8.self)))\"")
                    }
                }
            }
        }
        do {
            repeat {
                let keyOffset = scanner.position
                let span = try scanner.parseStringBytes(decoded: &decoded)
                let raw = scanner.bytes
                func withTensor<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
                    if let span { return try body(UnsafeRawBufferPointer(rebasing: raw[span])) }
                    return try decoded.withUnsafeBytes(body)
                }
                func tensor() -> String { withTensor { String(decoding: $0, as: UTF8.self) } }
                try scanner.expect(UInt8(ascii: ":"), "':' after an object key")
                guard scanner.peek() == UInt8(ascii: "\"") else {
                    let value = try scanner.parseValue(depth: 2)
                    throw WrongShape(reason: "weight_map entry '\(displayed(tensor()))' must be a file name string, found \(value.kindName)")
                }
                // The same shard as the entry before: matched on the bytes, no String built.
                let id: Int
                if previous >= 0, shards[previous].utf8.withContiguousStorageIfAvailable({ scanner.consumeString(equalTo: UnsafeRawBufferPointer($0)) }) == true {
                    id = previous
                } else {
                    let shard = try scanner.parseString()
                    if let known = shardIDs[ByteName(shard)] {
                        id = known
                    } else {
                        guard isPlainFileName(shard) else { throw UnsafeName(name: shard) }
                        id = shards.count
                        shardIDs[ByteName(shard)] = id
                        shards.append(shard)
                    }
                    previous = id
                }
                guard names.count + pending.count < maxEntries else {
                    throw WrongShape(reason: "weight_map has more than \(maxEntries) entries (a config implies at most \(maxEntries) tensors)")
                }
                let start = pendingBytes.count
                let prepared = withTensor { name in
                    pendingBytes.append(contentsOf: name.assumingMemoryBound(to: UInt8.self))
                    return names.prepareInsert(name)
                }
                pending.append((start, pendingBytes.count - start, id, keyOffset, prepared))
                if pending.count == batch { try insertPending() }
            } while scanner.consume(UInt8(ascii: ","))
            try insertPending()
        } catch {
            try insertPending()
            throw error
        }
        try scanner.expect(UInt8(ascii: "}"), "',' or '}' in an object")
        // Ids (order of first appearance) → positions in the sorted shard names.
        let order = shards.indices.sorted { ByteName(shards[$0]) < ByteName(shards[$1]) }
        var position = [Int](repeating: 0, count: shards.count)
        for (p, id) in order.enumerated() { position[id] = p }
        if order != Array(shards.indices) { names.mapValues { position[$0] } }
        return (names, order.map { shards[$0] })
    }

    private static func parseTotalSize(_ metadata: JSONValue) throws -> Int? {
        if metadata.isNull { return nil }
        guard let meta = metadata.objectValue else {
            throw WrongShape(reason: "\"metadata\" must be an object, found \(metadata.kindName)")
        }
        guard let size = meta["total_size"] else { return nil }
        if let n = size.intValue, n >= 0 { return n }
        // Some writers emit the total as a float (e.g. 1.0e10).
        if let d = size.doubleValue, d >= 0, d < 9e18, d == d.rounded() { return Int(d) }
        throw WrongShape(reason: "metadata.total_size must be a non-negative integer")
    }

    /// A name that stays inside its folder: no separators, not `.` or `..`, not empty, no NUL; checked as bytes
    /// (`PathBytes.isPlainName`), so a `/` followed by a combining mark is still a separator.
    public static func isPlainFileName(_ name: String) -> Bool { PathBytes.isPlainName(name) }
}

/// Index problems raised inside the JSON scan (typed as JSONError there), turned into CheckpointError above.
private struct WrongShape: Error { var reason: String }
private struct UnsafeName: Error { var name: String }
