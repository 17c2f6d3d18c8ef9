import Checkpoint
import ModelConfig

/// One problem (or warning) found in a checkpoint, naming the file and tensor where there are some.
public struct Finding: Sendable, Codable, Equatable, CustomStringConvertible {
    public enum Severity: String, Sendable, Codable { case error, warning }

    public var severity: Severity
    /// A stable machine-readable kind, e.g. `missing_tensor`, `scale_not_finite`.
    public var code: String
    public var file: String?
    public var tensor: String?
    public var message: String
    /// On a summary line only: how many more findings of this code (and severity) were left out.
    public var more: Int?

    public init(_ severity: Severity = .error, code: String, file: String? = nil, tensor: String? = nil, message: String) {
        self.severity = severity
        self.code = code
        self.file = file
        self.tensor = tensor
        self.message = message
    }

    /// Findings listed per code (and severity) before the rest are summarised in one line.
    public static let perCodeLimit = 1_000

    /// The first `limit` findings of each code and severity, in order, then one summary per code that had more
    /// ("… and N more"), so a hostile checkpoint (a million missing tensors) gives a report of bounded size.
    /// Applying it again changes nothing.
    public static func capped(_ findings: [Finding], limit: Int = perCodeLimit) -> [Finding] {
        struct Key: Hashable { var code: String, severity: Severity }
        var kept: [Finding] = []
        var counts: [Key: Int] = [:]
        var dropped: [Key: Int] = [:]
        var order: [Key] = []
        for finding in findings {
            let key = Key(code: finding.code, severity: finding.severity)
            if let more = finding.more {
                if dropped[key] == nil { order.append(key) }
                dropped[key, default: 0] += more
                continue
            }
            let n = counts[key, default: 0]
            counts[key] = n + 1
            if n < limit {
                kept.append(finding)
            } else {
                if dropped[key] == nil { order.append(key) }
                dropped[key, default: 0] += 1
            }
        }
        for key in order {
            let n = dropped[key] ?? 0
            var summary = Finding(
                key.severity, code: key.code,
                message: "… and \(n) more \(key.code) \(key.severity == .error ? "problem" : "warning")\(n == 1 ? "" : "s") (the first \(limit) are listed)")
            summary.more = n
            kept.append(summary)
        }
        return kept
    }

    public var description: String { message }

    init(_ error: CheckpointError) {
        let code: String
        switch error {
        case .io: code = "io"
        case .notACheckpoint: code = "not_a_checkpoint"
        case .fileTooShort, .truncated: code = "truncated"
        case .lfsPointer: code = "lfs_pointer"
        case .headerTooLarge: code = "header_too_large"
        case .headerPastEnd: code = "header_past_end"
        case .headerJSON: code = "header_json"
        case .headerMalformed, .tensorEntryMalformed: code = "header_malformed"
        case .duplicateKey: code = "duplicate_key"
        case .unknownDType: code = "unknown_dtype"
        case .metadataNotString: code = "metadata_not_string"
        case .shapeOverflow: code = "shape_overflow"
        case .misalignedSlice: code = "misaligned_slice"
        case .offsetsReversed, .offsetGap, .offsetOverlap: code = "bad_offsets"
        case .sizeMismatch: code = "size_mismatch"
        case .trailingBytes: code = "trailing_bytes"
        case .indexMalformed, .unsafeShardName: code = "index_malformed"
        case .shardMissing: code = "shard_missing"
        case .indexTensorNotInShard: code = "index_tensor_not_in_shard"
        case .shardTensorNotInIndex: code = "shard_tensor_not_in_index"
        case .duplicateTensor: code = "duplicate_tensor"
        case .checksumMismatch: code = "checksum_mismatch"
        case .checksumListMalformed: code = "checksum_list_malformed"
        case .outsideFolder: code = "outside_folder"
        }
        self.init(.error, code: code, file: error.file, tensor: Self.tensor(of: error), message: error.description)
    }

    init(_ error: ConfigError) {
        self.init(.error, code: "config", file: ModelConfig.fileName, message: error.description)
    }

    private static func tensor(of error: CheckpointError) -> String? {
        switch error {
        case let .tensorEntryMalformed(_, t, _), let .unknownDType(_, t, _), let .shapeOverflow(_, t, _), let .duplicateKey(_, t, _), let .misalignedSlice(_, t, _, _),
            let .offsetsReversed(_, t, _, _), let .sizeMismatch(_, t, _, _, _, _), let .offsetGap(_, t, _, _, _),
            let .offsetOverlap(_, t, _, _, _), let .indexTensorNotInShard(t, _, _), let .shardTensorNotInIndex(t, _),
            let .duplicateTensor(t, _, _):
            t
        default: nil
        }
    }
}
