import Checkpoint
import FileIO
import Foundation
import LoadedModel
import JSONCore
import ModelConfig
import PackFormat
import TensorCore

/// `k2pack convert`: a Hugging Face checkpoint folder → a k2pack folder.
///
/// One file per decoder layer (`layer-0001.k2p`) and one for everything else (`globals.k2p`: embeddings, final
/// norm, lm_head, vision tower, projector). Routed experts are stacked expert-major: for each layer and each of
/// `gate/up/down_proj.{weight_packed, weight_scale, weight_shape}`, one tensor `[experts, …]` whose bytes are the
/// experts' bytes in order, bit for bit. Source headers, index and config.json are kept verbatim, and every other
/// file of the folder (tokenizer, remote code, docs, …) is carried byte for byte with its SHA-256.
public enum Converter {
    public struct Options: Sendable {
        public var resume = false
        public var threads = ProcessInfo.processInfo.activeProcessorCount
        /// zstd level of the compressed archive form (`.k2z`); nil: the uncompressed, mmap-friendly form.
        public var compressionLevel: Int32?
        public init(resume: Bool = false, compressionLevel: Int32? = nil) {
            self.resume = resume
            self.compressionLevel = compressionLevel
        }
    }

    public struct Report: Sendable, Codable {
        public var files: [String]
        public var filesReused: [String]
        public var tensors: Int
        public var stackedTensors: Int
        /// Files of the folder besides its tensors, carried byte for byte.
        public var carriedFiles: Int
        public var bytes: Int
        /// Size of the data files written (compressed in the archive form; tables and padding included).
        public var fileBytes: Int
        public var seconds: Double
    }

    /// What goes into each output file, in order.
    /// `share`, when given, picks what a rank stores of each source tensor (its shape and source slice; nil: none
    /// of it), and `experts` are the routed experts a file's stacks hold.
    public static func plan(
        _ checkpoint: LoadedCheckpoint, fileExtension: String = PackSpec.fileExtension, experts: Range<Int>? = nil,
        share: ((TensorEntry, ExpectedTensor?, PackSource) -> (shape: [Int], source: PackSource)?)? = nil
    ) -> [(file: String, tensors: [PlannedTensor])] {
        let dir = checkpoint.directory
        enum Item { case single(PlannedTensor), stack(String) }
        var files: [String] = []
        var items: [String: [Item]] = [:]
        var stacks: [String: [(expert: Int, tensor: PlannedTensor)]] = [:]
        for (s, shard) in dir.shards.enumerated() {
            guard let shard else { continue }
            for (e, entry) in shard.tensors.enumerated() {
                let expected = checkpoint.expected(shard: s, entry: e)
                let file = expected?.layer.map { "layer-" + String(format: "%04d", $0) + "." + fileExtension }
                    ?? "globals." + fileExtension
                if items[file] == nil {
                    files.append(file)
                    items[file] = []
                }
                var source = PackSource(name: entry.name, shard: dir.shardNames[s], offset: entry.rangeInFile.lowerBound, length: entry.byteCount)
                var shape = entry.shape
                if let share {
                    guard let mine = share(entry, expected, source) else { continue }
                    (shape, source) = mine
                }
                let single = PlannedTensor(name: entry.name, dtype: entry.dtype, shape: shape, sources: [source])
                if let stack = expected?.stackName, let expert = expected?.expert {
                    if stacks[stack] == nil { items[file]!.append(.stack(stack)) }
                    stacks[stack, default: []].append((expert, single))
                } else {
                    items[file]!.append(.single(single))
                }
            }
        }
        let experts = Array(experts ?? 0..<(checkpoint.config?.text.numRoutedExperts ?? 0))
        return files.filter { !(items[$0]?.isEmpty ?? true) }.map { file in
            let tensors = items[file]!.flatMap { item -> [PlannedTensor] in
                switch item {
                case .single(let t): return [t]
                case .stack(let name):
                    let members = stacks[name]!.sorted { $0.expert < $1.expert }
                    let first = members[0].tensor
                    // Stack only a complete, uniform set; otherwise keep the experts as they are.
                    guard members.map(\.expert) == experts,
                        members.allSatisfy({ $0.tensor.dtype == first.dtype && $0.tensor.shape == first.shape })
                    else { return members.map(\.tensor) }
                    return [PlannedTensor(name: name, dtype: first.dtype, shape: [experts.count] + first.shape, sources: members.flatMap(\.tensor.sources))]
                }
            }
            return (file, tensors)
        }
    }

