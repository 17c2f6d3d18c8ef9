import Checkpoint
import Foundation
import JSONCore
import PackFormat
import TensorCore

/// `k2pack export`: a k2pack folder → the Hugging Face folder it came from, byte for byte.
///
/// Each source shard is rebuilt from its verbatim header (kept under `source/`) and, for every tensor in the
/// header's data order, the matching slice of a stored tensor; config.json and the index are copied verbatim.
public enum Exporter {
    public struct Report: Sendable, Codable {
        public var files: [String]
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
        // Before anything is written: config.json, the kept source headers and the tables must agree (what verify
        // checks, short of reading tensor data).
        let problems = PackVerifier.sources(folder: input, manifest: manifest, packs: packs).filter { $0.severity == .error }
        if let first = problems.first {
            throw PackError.notPack(file: input, reason: "\(problems.count) problem\(problems.count == 1 ? "" : "s") (run `k2pack verify`); first: \(first.message)")
        }
        // Source tensor name → (pack, stored tensor, which of its sources).
        // Names compared as bytes: NFC and NFD spellings are different tensors.
        var slices: [ByteName: (pack: Int, tensor: PackTensor, index: Int)] = [:]
        for (p, pack) in packs.enumerated() {
            for tensor in pack.table.tensors {
                for (i, source) in tensor.sources.enumerated() { slices[ByteName(source.name)] = (p, tensor, i) }
            }
        }
        try Converter.prepare(output: output, resume: false)
        let headers = try manifest.sourceShards.map { shard -> (String, [UInt8], SafetensorsHeader) in
            let (bytes, header) = try PackManifest.sourceHeader(folder: input, shard: shard)
            return (shard, bytes, header)
        }
        let total = headers.reduce(0) { $0 + $1.2.describedLength }
        let counter = ProgressCounter(total: total, report: progress)
        for (shard, headerBytes, header) in headers {
            let file = try AtomicFile(path: output + "/" + shard)
            try file.setLength(header.describedLength)
            try file.write(headerBytes, at: 0)
            counter.add(headerBytes.count)
            for entry in header.tensors {
                guard let slice = slices[ByteName(entry.name)] else {
                    throw PackError.tensorInvalid(file: shard, tensor: entry.name, reason: "no stored tensor holds it")
                }
                let length = slice.tensor.sources[slice.index].length
                guard length == entry.byteCount else {
                    throw PackError.tensorInvalid(file: shard, tensor: entry.name, reason: "stored slice is \(length) bytes, the header needs \(entry.byteCount)")
                }
                // In pieces of at most 64 MiB (mapped slices dropped once copied, or decompressed frames).
                try packs[slice.pack].copySource(slice.tensor, slice.index, to: file, at: entry.rangeInFile.lowerBound)
                counter.add(entry.byteCount)
            }
            try file.commit()
        }
        try copyKeptRecords(from: input, sourceIndex: manifest.sourceIndex, to: output)
        return Report(files: manifest.sourceShards, bytes: total, seconds: Date().timeIntervalSince(start))
    }

    /// Copies the verbatim index (kept under `source/`) and config.json of a k2pack folder or shard set.
    public static func copyKeptRecords(from input: String, sourceIndex: Bool, to output: String) throws {
        if sourceIndex {
            let kept = PackManifest.sourceFolder + "/" + ShardIndex.fileName
            try AtomicFile.write(try ReadOnlyFile(folder: input, name: kept).readAll(), to: output + "/" + ShardIndex.fileName)
        }
        let configPath = input + "/" + CheckpointDirectory.configFileName
        if FileManager.default.fileExists(atPath: configPath) {
            try AtomicFile.write(try ReadOnlyFile(folder: input, name: CheckpointDirectory.configFileName).readAll(), to: output + "/" + CheckpointDirectory.configFileName)
        }
    }
}
