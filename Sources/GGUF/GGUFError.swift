import Foundation
import TensorCore

/// Everything that can be wrong with a GGUF file or a split set, each naming the file and, where there is one,
/// the key or tensor, with what was found and what was expected.
public enum GGUFError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The file could not be opened, mapped or read (errno text included).
    case io(path: String, operation: String, reason: String)
    /// The first four bytes are not `GGUF`.
    case notGGUF(file: String, magic: [UInt8])
    /// The version field reads as 2 or 3 only when byte-swapped: a big-endian file.
    case bigEndian(file: String)
    case unsupportedVersion(file: String, version: UInt32)
    /// The file ends inside the header (a count, a string, a value or a tensor info).
    case truncatedHeader(file: String, offset: Int, needed: Int, fileLength: Int, reading: String)
    /// A count (tensors, keys, array elements) that the rest of the file cannot hold.
    case countTooLarge(file: String, what: String, count: UInt64, limit: Int)
    /// A string whose length runs past the end of the file or over its limit.
    case stringTooLong(file: String, what: String, length: UInt64, limit: Int)
    case invalidUTF8(file: String, what: String)
    case unknownValueType(file: String, key: String, type: UInt32)
    case invalidBool(file: String, key: String, value: UInt8)
    case arrayTooDeep(file: String, key: String, limit: Int)
    case duplicateKey(file: String, key: String)
    /// A key the reader interprets has the wrong value type.
    case wrongKeyType(file: String, key: String, found: String, expected: String)
    case badAlignment(file: String, alignment: UInt64)
    case duplicateTensor(file: String, tensor: String)
    case tensorNameTooLong(file: String, tensor: String, length: Int)
    case tooManyDimensions(file: String, tensor: String, dimensions: UInt32)
    /// A dimension above 2⁶³ − 1 (ggml's `int64_t ne`).
    case dimensionTooLarge(file: String, tensor: String, dimension: UInt64)
    case unknownType(file: String, tensor: String, type: UInt32)
    /// `ne[0]` is not a whole number of the type's blocks.
    case rowNotWholeBlocks(file: String, tensor: String, ne0: Int, type: GGMLType)
    /// Element count or byte size overflows 64 bits.
    case shapeOverflow(file: String, tensor: String, ne: [UInt64])
    case misalignedOffset(file: String, tensor: String, offset: UInt64, alignment: Int)
    /// A tensor starts before the previous one (padded) ends.
    case offsetOverlap(file: String, tensor: String, previous: String, offset: UInt64, expected: Int)
    /// A tensor starts after the previous one (padded) ends, or the first one after 0.
    case offsetGap(file: String, tensor: String, previous: String?, offset: UInt64, expected: Int)
    /// The file ends before a tensor's data does (a truncated download).
    case tensorPastEnd(file: String, tensor: String, end: Int, fileLength: Int)
    /// The data section is shorter than the header's padding needs (no tensors).
    case truncatedData(file: String, fileLength: Int, expectedLength: Int)
    case trailingBytes(file: String, fileLength: Int, expectedLength: Int)

    // Split sets (`NAME-00001-of-00008.gguf`).
    /// A split part's name does not follow `NAME-NNNNN-of-MMMMM.gguf`, or disagrees with its `split.*` keys.
    case splitName(file: String, reason: String)
    /// Parts of the set that do not exist.
    case splitPartsMissing(file: String, missing: [String], count: Int)
    /// A part whose `split.*` keys (or architecture) disagree with the first part's: a part of another set.
    case splitForeignPart(file: String, key: String, found: String, expected: String, firstPart: String)
    /// The parts together hold a different number of tensors than `split.tensors.count` says.
    case splitTensorCount(file: String, found: Int, expected: Int)
    /// The same tensor name in two parts.
    case splitDuplicateTensor(tensor: String, firstPart: String, secondPart: String)

    // Dequantization.
    case cannotDequantize(file: String, tensor: String, type: GGMLType)
    case tensorNotFound(file: String, tensor: String)

    // Architecture metadata.
    case configKeyMissing(file: String, key: String)

    /// The file this error is about, when there is one.
    public var file: String? {
        switch self {
        case let .io(f, _, _), let .notGGUF(f, _), let .bigEndian(f), let .unsupportedVersion(f, _), let .truncatedHeader(f, _, _, _, _),
            let .countTooLarge(f, _, _, _), let .stringTooLong(f, _, _, _), let .invalidUTF8(f, _), let .unknownValueType(f, _, _),
            let .invalidBool(f, _, _), let .arrayTooDeep(f, _, _), let .duplicateKey(f, _), let .wrongKeyType(f, _, _, _),
            let .badAlignment(f, _), let .duplicateTensor(f, _), let .tensorNameTooLong(f, _, _), let .tooManyDimensions(f, _, _),
            let .dimensionTooLarge(f, _, _), let .unknownType(f, _, _), let .rowNotWholeBlocks(f, _, _, _), let .shapeOverflow(f, _, _),
            let .misalignedOffset(f, _, _, _), let .offsetOverlap(f, _, _, _, _), let .offsetGap(f, _, _, _, _),
            let .tensorPastEnd(f, _, _, _), let .truncatedData(f, _, _), let .trailingBytes(f, _, _), let .splitName(f, _),
            let .splitPartsMissing(f, _, _), let .splitForeignPart(f, _, _, _, _), let .splitTensorCount(f, _, _),
            let .cannotDequantize(f, _, _), let .tensorNotFound(f, _), let .configKeyMissing(f, _):
            f
        case let .splitDuplicateTensor(_, _, second): second
        }
    }

    public var description: String {
        switch self {
        case let .io(path, operation, reason):
            return "\(displayed(path)): cannot \(operation): \(displayed(reason, limit: nil))"
        case let .notGGUF(file, magic):
            let shown = magic.map { String(format: "%02X", $0) }.joined(separator: " ")
            return "\(displayed(file)): not a GGUF file (first bytes \(shown.isEmpty ? "none: the file is empty" : shown), expected 47 47 55 46 \"GGUF\")"
        case let .bigEndian(file):
            return "\(displayed(file)): a big-endian GGUF file; only little-endian GGUF is read"
        case let .unsupportedVersion(file, version):
            return "\(displayed(file)): GGUF version \(version) is not supported (versions 2 and 3 are read)"
        case let .truncatedHeader(file, offset, needed, length, reading):
            return "\(displayed(file)): the file ends inside the header: reading \(displayed(reading, limit: nil)) needs \(needed) bytes at byte \(offset) but the file is \(length) bytes (truncated download?)"
        case let .countTooLarge(file, what, count, limit):
            return "\(displayed(file)): \(displayed(what, limit: nil)) is \(count) but the rest of the file can hold at most \(limit)"
        case let .stringTooLong(file, what, length, limit):
            return "\(displayed(file)): \(displayed(what, limit: nil)) is \(length) bytes long, over the limit of \(limit) (the rest of the file or the format's limit)"
        case let .invalidUTF8(file, what):
            return "\(displayed(file)): \(displayed(what, limit: nil)) is not valid UTF-8"
        case let .unknownValueType(file, key, type):
            return "\(displayed(file)): key '\(displayed(key))': unknown value type \(type) (known: 0–12)"
        case let .invalidBool(file, key, value):
            return "\(displayed(file)): key '\(displayed(key))': a bool must be 0 or 1, found \(value)"
        case let .arrayTooDeep(file, key, limit):
            return "\(displayed(file)): key '\(displayed(key))': arrays nested deeper than \(limit) levels"
        case let .duplicateKey(file, key):
            return "\(displayed(file)): key '\(displayed(key))' appears twice in the metadata (readers disagree on which value wins)"
        case let .wrongKeyType(file, key, found, expected):
            return "\(displayed(file)): key '\(displayed(key))' is \(found), expected \(expected)"
        case let .badAlignment(file, alignment):
            return "\(displayed(file)): general.alignment \(alignment) is not a power of two"
        case let .duplicateTensor(file, tensor):
            return "\(displayed(file)): tensor '\(displayed(tensor))' is listed twice"
        case let .tensorNameTooLong(file, tensor, length):
            return "\(displayed(file)): tensor '\(displayed(tensor))': name is \(length) bytes, over GGUF's limit of \(GGUFFile.maxTensorNameLength)"
        case let .tooManyDimensions(file, tensor, n):
            return "\(displayed(file)): tensor '\(displayed(tensor))': \(n) dimensions, at most \(GGUFFile.maxDimensions) allowed"
        case let .dimensionTooLarge(file, tensor, dimension):
            return "\(displayed(file)): tensor '\(displayed(tensor))': dimension \(dimension) exceeds 2^63 - 1"
        case let .unknownType(file, tensor, type):
            let removed = GGMLType.removedName(type).map { " (\($0), removed from ggml)" } ?? ""
            return "\(displayed(file)): tensor '\(displayed(tensor))': unknown ggml type \(type)\(removed)"
        case let .rowNotWholeBlocks(file, tensor, ne0, type):
            return "\(displayed(file)): tensor '\(displayed(tensor))': ne[0] = \(ne0) is not a multiple of \(type.name)'s block size \(type.blockSize)"
        case let .shapeOverflow(file, tensor, ne):
            return "\(displayed(file)): tensor '\(displayed(tensor))': ne \(ne) overflows a 64-bit element or byte count"
        case let .misalignedOffset(file, tensor, offset, alignment):
            return "\(displayed(file)): tensor '\(displayed(tensor))': data offset \(offset) is not a multiple of the alignment \(alignment)"
        case let .offsetOverlap(file, tensor, previous, offset, expected):
            return "\(displayed(file)): tensor '\(displayed(tensor))': data offset \(offset) is inside '\(displayed(previous))', which ends (padded) at \(expected): overlapping tensors"
        case let .offsetGap(file, tensor, previous, offset, expected):
            let after = previous.map { "after '\(displayed($0))'" } ?? "at the start of the data section"
            return "\(displayed(file)): tensor '\(displayed(tensor))': data offset \(offset), expected \(expected) (\(after)): each offset must be the padded sum of the tensors before it"
        case let .tensorPastEnd(file, tensor, end, length):
            return "\(displayed(file)): tensor '\(displayed(tensor))': data ends at byte \(end) but the file is \(length) bytes: truncated by \(end - length) bytes (incomplete download?)"
        case let .truncatedData(file, length, expected):
            return "\(displayed(file)): file is \(length) bytes but its header describes \(expected) bytes (truncated?)"
        case let .trailingBytes(file, length, expected):
            return "\(displayed(file)): file is \(length) bytes but its header describes \(expected) bytes: \(length - expected) unexpected trailing bytes"
        case let .splitName(file, reason):
            return "\(displayed(file)): \(displayed(reason, limit: nil))"
        case let .splitPartsMissing(file, missing, count):
            let names = missing.prefix(8).map { displayed($0) }.joined(separator: ", ")
            let more = missing.count > 8 ? " and \(missing.count - 8) more" : ""
            return "\(displayed(file)): split set of \(count) parts is incomplete: missing \(names)\(more)"
        case let .splitForeignPart(file, key, found, expected, first):
            return "\(displayed(file)): \(displayed(key)) is \(displayed(found)) but \(displayed(first)) says \(displayed(expected)): this part belongs to another split set"
        case let .splitTensorCount(file, found, expected):
            return "\(displayed(file)): the parts hold \(found) tensors but split.tensors.count says \(expected)"
        case let .splitDuplicateTensor(tensor, first, second):
            return "tensor '\(displayed(tensor))' is in both \(displayed(first)) and \(displayed(second))"
        case let .cannotDequantize(file, tensor, type):
            return "\(displayed(file)): tensor '\(displayed(tensor))': type \(type.name) cannot be dequantized to float32"
        case let .tensorNotFound(file, tensor):
            return "\(displayed(file)): no tensor '\(displayed(tensor))'"
        case let .configKeyMissing(file, key):
            return "\(displayed(file)): metadata key '\(displayed(key))' is missing"
        }
    }
}
