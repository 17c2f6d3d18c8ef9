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
    public static func parse(_ bytes: [UInt8], fileName: String = ShardIndex.fileName) throws(CheckpointError) -> ShardIndex {
        let root: JSONValue
        do {
            root = try JSONDocument.parse(bytes, maxDepth: 8)
        } catch {
            throw .indexMalformed(file: fileName, reason: "not valid JSON: \(error.description)")
        }
        guard let object = root.objectValue else {
            throw .indexMalformed(file: fileName, reason: "must be a JSON object, found \(root.kindName)")
        }
        guard let map = object["weight_map"]?.objectValue else {
            throw .indexMalformed(file: fileName, reason: "missing \"weight_map\" object")
        }
        var weightMap: [String: String] = [:]
        weightMap.reserveCapacity(map.count)
        for (tensor, value) in map.entries {
            guard let shard = value.stringValue else {
                throw .indexMalformed(file: fileName, reason: "weight_map entry '\(tensor)' must be a file name string, found \(value.kindName)")
            }
            guard isPlainFileName(shard) else { throw .unsafeShardName(index: fileName, shard: shard) }
            weightMap[tensor] = shard
        }
        var totalSize: Int?
        if let metadata = object["metadata"], !metadata.isNull {
            guard let meta = metadata.objectValue else {
                throw .indexMalformed(file: fileName, reason: "\"metadata\" must be an object, found \(metadata.kindName)")
            }
            if let size = meta["total_size"] {
                guard let n = size.intValue ?? size.doubleValue.flatMap({ $0 >= 0 && $0 < 9e18 && $0 == $0.rounded() ? Int($0) : nil }), n >= 0 else {
                    throw .indexMalformed(file: fileName, reason: "metadata.total_size must be a non-negative integer")
                }
                totalSize = n
            }
        }
        return ShardIndex(totalSize: totalSize, weightMap: weightMap)
    }

    /// A name that stays inside its folder: no separators, not `.` or `..`, not empty, no NUL.
    public static func isPlainFileName(_ name: String) -> Bool {
        !name.isEmpty && name != "." && name != ".." && !name.contains("/") && !name.contains("\\") && !name.contains("\0")
    }
}
