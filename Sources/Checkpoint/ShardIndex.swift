import JSONCore

/// `model.safetensors.index.json`: which shard file holds each tensor.
public struct ShardIndex: Sendable {
    public static let fileName = "model.safetensors.index.json"

    /// `metadata.total_size`, when present.
    public var totalSize: Int?
    /// Tensor name → shard file name.
    public var weightMap: [String: String]
    /// Shard file names in first-seen order of the sorted tensor names.
    public var shardNames: [String]

    public init(totalSize: Int?, weightMap: [String: String]) {
        self.totalSize = totalSize
        self.weightMap = weightMap
        self.shardNames = Array(Set(weightMap.values)).sorted()
    }

    /// Parses an index; shard names must be plain file names (no directories, no `..`).
    /// `weight_map` is read straight into a dictionary (the real index has 208,550 entries).
    public static func parse(_ bytes: [UInt8], fileName: String = ShardIndex.fileName) throws(CheckpointError) -> ShardIndex {
        let result: Result<ShardIndex, CheckpointError> = bytes.withUnsafeBytes { raw in
            Result { () throws(CheckpointError) -> ShardIndex in try parse(raw, fileName: fileName) }
        }
        return try result.get()
    }

    static func parse(_ raw: UnsafeRawBufferPointer, fileName: String) throws(CheckpointError) -> ShardIndex {
        var scanner = JSONScanner(bytes: raw, maxDepth: 8)
        func invalid(_ error: JSONError) -> CheckpointError {
            .indexMalformed(file: fileName, reason: "not valid JSON: \(error.description)")
        }
        var weightMap: [String: String]?
        var totalSize: Int?
        var seenKeys = Set<String>()
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
                    guard seenKeys.insert(key).inserted else { throw JSONError(offset: keyOffset, reason: "duplicate key \"\(key)\"") }
                    try scanner.expect(UInt8(ascii: ":"), "':' after an object key")
                    switch key {
                    case "weight_map":
                        weightMap = try parseWeightMap(&scanner, fileName: fileName)
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
        return ShardIndex(totalSize: totalSize, weightMap: weightMap)
    }

    private static func parseWeightMap(_ scanner: inout JSONScanner, fileName: String) throws -> [String: String] {
        guard scanner.peek() == UInt8(ascii: "{") else {
            let value = try scanner.parseValue(depth: 1)
            throw WrongShape(reason: "\"weight_map\" must be an object, found \(value.kindName)")
        }
        scanner.skipOne()
        var map: [String: String] = [:]
        map.reserveCapacity(scanner.bytes.count / 100)
        // Shard names repeat: intern them so 208k entries share a few dozen strings.
        var interned: [String: String] = [:]
        // Consecutive entries almost always name the same shard: compared with it first, no hashing.
        var previous = ""
        if scanner.consume(UInt8(ascii: "}")) { return map }
        repeat {
            let keyOffset = scanner.position
            let tensor = try scanner.parseString()
            try scanner.expect(UInt8(ascii: ":"), "':' after an object key")
            guard scanner.peek() == UInt8(ascii: "\"") else {
                let value = try scanner.parseValue(depth: 2)
                throw WrongShape(reason: "weight_map entry '\(tensor)' must be a file name string, found \(value.kindName)")
            }
            // The same shard as the entry before: matched on the bytes, no String built.
            if !previous.isEmpty, previous.utf8.withContiguousStorageIfAvailable({ scanner.consumeString(equalTo: UnsafeRawBufferPointer($0)) }) == true {
                guard map.updateValue(previous, forKey: tensor) == nil else {
                    throw JSONError(offset: keyOffset, reason: "duplicate key \"\(tensor)\"")
                }
                continue
            }
            var shard = try scanner.parseString()
            if !previous.isEmpty, shard == previous {
                shard = previous
            } else if let known = interned[shard] {
                shard = known
                previous = known
            } else {
                guard isPlainFileName(shard) else { throw UnsafeName(name: shard) }
                interned[shard] = shard
                previous = shard
            }
            guard map.updateValue(shard, forKey: tensor) == nil else {
                throw JSONError(offset: keyOffset, reason: "duplicate key \"\(tensor)\"")
            }
        } while scanner.consume(UInt8(ascii: ","))
        try scanner.expect(UInt8(ascii: "}"), "',' or '}' in an object")
        return map
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

    /// A name that stays inside its folder: no separators, not `.` or `..`, not empty, no NUL.
    public static func isPlainFileName(_ name: String) -> Bool {
        !name.isEmpty && name != "." && name != ".." && !name.contains("/") && !name.contains("\\") && !name.contains("\0")
    }
}

/// Index problems raised inside the JSON scan (typed as JSONError there), turned into CheckpointError above.
private struct WrongShape: Error { var reason: String }
private struct UnsafeName: Error { var name: String }