    public static func convert(
        input: String, output: String, options: Options = Options(), progress: (@Sendable (Int, Int) -> Void)? = nil
    ) throws -> Report {
        let start = Date()
        let checkpoint = try LoadedCheckpoint(path: input)
        if let reason = checkpoint.unusableReason { throw PackError.sourceInvalid(reason: reason) }
        let dir = checkpoint.directory
        let plan = plan(checkpoint, fileExtension: options.compressionLevel == nil ? PackSpec.fileExtension : PackSpec.archiveExtension)
        // Every other file of the folder is carried; its names are checked with the plan's before anything is written.
        let carried = try CarriedFiles.list(checkpoint: dir)
        if let reason = PackManifest.namesProblem(files: plan.map(\.file), sourceShards: dir.shardNames, carried: carried) {
            throw PackError.sourceInvalid(reason: "\(displayed(input)): \(reason)")
        }
        try prepare(output: output, input: input, resume: options.resume)
        let reader = SourceReader(dir)
        let total = plan.reduce(0) { $0 + $1.tensors.reduce(0) { $0 + $1.length } }
        let counter = ProgressCounter(total: total, report: progress)

        let results: [Result<Bool, any Error>] = parallelMap(count: plan.count, width: options.threads) { i in
            Result {
                let (file, tensors) = plan[i]
                let path = output + "/" + file
                if options.resume, reusable(path: path, planned: tensors) {
                    counter.add(tensors.reduce(0) { $0 + $1.length })
                    return true
                }
                try reader.write(path: path, tensors: tensors, compressionLevel: options.compressionLevel, progress: counter.add)
                return false
            }
        }
        var reused: [String] = []
        for (i, result) in results.enumerated() where try result.get() { reused.append(plan[i].file) }

        // Verbatim source records, then the manifest last: its presence marks a finished conversion.
        try keepSourceRecords(dir, input: input, output: output)
        if let config = dir.configBytes { try AtomicFile.write(config, to: output + "/" + CheckpointDirectory.configFileName) }
        // Carried files are copied again on --resume (they are small); their checksums come from this copy.
        let records = try carried.map { try CarriedFiles.copy($0, from: input, to: output) }
        let manifest = PackManifest(
            architecture: checkpoint.config?.architecture.name ?? "unknown", files: plan.map(\.file), sourceShards: dir.shardNames,
            sourceIndex: dir.index != nil, carried: records)
        try AtomicFile.write(try manifest.encoded(), to: output + "/" + PackManifest.fileName)
        return Report(
            files: plan.map(\.file), filesReused: reused, tensors: plan.reduce(0) { $0 + $1.tensors.count },
            stackedTensors: plan.reduce(0) { $0 + $1.tensors.filter { $0.sources.count > 1 }.count }, carriedFiles: records.count, bytes: total,
            fileBytes: try plan.reduce(0) { $0 + (try ReadOnlyFile(path: output + "/" + $1.file).byteCount) },
            seconds: Date().timeIntervalSince(start))
    }

    /// Keeps the source shards' headers (and index) verbatim under `source/`: what export and merge rebuild from.
    public static func keepSourceRecords(_ dir: CheckpointDirectory, input: String, output: String) throws {
        let sourceFolder = output + "/" + PackManifest.sourceFolder
        try OutputPaths.makeFolder(sourceFolder)
        for (i, name) in dir.shardNames.enumerated() {
            guard let shard = dir.shards[i] else { continue }
            let header = try shard.file.read(count: shard.header.dataStartInFile, at: 0)
            try AtomicFile.write(header, to: sourceFolder + "/" + name + PackManifest.headerSuffix)
        }
        if dir.index != nil {
            try AtomicFile.write(try ReadOnlyFile(folder: input, name: ShardIndex.fileName).readAll(), to: sourceFolder + "/" + ShardIndex.fileName)
        }
    }

