import Checkpoint
import FileIO
import ModelConfig
import TensorCore

/// One thing wrong (or odd) with a checkpoint, as a typed value: what the model layer found while opening a
/// folder or checking headers against the config. Reports (`Inspection`) turn these into their findings; writers
/// refuse a folder with an error among them. Every message names the file and tensor where there are some.
public enum CheckpointProblem: Sendable, Equatable, CustomStringConvertible {
    /// How bad a problem is: an error makes the folder unusable for anything that reads tensors; a warning is
    /// only reported.
    public enum Severity: String, Sendable, Equatable { case error, warning }

    /// A file of the folder is unreadable or malformed (a shard's header, the index, a checksum list).
    case file(CheckpointError)
    /// Something odd that does not make the checkpoint wrong (an unlisted shard, a wrong index total).
    case folderWarning(CheckpointDirectory.Warning)
    /// config.json is missing, malformed, or implies no valid tensor list.
    case config(ConfigError)
    /// config.json exists but cannot be opened through the folder guard (outside the folder, or I/O).
    case configUnreadable(FileIOError)
    /// config.json describes another architecture than the folder record says.
    case architectureMismatch(config: String, recorded: String)
    /// A header lists a tensor the config does not imply.
    case unexpectedTensor(file: String, tensor: String, shape: [Int], dtype: DType)
    /// A tensor's shape differs from the one the config implies.
    case wrongShape(file: String, tensor: String, found: [Int], expected: [Int], role: String)
    /// A tensor's dtype is not one the config allows.
    case wrongDType(file: String, tensor: String, found: DType, expected: [DType], role: String)
    /// A tensor the config implies is in no header. `home`: the shard that holds the rest of its layer (or of
    /// its role, outside the layers), when one does.
    case missingTensor(tensor: String, shape: [Int], dtypes: [DType], role: String, inLayer: Bool, home: String?)
    /// The records of a k2pack folder or shard set disagree with the source headers it keeps.
    case sourceMismatch(file: String, tensor: String?, message: String)
    /// A carried file (tokenizer, remote code, docs) changed, is missing or cannot be read.
    case carriedFile(path: String, problem: String)
    /// The summary of problems left out: `count` more of `code` and `severity` beyond the first `limit`.
    case omitted(code: String, severity: Severity, count: Int, limit: Int)

    /// Problems listed per code (and severity) before the rest are summarised in one `omitted` line.
    public static let perCodeLimit = 1_000

    public var severity: Severity {
        switch self {
        case .folderWarning: .warning
        case .omitted(_, let severity, _, _): severity
        default: .error
        }
    }

    /// A stable machine-readable kind, e.g. `missing_tensor`, `wrong_shape` (the codes reports print).
    public var code: String {
        switch self {
        case .file(let error): error.code
        case .folderWarning(let warning): warning.code
        case .config, .architectureMismatch: "config"
        case .configUnreadable(let error): if case .outsideFolder = error { "outside_folder" } else { "io" }
        case .unexpectedTensor: "unexpected_tensor"
        case .wrongShape: "wrong_shape"
        case .wrongDType: "wrong_dtype"
        case .missingTensor: "missing_tensor"
        case .sourceMismatch: "pack_source_mismatch"
        case .carriedFile: "carried_file"
        case .omitted(let code, _, _, _): code
        }
    }

    /// The file concerned, relative to the folder, where there is one.
    public var file: String? {
        switch self {
        case .file(let error): error.file
        case .folderWarning(let warning): warning.file
        case .config, .configUnreadable, .architectureMismatch: ModelConfig.fileName
        case .unexpectedTensor(let file, _, _, _), .wrongShape(let file, _, _, _, _), .wrongDType(let file, _, _, _, _),
            .sourceMismatch(let file, _, _):
            file
        case .missingTensor(_, _, _, _, _, let home): home
        case .carriedFile(let path, _): path
        case .omitted: nil
        }
    }

    /// The tensor concerned, where there is one.
    public var tensor: String? {
        switch self {
        case .file(let error): error.tensor
        case .unexpectedTensor(_, let tensor, _, _), .wrongShape(_, let tensor, _, _, _), .wrongDType(_, let tensor, _, _, _),
            .missingTensor(let tensor, _, _, _, _, _):
            tensor
        case .sourceMismatch(_, let tensor, _): tensor
        default: nil
        }
    }

    /// On an `omitted` summary only: how many problems it stands for.
    public var omittedCount: Int? {
        if case .omitted(_, _, let count, _) = self { return count }
        return nil
    }

