import FileIO
import Foundation
import TensorCore

/// The k2pack file format, version 1 (docs/FORMAT.md). All integers little-endian.
///
///     0   8  magic "K2PACK\0\0"
///     8   4  version (1)
///    12   4  flags (`PackFlags`: 0x1 sliced sources, 0x2 archive; a reader refuses a bit it does not know)
///    16   8  alignment of the table and of every tensor's data (4096)
///    24   8  table offset (= alignment)
///    32   8  table length in bytes (JSON, UTF-8)
///    40   8  data offset (first tensor; a multiple of the alignment)
///    48   8  file length
///    56   8  xxHash64 of the table bytes
///    64..    zero up to the table; table; zero up to the data; tensors, each at a multiple of the alignment
///
/// The compressed archive form (`.k2z`, magic "K2PACKZ\0") has the same header; its data starts at 64 and is
/// a run of independent zstd frames, at most 64 MiB of content each and never spanning two source tensors;
/// the table follows the data and ends the file.
public enum PackSpec {
    public static let magic: [UInt8] = Array("K2PACK".utf8) + [0, 0]
    public static let archiveMagic: [UInt8] = Array("K2PACKZ".utf8) + [0]
    public static let archiveExtension = "k2z"
    /// Content of one archive frame at most: a reader never holds more than this decompressed.
    public static let maxFrameSize = 64 << 20
    public static let version: UInt32 = 1
    public static let alignment = 4096
    public static let fixedHeaderSize = 64
    /// The largest table a reader accepts (a real layer's table is a few hundred KB).
    public static let maxTableLength = 256 << 20
    public static let fileExtension = "k2p"

    public static func aligned(_ n: Int, to alignment: Int = PackSpec.alignment) -> Int {
        (n + alignment - 1) / alignment * alignment
    }
}

/// The header's flags (offset 12): each bit marks a feature that changes what the file's bytes mean, so that a
/// reader which does not know it refuses the file instead of misreading it. A reader refuses every bit it does
/// not know. Files written before the flags were defined have flags 0 and are still read: the magic and the
/// table say the same thing unambiguously (docs/FORMAT.md, "Header flags").
public struct PackFlags: OptionSet, Sendable, Hashable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// Some source is a block of its source tensor (`slice`): a stored source's bytes are not that source
    /// tensor's bytes (a rank of a shard set).
    public static let slicedSources = PackFlags(rawValue: 1 << 0)
    /// The compressed archive form (`.k2z`): data from byte 64 as zstd frames, the table last.
    public static let archive = PackFlags(rawValue: 1 << 1)
    /// Every bit this build knows.
    public static let known: PackFlags = [.slicedSources, .archive]

    /// What a writer sets for a file of these tensors.
    public static func of(sources: some Sequence<PackSource>, archive: Bool) -> PackFlags {
        var flags: PackFlags = archive ? .archive : []
        if sources.contains(where: { $0.slice != nil }) { flags.insert(.slicedSources) }
        return flags
    }

    /// `0x3 (sliced sources, archive)`, for messages.
    public var text: String {
        let names = [(PackFlags.slicedSources, "sliced sources"), (.archive, "archive")].filter { contains($0.0) }.map(\.1)
        return "0x\(String(rawValue, radix: 16))" + (names.isEmpty ? "" : " (\(names.joined(separator: ", ")))")
    }
}

/// Where one slice of a stored tensor came from in the Hugging Face checkpoint.
public struct PackSource: Codable, Sendable, Equatable, Hashable {
    /// The tensor's name in the source checkpoint.
    public var name: String
    /// The source shard file.
    public var shard: String
    /// Byte offset of its data in the source shard file.
    public var offset: Int
    /// Bytes stored (all runs together).
    public var length: Int
    /// Present when the stored bytes are one block of the source tensor along a dimension (a rank's share in a
    /// `shard` output): which block, and where its bytes lie in the source.
    public var slice: PackSlice?

    enum CodingKeys: String, CodingKey, CaseIterable { case name, shard, offset, length, slice }

    public init(name: String, shard: String, offset: Int, length: Int, slice: PackSlice? = nil) {
        self.name = name
        self.shard = shard
        self.offset = offset
        self.length = length
        self.slice = slice
    }

    /// Bytes of each run (the whole length unless sliced).
    public var runLength: Int { slice.map { length / max($0.runs, 1) } ?? length }
    /// Source bytes from the first run's start to the last run's end (nil when the slice's numbers overflow).
    public var span: Int? {
        guard let slice, slice.runs > 1 else { return length }
        guard let gaps = CheckedMath.multiply(slice.runs - 1, slice.stride) else { return nil }
        return CheckedMath.add(gaps, runLength)
    }
}

/// The block `[start, end)` along `dimension` of a source tensor, stored as `runs` equal runs of bytes that lie
/// `stride` bytes apart in the source (one run when the block is contiguous, e.g. along dimension 0).
public struct PackSlice: Codable, Sendable, Equatable, Hashable {
    public var dimension: Int
    public var start: Int
    public var end: Int
    public var runs: Int
    public var stride: Int

    enum CodingKeys: String, CodingKey, CaseIterable { case dimension, start, end, runs, stride }

    public init(dimension: Int, start: Int, end: Int, runs: Int, stride: Int) {
        self.dimension = dimension
        self.start = start
        self.end = end
        self.runs = runs
        self.stride = stride
    }

