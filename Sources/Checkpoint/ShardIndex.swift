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
    /// NFD) are different tensors, as they are to Python and safetensors.
    public var weightMap: [ByteName: String]
    /// The distinct shard file names (as bytes), in byte order.
    public var shardNames: [String]

    public init(totalSize: Int?, weightMap: [ByteName: String]) {
        self.init(totalSize: totalSize, weightMap: weightMap, distinctShards: Set(weightMap.values.map(ByteName.init)))
    }

    /// `distinctShards`: the distinct values of `weightMap`, already known (the parser collects them).
    init(totalSize: Int?, weightMap: [ByteName: String], distinctShards: Set<ByteName>) {
        self.totalSize = totalSize
        self.weightMap = weightMap
        self.shardNames = distinctShards.sorted().map(\.string)
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
        var weightMap: [ByteName: String]?
        var shards = Set<ByteName>()
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
                        (weightMap, shards) = try parseWeightMap(&scanner, fileName: fileName, maxEntries: maxEntries)
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
        guard let weightMap else { throw .indexMalformed(file: fileName, reason: "missing \"weight_map\" object") }
        return ShardIndex(totalSize: totalSize, weightMap: weightMap, distinctShards: shards)
    }

    /// The map, and its distinct shard names.
    private static func parseWeightMap(
        _ scanner: inout JSONScanner, fileName: String, maxEntries: Int
    ) throws -> (map: [ByteName: String], shards: Set<ByteName>) {
        guard scanner.peek() == UInt8(ascii: "{") else {
            let value = try scanner.parseValue(depth: 1)
            throw WrongShape(reason: "\"weight_map\" must be an object, found \(value.kindName)")
        }
        scanner.skipOne()
        var map: [ByteName: String] = [:]
        map.reserveCapacity(min(scanner.bytes.count / 100, maxEntries))
        // Shard names repeat: intern them so 208k entries share a few dozen strings.
        var interned: [ByteName: String] = [:]
        // Consecutive entries almost always name the same shard: compared with it first, on the bytes, no hashing.
        var previous = ""
        func insert(_ shard: String, for tensor: String, keyOffset: Int) throws {
            guard map.count < maxEntries else {
                throw WrongShape(reason: "weight_map has more than \(maxEntries) entries (a config implies at most \(maxEntries) tensors)")
            }
            guard map.updateValue(shard, forKey: ByteName(tensor)) == nil else {
                throw JSONError(offset: keyOffset, reason: "duplicate key \"\(displayed(tensor))\"")
            }
        }
        if scanner.consume(UInt8(ascii: "}")) { return (map, []) }
        repeat {
            let keyOffset = scanner.position
            let tensor = try scanner.parseString()
            try scanner.expect(UInt8(ascii: ":"), "':' after an object key")
            guard scanner.peek() == UInt8(ascii: "\"") else {
                let value = try scanner.parseValue(depth: 2)
                throw WrongShape(reason: "weight_map entry '\(displayed(tensor))' must be a file name string, found \(value.kindName)")
            }
            // The same shard as the entry before: matched on the bytes, no String built.
            if !previous.isEmpty, previous.utf8.withContiguousStorageIfAvailable({ scanner.consumeString(equalTo: UnsafeRawBufferPointer($0)) }) == true {
                try insert(previous, for: tensor, keyOffset: keyOffset)
                continue
            }
            var shard = try scanner.parseString()
            if let known = interned[ByteName(shard)] {
                shard = known
                previous = known
            } else {
                guard isPlainFileName(shard) else { throw UnsafeName(name: shard) }
                interned[ByteName(shard)] = shard
                previous = shard
            }
            try insert(shard, for: tensor, keyOffset: keyOffset)
        } while scanner.consume(UInt8(ascii: ","))
        try scanner.expect(UInt8(ascii: "}"), "',' or '}' in an object")
        return (map, Set(interned.keys))
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
