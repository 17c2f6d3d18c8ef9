import Checkpoint
import FileIO
import Foundation
import JSONCore
#if canImport(Glibc)
import Glibc
#endif
import LoadedModel
import JSONCore
import ModelConfig
import PackFormat
import TensorCore

/// `k2pack shard`: writes each rank's share of a Hugging Face checkpoint as a k2pack folder. A rank's tensors
/// keep their checkpoint names; a split tensor's shape is its block's, and its source records which block of
/// which source tensor it is (`PackSlice`), so the set is self-describing. Only the byte ranges a rank needs are
/// read, so many processes can write the ranks of one set at once, each its own.
public enum ShardWriter {
    public struct Options: Sendable {
        public var layout: ShardLayout
        /// The ranks to write (nil: all).
        public var ranks: [Int]?
        public var threads = ProcessInfo.processInfo.activeProcessorCount
        public init(layout: ShardLayout, ranks: [Int]? = nil) {
            self.layout = layout
            self.ranks = ranks
        }
    }

    public struct Report: Sendable, Codable {
        public var layout: ShardLayout
        public var ranks: [Int]
        public var files: Int
        /// Tensor bytes written (replicated tensors count on every rank that holds them).
        public var bytes: Int
        public var seconds: Double
    }

    public static func write(
        input: String, output: String, options: Options, progress: (@Sendable (Int, Int) -> Void)? = nil
    ) throws -> Report {
        let start = Date()
        try OutputPaths.refuseOverlap(output: output, inputs: [input])
        let checkpoint = try LoadedCheckpoint(path: input)
        if let reason = checkpoint.unusableReason { throw ShardError.input(reason) }
        let layout = options.layout
        let plan = try ShardPlan(checkpoint, layout: layout)
        let ranks = options.ranks ?? Array(0..<layout.ranks)
        // The checkpoint's other files go into the set's folder and every rank's (each rank is self-contained).
        let carried = try CarriedFiles.list(checkpoint: checkpoint.directory)
        if let reason = PackManifest.namesProblem(
            files: [], sourceShards: checkpoint.directory.shardNames, carried: carried, alsoReserved: ShardSetManifest.rankFolders(layout))
        {
            throw ShardError.input("\(displayed(input)): \(reason)")
        }
        for r in ranks where r < 0 || r >= layout.ranks {
            throw ShardError.layout("rank \(r) is outside 0..<\(layout.ranks) (tp \(layout.tp) × ep \(layout.ep))")
        }
        let architecture = checkpoint.config?.architecture.name ?? "unknown"
        var jobs: [(rank: Int, file: String, tensors: [PlannedTensor])] = []
        var filesOfRank: [Int: [String]] = [:]
        for r in ranks {
            let mine = Dictionary(plan.pieces[r].map { ($0.tensor, $0) }, uniquingKeysWith: { first, _ in first })
            let experts = plan.ranks[r].experts.map { $0[0]..<$0[1] }
            let files = PackFolderWriter.plan(
                checkpoint.directory, expected: { checkpoint.expected(shard: $0, entry: $1) },
                experts: experts ?? 0..<(checkpoint.config?.text.numRoutedExperts ?? 0)
            ) { entry, source in
                mine[entry.name].map { share($0, of: entry, source: source) }
            }
            filesOfRank[r] = files.map(\.file)
            if let reason = PackManifest.namesProblem(files: files.map(\.file), sourceShards: [], carried: carried) {
                throw ShardError.input("\(displayed(input)): \(reason)")
            }
            jobs += files.map { (r, $0.file, $0.tensors) }
        }
        // All ranks: a new or empty folder. Some ranks (one process of many): the set's folder may already hold
        // other ranks; each rank folder written here must be new or empty.
        if options.ranks == nil {
            do throws(FileIOError) { try OutputPaths.prepareFolder(output, inputs: [input], existing: .empty) } catch {
                guard case .outputExists = error else { throw error }
                throw ShardError.input("\(displayed(output)): already exists and is not empty; choose a new folder (an interrupted shard leaves rank folders without k2pack.json; remove the folder to start again)")
            }
        } else {
            try OutputPaths.prepareFolder(output, inputs: [input], existing: .shared)
        }
        for r in ranks { try claim(output + "/" + ShardSetManifest.rankFolder(r)) }
        let work = jobs
        let total = work.reduce(0) { $0 + $1.tensors.reduce(0) { $0 + $1.length } }
        let counter = ProgressCounter(total: total, report: progress)
        let reader = SourceReader(checkpoint.directory)
        let results: [Result<Void, any Error>] = parallelMap(count: work.count, width: options.threads) { i in
            Result {
                let job = work[i]
                let path = output + "/" + ShardSetManifest.rankFolder(job.rank) + "/" + job.file
                try reader.write(path: path, tensors: job.tensors, progress: counter.add)
            }
        }
        for result in results { try result.get() }

        let dir = checkpoint.directory
        if ranks.contains(0) {
            try PackFolderWriter.keepSourceRecords(dir, input: input, output: output)
            if let config = dir.configBytes { try AtomicFile.write(config, to: output + "/" + CheckpointDirectory.configFileName) }
            let records = try carried.map { try CarriedFiles.copy($0, from: input, to: output) }
            let set = ShardSetManifest(
                architecture: architecture, layout: layout, sourceShards: dir.shardNames, sourceIndex: dir.index != nil, carried: records)
            try AtomicFile.write(try set.encoded(), to: output + "/" + ShardSetManifest.fileName)
        }
        // Each rank's manifest last: its presence marks the rank finished.
        for r in ranks {
            let folder = output + "/" + ShardSetManifest.rankFolder(r)
            if let config = dir.configBytes { try AtomicFile.write(config, to: folder + "/" + CheckpointDirectory.configFileName) }
            let records = try carried.map { try CarriedFiles.copy($0, from: input, to: folder) }
            let record = ShardRecord(
                tp: layout.tp, ep: layout.ep, rank: r, experts: plan.ranks[r].experts ?? [0, 0],
                vision: layout.visionOnEveryRank || r == 0)
            let manifest = PackManifest(
                architecture: architecture, files: filesOfRank[r] ?? [], sourceShards: [], sourceIndex: false, shard: record, carried: records)
            try PackFolderWriter.writeRecord(manifest, to: folder)
        }
        return Report(layout: layout, ranks: ranks, files: jobs.count, bytes: total, seconds: Date().timeIntervalSince(start))
    }

