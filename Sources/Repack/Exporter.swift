import Checkpoint
import Foundation
import JSONCore
import PackFormat
import TensorCore

/// `k2pack export`: a k2pack folder → the Hugging Face folder it came from, byte for byte.
///
/// Each source shard is rebuilt from its verbatim header (kept under `source/`) and, for every tensor in the
/// header's data order, the matching slice of a stored tensor, whose xxHash64 is checked first; config.json, the
/// index and the carried files are copied verbatim (each carried file checked against its SHA-256). A failure
/// leaves nothing behind.
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
        try OutputPaths.prepareFolder(output, inputs: [input], existing: .empty)
        do {
            let headers = try manifest.sourceShards.map { shard -> (String, [UInt8], SafetensorsHeader) in
                let (bytes, header) = try PackManifest.sourceHeader(folder: input, shard: shard)
                return (shard, bytes, header)
            }
            let total = headers.reduce(0) { $0 + $1.2.describedLength }
            let counter = ProgressCounter(total: total, report: progress)
            let checked = ChecksumOnce()
            for (shard, headerBytes, header) in headers {
                let file = try AtomicFile(path: output + "/" + shard)
                try file.setLength(header.describedLength)
                try file.write(headerBytes, at: 0)
                counter.add(headerBytes.count)
                for entry in header.tensors {
                    guard let slice = slices[entry.name].first else {
                        throw PackError.tensorInvalid(file: shard, tensor: entry.name, reason: "no stored tensor holds it")
                    }
                    let length = slice.tensor.sources[slice.index].length
                    guard length == entry.byteCount else {
                        throw PackError.tensorInvalid(file: shard, tensor: entry.name, reason: "stored slice is \(length) bytes, the header needs \(entry.byteCount)")
                    }
                    // The whole stored tensor's xxHash64 first (once), as merge does; then the copy, in pieces of
                    // at most 64 MiB (mapped slices dropped once copied, or decompressed frames).
                    try checked.check(slice.file, packs[slice.file], slice.tensor)
                    try packs[slice.file].copySource(slice.tensor, slice.index, to: file, at: entry.rangeInFile.lowerBound)
                    counter.add(entry.byteCount)
                }
                try file.commit()
            }
            try PackFolderWriter.copyKeptRecords(from: input, sourceIndex: manifest.sourceIndex, to: output)
            try CarriedFiles.copy(manifest.carried, from: input, to: output)
            return Report(files: manifest.sourceShards, carriedFiles: manifest.carried.count, bytes: total, seconds: Date().timeIntervalSince(start))
        } catch {
            // Nothing half-way: what did finish goes too (the output folder was new or empty).
            WrittenOutput.remove(shards: manifest.sourceShards, carried: manifest.carried.map(\.path), from: output)
            throw error
        }
    }
}
