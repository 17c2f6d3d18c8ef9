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

    public static func convert(
        input: String, output: String, options: Options = Options(), progress: (@Sendable (Int, Int) -> Void)? = nil
    ) throws -> Report {
        let start = Date()
        let checkpoint = try LoadedCheckpoint(path: input)
        if let reason = checkpoint.unusableReason { throw PackError.sourceInvalid(reason: reason) }
        let dir = checkpoint.directory
        let plan = PackFolderWriter.plan(
            dir, expected: { checkpoint.expected(shard: $0, entry: $1) }, experts: 0..<(checkpoint.config?.text.numRoutedExperts ?? 0),
            fileExtension: options.compressionLevel == nil ? PackSpec.fileExtension : PackSpec.archiveExtension)
        // Every other file of the folder is carried; its names are checked with the plan's before anything is written.
        let carried = try CarriedFiles.list(checkpoint: dir)
        if let reason = PackManifest.namesProblem(files: plan.map(\.file), sourceShards: dir.shardNames, carried: carried) {
            throw PackError.sourceInvalid(reason: "\(displayed(input)): \(reason)")
        }
        try PackFolderWriter.prepare(output: output, input: input, resume: options.resume)
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
        try PackFolderWriter.keepSourceRecords(dir, input: input, output: output)
        if let config = dir.configBytes { try AtomicFile.write(config, to: output + "/" + CheckpointDirectory.configFileName) }
        // Carried files are copied again on --resume (they are small); their checksums come from this copy.
        let records = try carried.map { try CarriedFiles.copy($0, from: input, to: output) }
        let manifest = PackManifest(
            architecture: checkpoint.config?.architecture.name ?? "unknown", files: plan.map(\.file), sourceShards: dir.shardNames,
            sourceIndex: dir.index != nil, carried: records)
        try PackFolderWriter.writeRecord(manifest, to: output)
        return Report(
            files: plan.map(\.file), filesReused: reused, tensors: plan.reduce(0) { $0 + $1.tensors.count },
            stackedTensors: plan.reduce(0) { $0 + $1.tensors.filter { $0.sources.count > 1 }.count }, carriedFiles: records.count, bytes: total,
            fileBytes: try plan.reduce(0) { $0 + (try ReadOnlyFile(path: output + "/" + $1.file).byteCount) },
            seconds: Date().timeIntervalSince(start))
    }

    /// A finished file from an earlier run can be kept when its table is exactly the planned one and every
    /// tensor's checksum still verifies.
    static func reusable(path: String, planned: [PlannedTensor]) -> Bool {
        guard let file = try? PackFile(path: path), file.table.tensors.count == planned.count else { return false }
        let same = zip(file.table.tensors, planned).allSatisfy { $0.name == $1.name && $0.dtype == $1.dtype && $0.shape == $1.shape && $0.sources == $1.sources }
        return same && file.verifyChecksums().isEmpty
    }
}
