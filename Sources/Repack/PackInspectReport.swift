import Checkpoint
import Foundation
import ModelConfig
import PackFormat
import TensorCore

/// What `k2pack inspect` reports about a k2pack folder: its files, tensors, expert stacks and source.
public struct PackInspectReport: Sendable, Codable {
    public struct FileSummary: Sendable, Codable {
        public var name: String
        public var tensors: Int
        public var stacks: Int
        public var bytes: Int
    }

    public var path: String
    public var format = "k2pack"
    public var version: Int
    public var architecture: String
    public var layers: Int?
    public var routedExperts: Int?
    public var files: [FileSummary]
    public var tensorCount: Int
    public var stackCount: Int
    public var tensorBytes: Int
    public var fileBytes: Int
    /// "zstd" when the files are the compressed archive form.
    public var compression: String?
    public var sourceShards: Int
    /// What is wrong with the folder's records (config.json, the kept source headers and the tables disagreeing),
    /// found from headers alone, as inspect reports a Hugging Face folder's structural problems.
    public var problems: [String] = []
    /// A rank folder of a shard set: which rank.
    public var shard: ShardRecord?
    /// Files besides the tensors (tokenizer, remote code, docs, …), carried byte for byte, and their bytes.
    public var carriedFiles: Int
    public var carriedBytes: Int

    public init(folder: String) throws {
        let manifest = try PackManifest.read(folder: folder)
        path = folder
        version = manifest.version
        architecture = manifest.architecture
        // config.json is required and must parse (through the folder guard), as verify requires.
        let (config, configProblems) = PackVerifier.config(folder: folder)
        if let problem = configProblems.first { throw PackError.notPack(file: folder, reason: problem.message) }
        if let config {
            layers = config.text.numLayers
            routedExperts = config.text.numRoutedExperts
        }
        var files: [FileSummary] = []
        var tensorBytes = 0
        var compression: String?
        var packs: [PackFile] = []
        for name in manifest.files {
            let table = try PackFile(folder: folder, name: name)
            packs.append(table)
            if table.isArchive { compression = table.table.compression }
            files.append(FileSummary(
                name: name, tensors: table.table.tensors.count, stacks: table.table.tensors.filter { $0.sources.count > 1 }.count,
                bytes: table.file.byteCount))
            tensorBytes += table.table.tensors.reduce(0) { $0 + $1.length }
        }
        self.files = files
        self.tensorBytes = tensorBytes
        self.compression = compression
        tensorCount = files.reduce(0) { $0 + $1.tensors }
        stackCount = files.reduce(0) { $0 + $1.stacks }
        fileBytes = files.reduce(0) { $0 + $1.bytes }
        sourceShards = manifest.sourceShards.count
        shard = manifest.shard
        carriedFiles = manifest.carried.count
        carriedBytes = manifest.carried.reduce(0) { $0 + $1.size }
        if manifest.shard == nil {
            self.problems = PackVerifier.sources(folder: folder, manifest: manifest, packs: packs).filter { $0.severity == .error }.map(\.message)
        }
    }

    public func renderText() -> String {
        var out = "k2pack folder  \(displayed(path)) (folder record version \(version))\n"
        out += "architecture   \(displayed(architecture))"
        if let layers, let routedExperts { out += ": \(layers) layers, \(routedExperts) routed experts" }
        out += "\n"
        out += "files          \(files.count), \(tensorCount) tensors (\(stackCount) expert-major stacks)\n"
        if let compression {
            let ratio = String(format: "%.3f", Double(tensorBytes) / Double(max(fileBytes, 1)))
            out += "bytes          \(formatBytes(tensorBytes)) of tensors in \(formatBytes(fileBytes)) of files (\(displayed(compression)) archive, ratio \(ratio))\n"
        } else {
            out += "bytes          \(formatBytes(tensorBytes)) of tensors in \(formatBytes(fileBytes)) of files (4096-byte alignment)\n"
        }
        if let shard {
            out += "rank           \(shard.rank) of tp \(shard.tp) × ep \(shard.ep) (tp rank \(shard.tpRank), ep rank \(shard.epRank)); "
                + "routed experts \(shard.experts.map(String.init).joined(separator: "..<")); vision tower \(shard.vision ? "yes" : "no")\n\n"
        } else {
            out += "source         \(sourceShards) Hugging Face shard\(sourceShards == 1 ? "" : "s") (headers kept for a byte-identical export)\n\n"
        }
        if carriedFiles > 0 {
            out.insert(contentsOf: "carried        \(carriedFiles) other files, \(formatBytes(carriedBytes)) (tokenizer, remote code, docs, …), each with its SHA-256\n", at: out.index(out.endIndex, offsetBy: -1))
        }
        let width = files.map { displayed($0.name).count }.max() ?? 4
        for f in files {
            out += displayed(f.name).padding(toLength: width, withPad: " ", startingAt: 0)
                + "  \(String(f.tensors).leftPadded(6)) tensors  \(String(f.stacks).leftPadded(4)) stacks  \(formatBytes(f.bytes).leftPadded(12))\n"
        }
        if !problems.isEmpty {
            out += "\n\(problems.count) problem\(problems.count == 1 ? "" : "s") (run `k2pack verify`):\n"
            for message in problems.prefix(20) { out += "  ✗ \(message)\n" }
            if problems.count > 20 { out += "  … and \(problems.count - 20) more (see --json)\n" }
        }
        return out
    }
}
