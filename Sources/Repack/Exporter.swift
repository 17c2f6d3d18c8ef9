import Checkpoint
import FileIO
import Foundation
import JSONCore
import PackFormat
import TensorCore

/// `k2pack export`: a k2pack folder → the Hugging Face folder it came from, byte for byte.
///
/// A merge of one rank (`PackRebuilder`, the path `shard --merge` takes): each source shard is rebuilt from its
/// verbatim header (kept under `source/`) and, for every tensor in the header's data order, the matching slice
/// of a stored tensor, whose xxHash64 is checked first; config.json, the index and the carried files are copied
/// verbatim (each carried file checked against its SHA-256). A failure leaves nothing behind.
public enum Exporter {
    public struct Report: Sendable, Codable {
        public var files: [String]
        /// Files besides the checkpoint's shards, index and config.json, each checked against its SHA-256.
        public var carriedFiles: Int
        public var bytes: Int
        public var seconds: Double
    }

    public static func export(input: String, output: String, progress: (@Sendable (Int, Int) -> Void)? = nil) throws -> Report {
        let start = Date()
        let manifest = try PackManifest.read(folder: input)
        if let shard = manifest.shard {
            throw PackError.notPack(
                file: input + "/" + PackManifest.fileName,
                reason: "this is rank \(shard.rank) of a shard set; rebuild the checkpoint with `k2pack shard --merge` on the set's folder")
        }
        let packs = try manifest.files.map { try PackFile(folder: input, name: $0) }
        let slices = PackSliceIndex(packs)
        // Two stored copies of one source tensor: which one export wrote would be an accident of order.
        if let twice = slices.firstDuplicate {
            throw PackError.tensorInvalid(
                file: packs[twice.second.file].name, tensor: twice.name, reason: "source tensor stored twice (also in \(displayed(packs[twice.first.file].name)))")
        }
        // Before anything is written: config.json, the kept source headers and the tables must agree (what verify
        // checks, short of reading tensor data).
        let problems = PackVerifier.sources(folder: input, manifest: manifest, packs: packs).filter { $0.severity == .error }
        if let first = problems.first {
            throw PackError.notPack(file: input, reason: "\(problems.count) problem\(problems.count == 1 ? "" : "s") (run `k2pack verify`); first: \(first.message)")
        }
        // A merge of one rank: each source tensor is one whole stored slice.
        var shards: [PackRebuilder.Shard] = []
        for shard in manifest.sourceShards {
            let (bytes, header) = try PackManifest.sourceHeader(folder: input, shard: shard)
            let pieces = try header.tensors.map { entry throws(PackError) -> [StoredSlice] in
                guard let slice = slices[entry.name].first else {
                    throw PackError.tensorInvalid(file: shard, tensor: entry.name, reason: "no stored tensor holds it")
                }
                guard slice.source.length == entry.byteCount else {
                    throw PackError.tensorInvalid(file: shard, tensor: entry.name, reason: "stored slice is \(slice.source.length) bytes, the header needs \(entry.byteCount)")
                }
                return [slice]
            }
            shards.append(PackRebuilder.Shard(name: shard, headerBytes: bytes, header: header, pieces: pieces))
        }
        let total = shards.reduce(0) { $0 + $1.header.describedLength }
        try PackRebuilder.rebuild(
            shards, packs: packs, input: input, output: output, sourceIndex: manifest.sourceIndex, carried: manifest.carried,
            threads: ProcessInfo.processInfo.activeProcessorCount, counter: ProgressCounter(total: total, report: progress))
        return Report(files: manifest.sourceShards, carriedFiles: manifest.carried.count, bytes: total, seconds: Date().timeIntervalSince(start))
    }
}