    public var message: String {
        switch self {
        case .file(let error): error.description
        case .folderWarning(let warning): warning.message
        case .config(let error): error.description
        case .configUnreadable(let error): error.description
        case let .architectureMismatch(config, recorded):
            "\(ModelConfig.fileName): describes \(config), but the folder record says \(displayed(recorded))"
        case let .unexpectedTensor(file, tensor, shape, dtype):
            "\(displayed(file)): tensor '\(displayed(tensor))' \(formatShape(shape)) \(dtype.rawValue) is not implied by config.json"
        case let .wrongShape(file, tensor, found, expected, role):
            "\(displayed(file)): tensor '\(displayed(tensor))': shape \(formatShape(found)), expected \(formatShape(expected)) from config.json (\(role))"
        case let .wrongDType(file, tensor, found, expected, role):
            "\(displayed(file)): tensor '\(displayed(tensor))': dtype \(found.rawValue), expected \(expected.map(\.rawValue).joined(separator: " or ")) (\(role))"
        case let .missingTensor(tensor, shape, dtypes, role, inLayer, home):
            "tensor '\(displayed(tensor))' is missing\(home.map { " from \(displayed($0)), which holds the rest of its \(inLayer ? "layer" : role)" } ?? ""): the config implies \(formatShape(shape)) \(dtypes.map(\.rawValue).joined(separator: " or ")) (\(role))"
        case .sourceMismatch(_, _, let message): message
        case let .carriedFile(path, problem): "\(displayed(path)): \(problem)"
        case let .omitted(code, severity, count, limit):
            "… and \(count) more \(code) \(severity == .error ? "problem" : "warning")\(count == 1 ? "" : "s") (the first \(limit) are listed)"
        }
    }

    public var description: String { message }

    /// The first `limit` problems of each code and severity, in order, then one `omitted` summary per code that
    /// had more, so a hostile checkpoint (a million missing tensors) gives a list of bounded size. Applying it
    /// again changes nothing.
    public static func capped(_ problems: [CheckpointProblem], limit: Int = perCodeLimit) -> [CheckpointProblem] {
        cappedPerCode(
            problems, limit: limit, key: { ProblemKey(code: $0.code, error: $0.severity == .error) }, omitted: \.omittedCount,
            summary: { key, count in .omitted(code: key.code, severity: key.error ? .error : .warning, count: count, limit: limit) })
    }
}

/// What problems are counted by when a list is capped: their code and whether they are errors.
public struct ProblemKey: Hashable, Sendable {
    public var code: String
    public var error: Bool

    public init(code: String, error: Bool) {
        self.code = code
        self.error = error
    }
}

/// The first `limit` items of each key, in order, then one summary per key that had more (made by `summary` from
/// the key and how many were left out). Items that are themselves summaries (`omitted` gives their count) are
/// merged into their key's summary, so applying it again changes nothing. Shared by the model layer's problems
/// and the reports' findings.
public func cappedPerCode<Item>(
    _ items: [Item], limit: Int, key: (Item) -> ProblemKey, omitted: (Item) -> Int?, summary: (ProblemKey, Int) -> Item
) -> [Item] {
    var kept: [Item] = []
    var counts: [ProblemKey: Int] = [:]
    var dropped: [ProblemKey: Int] = [:]
    var order: [ProblemKey] = []
    for item in items {
        let k = key(item)
        if let more = omitted(item) {
            if dropped[k] == nil { order.append(k) }
            dropped[k, default: 0] += more
            continue
        }
        let n = counts[k, default: 0]
        counts[k] = n + 1
        if n < limit {
            kept.append(item)
        } else {
            if dropped[k] == nil { order.append(k) }
            dropped[k, default: 0] += 1
        }
    }
    for k in order { kept.append(summary(k, dropped[k] ?? 0)) }
    return kept
}

extension CheckpointError {
    /// The stable machine-readable kind reports print for this error.
    public var code: String {
        switch self {
        case .io: "io"
        case .notACheckpoint: "not_a_checkpoint"
        case .fileTooShort, .truncated: "truncated"
        case .lfsPointer: "lfs_pointer"
        case .headerTooLarge: "header_too_large"
        case .headerPastEnd: "header_past_end"
        case .headerJSON: "header_json"
        case .headerMalformed, .tensorEntryMalformed: "header_malformed"
        case .duplicateKey: "duplicate_key"
        case .unknownDType: "unknown_dtype"
        case .metadataNotString: "metadata_not_string"
        case .shapeOverflow: "shape_overflow"
        case .misalignedSlice: "misaligned_slice"
        case .offsetsReversed, .offsetGap, .offsetOverlap: "bad_offsets"
        case .sizeMismatch: "size_mismatch"
        case .trailingBytes: "trailing_bytes"
        case .indexMalformed, .unsafeShardName: "index_malformed"
        case .shardMissing: "shard_missing"
        case .indexTensorNotInShard: "index_tensor_not_in_shard"
        case .shardTensorNotInIndex: "shard_tensor_not_in_index"
        case .duplicateTensor: "duplicate_tensor"
        case .checksumMismatch: "checksum_mismatch"
        case .checksumListMalformed: "checksum_list_malformed"
        case .outsideFolder: "outside_folder"
        }
    }

    /// The tensor the error names, where it names one.
    public var tensor: String? {
        switch self {
        case let .tensorEntryMalformed(_, t, _), let .unknownDType(_, t, _), let .shapeOverflow(_, t, _), let .duplicateKey(_, t, _), let .misalignedSlice(_, t, _, _),
            let .offsetsReversed(_, t, _, _), let .sizeMismatch(_, t, _, _, _, _), let .offsetGap(_, t, _, _, _),
            let .offsetOverlap(_, t, _, _, _), let .indexTensorNotInShard(t, _, _), let .shardTensorNotInIndex(t, _),
            let .duplicateTensor(t, _, _):
            t
        default: nil
        }
    }
}