    /// Creates a rank's folder, failing if it exists: two processes told to write the same rank cannot both
    /// write it (`mkdir` is atomic), and a rank already written is never written over.
    static func claim(_ folder: String) throws {
        guard mkdir(folder, 0o755) == 0 else {
            if errno == EEXIST {
                throw ShardError.input("\(displayed(folder)): already exists (written before, or being written by another process); remove it to write this rank again")
            }
            throw PackError.io(path: folder, operation: "create the folder", reason: String(cString: strerror(errno)))
        }
    }

    /// A rank's piece of a source tensor: its shape and the slice of the source it is.
    static func share(_ piece: ShardPlan.Piece, of entry: TensorEntry, source: PackSource) -> (shape: [Int], source: PackSource) {
        guard let d = piece.dimension, let range = piece.range, range.count == 2 else { return (entry.shape, source) }
        // The plan only splits whole-byte tensors along an existing dimension of a validated header.
        guard let g = PackSlice.geometry(shape: entry.shape, elementBytes: entry.dtype.bitWidth / 8, dimension: d, start: range[0], end: range[1]) else {
            preconditionFailure("shard plan produced an impossible slice of \(entry.name)")
        }
        var shape = entry.shape
        shape[d] = range[1] - range[0]
        var sliced = source
        sliced.offset += g.offset
        sliced.length = g.runs * g.runLength
        sliced.slice = PackSlice(dimension: d, start: range[0], end: range[1], runs: g.runs, stride: g.stride)
        return (shape, sliced)
    }
}
