import FileIO
import JSONCore
import TensorCore

/// Everything that can be wrong with a checkpoint's files, each naming the file and, where there is one,
/// the tensor, with what was found and what was expected.
public enum CheckpointError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The file or directory could not be opened or read (errno text included).
    case io(path: String, operation: String, reason: String)
    /// The path given is not a checkpoint: no safetensors files and no index.
    case notACheckpoint(path: String, reason: String)
    /// Fewer than 8 bytes: not even a header length.
    case fileTooShort(file: String, byteCount: Int)
    /// The file is a git-LFS pointer, not the data it points to.
    case lfsPointer(file: String)
    /// The header length exceeds the 100,000,000-byte limit.
    case headerTooLarge(file: String, headerLength: UInt64, fileLength: Int)
    /// 8 + header length runs past the end of the file.
    case headerPastEnd(file: String, headerLength: UInt64, fileLength: Int)
    /// The header is not valid UTF-8 JSON, or breaks JSON rules (duplicate keys included).
    case headerJSON(file: String, error: JSONError)
    /// The header parsed but is not shaped like a safetensors header.
    case headerMalformed(file: String, reason: String)
    /// The header names the same tensor twice (JSON parsers disagree on which entry wins).
    case duplicateKey(file: String, tensor: String, offset: Int)
    /// A tensor entry lacks a field or has a field of the wrong type.
    case tensorEntryMalformed(file: String, tensor: String, reason: String)
    case unknownDType(file: String, tensor: String, dtype: String)
    /// `__metadata__` must map strings to strings.
    case metadataNotString(file: String, key: String)
    /// The element count or byte size of a shape overflows 64 bits.
    case shapeOverflow(file: String, tensor: String, shape: [Int])
    /// A sub-byte dtype whose elements do not fill whole bytes.
    case misalignedSlice(file: String, tensor: String, shape: [Int], dtype: DType)
    /// `data_offsets` end before they begin.
    case offsetsReversed(file: String, tensor: String, begin: Int, end: Int)
    /// The span of `data_offsets` does not equal elements × dtype width.
    case sizeMismatch(file: String, tensor: String, shape: [Int], dtype: DType, expectedBytes: Int, spanBytes: Int)
    /// A tensor starts after the previous one ends: unused bytes between them.
    case offsetGap(file: String, tensor: String, previous: String?, expectedBegin: Int, begin: Int)
    /// A tensor starts before the previous one ends.
    case offsetOverlap(file: String, tensor: String, previous: String, expectedBegin: Int, begin: Int)
    /// The file is shorter than its header says (a truncated download).
    case truncated(file: String, fileLength: Int, expectedLength: Int)
    /// Bytes follow the last tensor.
    case trailingBytes(file: String, fileLength: Int, expectedLength: Int)

    // Index (model.safetensors.index.json) and cross-file checks.
    case indexMalformed(file: String, reason: String)
    /// A shard name in the index is not a plain file name inside the checkpoint folder.
    case unsafeShardName(index: String, shard: String)
    /// The index names a shard file that does not exist.
    case shardMissing(shard: String, tensorCount: Int, example: String)
    /// The index maps a tensor to a shard whose header does not hold it.
    case indexTensorNotInShard(tensor: String, shard: String, foundIn: String?)
    /// A shard holds a tensor the index does not list.
    case shardTensorNotInIndex(tensor: String, shard: String)
    /// The same tensor name appears in two shards.
    case duplicateTensor(tensor: String, firstShard: String, secondShard: String)
    /// A SHA-256 list entry disagrees with the file, or names a missing file.
    case checksumMismatch(file: String, expected: String, actual: String)
    case checksumListMalformed(file: String, line: Int, reason: String)
    /// A file of the folder resolves outside it through a symlink (and not into a cache snapshot's blobs/).
    case outsideFolder(file: String, target: String)

    public var description: String {
        switch self {
        case let .io(path, operation, reason):
            return FileIOError.io(path: path, operation: operation, reason: reason).description
        case let .notACheckpoint(path, reason):
            return "\(displayed(path)): not a checkpoint: \(displayed(reason, limit: nil))"
        case let .fileTooShort(file, count):
            return "\(displayed(file)): \(count) bytes is too short for a safetensors file (needs at least the 8-byte header length); truncated download?"
        case let .lfsPointer(file):
            return "\(displayed(file)): is a git-LFS pointer file, not tensor data: the download fetched the pointer only (run `git lfs pull` or download the file itself)"
        case let .headerTooLarge(file, n, length):
            return "\(displayed(file)): header length \(n) exceeds the 100000000-byte limit (file is \(length) bytes); this is almost always a truncated download, a git-LFS pointer or not a safetensors file"
        case let .headerPastEnd(file, n, length):
            return "\(displayed(file)): header claims \(n) bytes but only \(max(0, length - 8)) follow the 8-byte length field (file is \(length) bytes): the file is shorter than its header, a truncated download or not a safetensors file"
        case let .headerJSON(file, error):
            return "\(displayed(file)): header is not valid JSON: \(error.description)"
        case let .headerMalformed(file, reason):
            return "\(displayed(file)): malformed header: \(displayed(reason, limit: nil))"
        case let .duplicateKey(file, tensor, offset):
            return "\(displayed(file)): header lists tensor '\(displayed(tensor))' twice (duplicate key at header byte \(offset)); readers disagree on which entry wins"
        case let .tensorEntryMalformed(file, tensor, reason):
            return "\(displayed(file)): tensor '\(displayed(tensor))': \(displayed(reason, limit: nil))"
        case let .unknownDType(file, tensor, dtype):
            return "\(displayed(file)): tensor '\(displayed(tensor))': unknown dtype \"\(displayed(dtype))\" (known: \(DType.allCases.map(\.rawValue).joined(separator: ", ")))"
        case let .metadataNotString(file, key):
            return "\(displayed(file)): __metadata__ value for \"\(displayed(key))\" is not a string (safetensors metadata maps strings to strings)"
        case let .shapeOverflow(file, tensor, shape):
            return "\(displayed(file)): tensor '\(displayed(tensor))': shape \(formatShape(shape)) overflows a 64-bit byte count"
        case let .misalignedSlice(file, tensor, shape, dtype):
            return "\(displayed(file)): tensor '\(displayed(tensor))': shape \(formatShape(shape)) of \(dtype.rawValue) (\(dtype.bitWidth) bits each) does not fill whole bytes"
        case let .offsetsReversed(file, tensor, begin, end):
            return "\(displayed(file)): tensor '\(displayed(tensor))': data_offsets [\(begin), \(end)] end before they begin"
        case let .sizeMismatch(file, tensor, shape, dtype, expected, span):
            return "\(displayed(file)): tensor '\(displayed(tensor))': shape \(formatShape(shape)) \(dtype.rawValue) needs \(expected) bytes, data_offsets span \(span)"
        case let .offsetGap(file, tensor, previous, expectedBegin, begin):
            let after = previous.map { "after '\(displayed($0))'" } ?? "at the start of the data"
            return "\(displayed(file)): tensor '\(displayed(tensor))': data begins at \(begin) but the previous tensor ends at \(expectedBegin) (\(after)): \(begin - expectedBegin) unused bytes"
        case let .offsetOverlap(file, tensor, previous, expectedBegin, begin):
            return "\(displayed(file)): tensor '\(displayed(tensor))': data begins at \(begin), inside '\(displayed(previous))' which ends at \(expectedBegin): overlapping tensors"
        case let .truncated(file, length, expected):
            return "\(displayed(file)): file is \(length) bytes but its header describes \(expected) bytes: truncated by \(expected - length) bytes (incomplete download?)"
        case let .trailingBytes(file, length, expected):
            return "\(displayed(file)): file is \(length) bytes but its header describes \(expected) bytes: \(length - expected) unexpected trailing bytes"
        case let .indexMalformed(file, reason):
            return "\(displayed(file)): \(displayed(reason, limit: nil))"
        case let .unsafeShardName(index, shard):
            return "\(displayed(index)): shard name \"\(displayed(shard))\" is not a plain file name inside the checkpoint folder"
        case let .shardMissing(shard, count, example):
            return "\(displayed(shard)): missing: the index maps \(count) tensor\(count == 1 ? "" : "s") to it (e.g. '\(displayed(example))') but the file does not exist"
        case let .indexTensorNotInShard(tensor, shard, foundIn):
            let tail = foundIn.map { " (it is in \(displayed($0)))" } ?? " (no shard holds it)"
            return "\(displayed(shard)): tensor '\(displayed(tensor))' is listed in the index for this shard but its header does not hold it\(tail)"
        case let .shardTensorNotInIndex(tensor, shard):
            return "\(displayed(shard)): tensor '\(displayed(tensor))' is in this shard but not in the index"
        case let .duplicateTensor(tensor, first, second):
            return "tensor '\(displayed(tensor))' appears in both \(displayed(first)) and \(displayed(second))"
        case let .checksumMismatch(file, expected, actual):
            return "\(displayed(file)): SHA-256 mismatch: expected \(displayed(expected)), found \(displayed(actual)): the file is corrupt or a different version; re-download it"
        case let .checksumListMalformed(file, line, reason):
            return "\(displayed(file)):\(line): \(displayed(reason, limit: nil))"
        case let .outsideFolder(file, target):
            return FileIOError.outsideFolder(file: file, target: target).description
        }
    }

    /// The file this error is about, when there is one.
    public var file: String? {
        switch self {
        case let .io(path, _, _), let .notACheckpoint(path, _): path
        case let .fileTooShort(f, _), let .lfsPointer(f), let .headerTooLarge(f, _, _), let .headerPastEnd(f, _, _),
            let .headerJSON(f, _), let .headerMalformed(f, _), let .tensorEntryMalformed(f, _, _), let .duplicateKey(f, _, _),
            let .unknownDType(f, _, _), let .metadataNotString(f, _), let .shapeOverflow(f, _, _), let .misalignedSlice(f, _, _, _),
            let .offsetsReversed(f, _, _, _), let .sizeMismatch(f, _, _, _, _, _), let .offsetGap(f, _, _, _, _),
            let .offsetOverlap(f, _, _, _, _), let .truncated(f, _, _), let .trailingBytes(f, _, _),
            let .indexMalformed(f, _), let .checksumMismatch(f, _, _), let .checksumListMalformed(f, _, _), let .outsideFolder(f, _):
            f
        case let .unsafeShardName(index, _): index
        case let .shardMissing(shard, _, _), let .indexTensorNotInShard(_, shard, _), let .shardTensorNotInIndex(_, shard):
            shard
        case let .duplicateTensor(_, first, _): first
        }
    }
}