    /// Where the block of `[start, end)` along `dimension` of a row-major tensor lies: its first byte (from the
    /// tensor's start), its runs, the bytes of each run and the distance between runs. Nil if it overflows.
    public static func geometry(shape: [Int], elementBytes: Int, dimension: Int, start: Int, end: Int)
        -> (offset: Int, runs: Int, runLength: Int, stride: Int)?
    {
        guard dimension >= 0, dimension < shape.count, start >= 0, start <= end, end <= shape[dimension] else { return nil }
        guard let outer = CheckedMath.product(Array(shape[..<dimension])),
            let innerElements = CheckedMath.product(Array(shape[(dimension + 1)...])),
            let inner = CheckedMath.multiply(innerElements, elementBytes),
            let stride = CheckedMath.multiply(inner, shape[dimension]),
            let offset = CheckedMath.multiply(inner, start),
            let run = CheckedMath.multiply(inner, end - start)
        else { return nil }
        return (offset, outer, run, stride)
    }
}

/// One independently decodable zstd frame of an archived tensor.
public struct PackFrame: Codable, Sendable, Equatable {
    /// Absolute offset and length of the compressed frame in the file.
    public var offset: Int
    public var length: Int
    /// Bytes it decompresses to.
    public var size: Int

    enum CodingKeys: String, CodingKey, CaseIterable { case offset, length, size }
    public init(offset: Int, length: Int, size: Int) {
        self.offset = offset
        self.length = length
        self.size = size
    }
}

/// One tensor stored in a k2pack file. A stacked tensor (routed experts, expert-major) has one source per
/// expert, in order; its bytes are the sources' bytes concatenated.
public struct PackTensor: Codable, Sendable, Equatable {
    public var name: String
    public var dtype: DType
    public var shape: [Int]
    /// Absolute byte offset in the file (a multiple of the alignment).
    public var offset: Int
    public var length: Int
    /// xxHash64 of the tensor's bytes, 16 hex digits.
    public var xxh64: String
    public var sources: [PackSource]
    /// Archive form only: the frames holding the tensor's bytes, in order (absent in `.k2p` files). In an
    /// archive, `offset` is the first frame's and `length` the uncompressed length.
    public var frames: [PackFrame]?

    enum CodingKeys: String, CodingKey, CaseIterable { case name, dtype, shape, offset, length, xxh64, sources, frames }

    public init(name: String, dtype: DType, shape: [Int], offset: Int, length: Int, xxh64: String, sources: [PackSource], frames: [PackFrame]? = nil) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.offset = offset
        self.length = length
        self.xxh64 = xxh64
        self.sources = sources
        self.frames = frames
    }
}

/// The tensor table of one file.
public struct PackTable: Codable, Sendable, Equatable {
    public var format = "k2pack"
    public var version = Int(PackSpec.version)
    public var alignment = PackSpec.alignment
    /// "zstd" in the archive form; absent otherwise.
    public var compression: String?
    public var tensors: [PackTensor]

    enum CodingKeys: String, CodingKey, CaseIterable { case format, version, alignment, compression, tensors }

    public init(tensors: [PackTensor], compression: String? = nil) {
        self.tensors = tensors
        self.compression = compression
    }

    func encoded() throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return Array(try encoder.encode(self))
    }
}

/// Problems with a k2pack file or folder, naming the file and tensor.
public enum PackError: Error, Equatable, Sendable, CustomStringConvertible {
    case io(path: String, operation: String, reason: String)
    case notPack(file: String, reason: String)
    case unsupportedVersion(file: String, version: UInt32)
    case headerInvalid(file: String, reason: String)
    case tableChecksum(file: String, expected: String, actual: String)
    case tableInvalid(file: String, reason: String)
    case tensorInvalid(file: String, tensor: String, reason: String)
    case checksumMismatch(file: String, tensor: String, expected: String, actual: String)
    case sourceInvalid(reason: String)
    /// `resumable`: the command has `--resume` (convert), and the message says so.
    case outputExists(path: String, resumable: Bool = false)

    public var description: String {
        switch self {
        case let .io(path, operation, reason): FileIOError.io(path: path, operation: operation, reason: reason).description
        case let .notPack(file, reason): "\(displayed(file)): not a k2pack file: \(displayed(reason, limit: nil))"
        case let .unsupportedVersion(file, version): "\(displayed(file)): k2pack format version \(version) is not supported (this build reads version \(PackSpec.version))"
        case let .headerInvalid(file, reason): "\(displayed(file)): invalid header: \(displayed(reason, limit: nil))"
        case let .tableChecksum(file, expected, actual): "\(displayed(file)): tensor table is corrupt: xxHash64 \(displayed(actual)), header records \(displayed(expected))"
        case let .tableInvalid(file, reason): "\(displayed(file)): invalid tensor table: \(displayed(reason, limit: nil))"
        case let .tensorInvalid(file, tensor, reason): "\(displayed(file)): tensor '\(displayed(tensor))': \(displayed(reason, limit: nil))"
        case let .checksumMismatch(file, tensor, expected, actual): "\(displayed(file)): tensor '\(displayed(tensor))': data is corrupt: xxHash64 \(displayed(actual)), table records \(displayed(expected))"
        case let .sourceInvalid(reason): "cannot convert: \(displayed(reason, limit: nil))"
        case let .outputExists(path, resumable): FileIOError.outputExists(path: path, resumable: resumable).description
        }
    }
}
