import Checkpoint
import FileIO
import Forward
import Foundation
import LoadedModel
import ModelConfig
import PackFormat
import TensorCore

/// Opens a model folder for the forward pass: a Hugging Face checkpoint or a k2pack folder.
public enum ModelStore {
    public enum Kind: String, Sendable { case huggingFace = "hf", k2pack }

    public struct Opened: Sendable {
        public var kind: Kind
        public var config: ModelConfig
        /// The tensors the config implies, built once when the folder is opened.
        public var expected: ExpectedTensorList
        public var store: any TensorStore

        /// The forward pass's weights from this folder.
        public func weights(dequant: Dequantization = .exact) throws(ForwardError) -> ManifestWeightSource {
            try ManifestWeightSource(config: config, expected: expected, store: store, dequant: dequant)
        }
    }

    /// Validates the folder's structure first (headers, index, config, tensor list) and refuses a broken one,
    /// naming its first problem, rather than computing with it.
    public static func open(_ path: String) throws -> Opened {
        if FolderKind(folder: path) == .pack {
            let store = try PackTensorStore(folder: path)
            let expected: ExpectedTensorList
            do { expected = try ExpectedTensorList(config: store.config) } catch { throw ForwardError.config(key: "config", reason: error.description) }
            return Opened(kind: .k2pack, config: store.config, expected: expected, store: store)
        }
        let checkpoint = try LoadedCheckpoint(path: path)
        if let reason = checkpoint.unusableReason { throw ForwardError.unusableCheckpoint(reason: reason) }
        guard let config = checkpoint.config, let expected = checkpoint.expected else {
            throw ForwardError.noReadableConfig(folder: path)
        }
        return Opened(kind: .huggingFace, config: config, expected: expected, store: CheckpointTensorStore(checkpoint.directory))
    }
}

/// Keeps track of the mapped ranges viewed since the last release.
final class ViewedRanges: Sendable {
    private let ranges = Locked<[(file: ReadOnlyFile, range: Range<Int>)]>([])

    func add(_ file: ReadOnlyFile, _ range: Range<Int>) {
        ranges.withLock { $0.append((file, range)) }
    }

    func release() {
        let all = ranges.withLock { ranges in
            defer { ranges.removeAll() }
            return ranges
        }
        for (file, range) in all { file.adviseDone(range) }
    }
}

/// Tensors of a Hugging Face folder, viewed in the shards' mappings.
public final class CheckpointTensorStore: TensorStore, @unchecked Sendable {
    public let directory: CheckpointDirectory
    private let viewed = ViewedRanges()

    /// Builds the directory's name table now (`CheckpointDirectory.locations`, built on first use): the forward
    /// pass looks every tensor up by name, and the first lookup would otherwise build it inside the first layer
    /// (1.2 ms of one thread for a K2.5 checkpoint of three layers, timed as part of that layer's token).
    public init(_ directory: CheckpointDirectory) {
        self.directory = directory
        _ = directory.locations
    }

    public func view(_ name: String) throws(ForwardError) -> TensorView {
        guard let (shard, entry) = directory.entry(named: name) else { throw .missingTensor(name) }
        do {
            let bytes = try shard.bytes(of: entry)
            let file = shard.file, start = entry.rangeInFile.lowerBound
            file.adviseHugePages()
            viewed.add(file, entry.rangeInFile)
            return TensorView(
                name: name, dtype: entry.dtype, shape: entry.shape, bytes: bytes,
                release: { file.adviseDone((start + $0.lowerBound)..<(start + $0.upperBound)) },
                prefetch: { file.adviseSequential((start + $0.lowerBound)..<(start + $0.upperBound)) })
        } catch {
            throw .io(error.description)
        }
    }

    public func releaseViewed() { viewed.release() }
}

/// Tensors of a k2pack folder. A routed expert's tensor is its slice of the expert-major stack (the stack's
/// sources list the experts in order), so the forward pass sees the checkpoint's own names and shapes.
public final class PackTensorStore: TensorStore, @unchecked Sendable {
    public let folder: String
    public let config: ModelConfig
    private let files: [PackFile]
    /// Where each checkpoint tensor is stored (a stack's experts: its slices).
    private let slices: PackSliceIndex
    /// A rank folder of a shard set: the block each split tensor's source holds.
    public private(set) var blocks: [String: PackSlice] = [:]
    private let viewed = ViewedRanges()

    /// `asRank`: open one rank folder of a shard set (its tensors are that rank's blocks).
    public init(folder: String, asRank: Bool = false) throws {
        self.folder = folder
        let manifest = try PackManifest.read(folder: folder)
        if let shard = manifest.shard, !asRank {
            throw ForwardError.rankOfSet(folder: folder, rank: shard.rank)
        }
        let configPath = folder + "/" + CheckpointDirectory.configFileName
        guard FileManager.default.fileExists(atPath: configPath) else {
            throw ForwardError.missingConfig(path: configPath)
        }
        config = try ModelConfig.parse(try ReadOnlyFile(folder: folder, name: CheckpointDirectory.configFileName).readAll())
        files = try manifest.files.map { try PackFile(folder: folder, name: $0) }
        if let archive = files.first(where: \.isArchive) {
            throw ForwardError.unsupported("\(displayed(archive.name)) is a zstd archive (convert --compress); run the forward pass on the uncompressed k2pack folder or the Hugging Face folder")
        }
        for file in files {
            for t in file.table.tensors {
                for source in t.sources { if let slice = source.slice { blocks[source.name] = slice } }
                // A stack [n, ...] (even of one expert: it has a name of its own): source i is element i along the
                // first dimension.
                let whole = t.sources.count == 1 && t.sources[0].name == t.name
                guard t.sources.isEmpty || whole || (t.shape.first == t.sources.count && t.sources.allSatisfy({ $0.length == t.length / t.sources.count })) else {
                    throw PackError.tensorInvalid(file: file.name, tensor: t.name, reason: "its \(t.sources.count) sources do not split it evenly along its first dimension")
                }
            }
        }
        slices = PackSliceIndex(files)
    }

    /// Where checkpoint tensor `name` is stored: the last copy, as a whole tensor or one expert of a stack.
    private func location(_ name: String) -> (file: Int, offset: Int, length: Int, dtype: DType, shape: [Int])? {
        guard let slice = slices[name].last else { return nil }
        let t = slice.tensor
        if slice.isWholeTensor { return (slice.file, t.offset, t.length, t.dtype, t.shape) }
        return (slice.file, slice.range.lowerBound, slice.source.length, t.dtype, Array(t.shape.dropFirst()))
    }

    /// The stored dtype of a checkpoint tensor, when this folder holds it.
    public func dtype(of name: String) -> DType? { location(name)?.dtype }

    public func view(_ name: String) throws(ForwardError) -> TensorView {
        guard let loc = location(name) else { throw .missingTensor(name) }
        let file = files[loc.file]
        do {
            let whole = try file.file.mapped()
            let handle = file.file, start = loc.offset
            handle.adviseHugePages()
            viewed.add(handle, loc.offset..<(loc.offset + loc.length))
            return TensorView(
                name: name, dtype: loc.dtype, shape: loc.shape, bytes: UnsafeRawBufferPointer(rebasing: whole[loc.offset..<(loc.offset + loc.length)]),
                release: { handle.adviseDone((start + $0.lowerBound)..<(start + $0.upperBound)) },
                prefetch: { handle.adviseSequential((start + $0.lowerBound)..<(start + $0.upperBound)) })
        } catch {
            throw .io("\(displayed(file.name)): \(error.description)")
        }
    }

    public func releaseViewed() { viewed.release() }
}