    /// The output folder must be new or empty, unless resuming; never a link, never overlapping the input.
    public static func prepare(output: String, input: String, resume: Bool) throws {
        do throws(FileIOError) {
            try OutputPaths.prepareFolder(output, inputs: [input], existing: resume ? .resumable : .empty)
        } catch {
            guard case .outputExists(let path, _) = error else { throw error }
            throw PackError.outputExists(path: path, resumable: true)
        }
    }

    /// A finished file from an earlier run can be kept when its table is exactly the planned one and every
    /// tensor's checksum still verifies.
    static func reusable(path: String, planned: [PlannedTensor]) -> Bool {
        guard let file = try? PackFile(path: path), file.table.tensors.count == planned.count else { return false }
        let same = zip(file.table.tensors, planned).allSatisfy { $0.name == $1.name && $0.dtype == $1.dtype && $0.shape == $1.shape && $0.sources == $1.sources }
        return same && file.verifyChecksums().isEmpty
    }
}


/// Reads planned tensors' source slices from a checkpoint's mapped shards and writes k2pack files, dropping
/// copied pages from the process as it goes (memory stays bounded; the page cache keeps them).
public struct SourceReader: @unchecked Sendable {
    /// Keyed by shard name as bytes: an index may name both the NFC and the NFD spelling of a shard, two files.
    let shards: [ByteName: SafetensorsFile]

    public init(_ dir: CheckpointDirectory) {
        var shards: [ByteName: SafetensorsFile] = [:]
        for (i, name) in dir.shardNames.enumerated() { if let shard = dir.shards[i] { shards[ByteName(name)] = shard } }
        self.shards = shards
    }

    public func write(path: String, tensors: [PlannedTensor], compressionLevel: Int32? = nil, progress: (Int) -> Void) throws {
        let read = { (source: PackSource) throws -> UnsafeRawBufferPointer in
            guard let shard = shards[ByteName(source.shard)] else { throw PackError.sourceInvalid(reason: "no shard \(displayed(source.shard))") }
            let whole = try shard.file.mapped()
            guard let span = source.span, let end = CheckedMath.add(source.offset, span), source.offset >= 0, end <= whole.count else {
                throw PackError.sourceInvalid(reason: "\(displayed(source.shard)): '\(displayed(source.name))' lies outside the file")
            }
            shard.file.adviseSequential(source.offset..<end)
            return UnsafeRawBufferPointer(rebasing: whole[source.offset..<end])
        }
        let release = { (source: PackSource, copied: Range<Int>) -> Void in
            shards[ByteName(source.shard)]?.file.adviseDone((source.offset + copied.lowerBound)..<(source.offset + copied.upperBound))
        }
        // A source rewritten or truncated while it was read (a sync, a re-download) must not become a file that
        // looks finished: its length and modification time are checked before the file is renamed into place,
        // and when writing failed (a write from a mapping that shrank fails with EFAULT), to say why.
        let used = Set(tensors.flatMap { $0.sources.map { ByteName($0.shard) } })
        let unchanged = { () throws -> Void in
            for name in used.sorted() { try shards[name]?.file.checkUnchanged() }
        }
        do {
            if let level = compressionLevel {
                _ = try PackWriter.writeArchive(
                    path: path, tensors: tensors, level: level, read: read, release: release, progress: progress, beforeCommit: unchanged)
            } else {
                _ = try PackWriter.write(path: path, tensors: tensors, read: read, release: release, progress: progress, beforeCommit: unchanged)
            }
        } catch {
            try unchanged()
            throw error
        }
    }
}
