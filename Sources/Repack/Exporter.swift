import Checkpoint
import Foundation
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
        let packs = try manifest.files.map { try PackFile(path: input + "/" + $0, name: $0) }
        // Source tensor name → (pack, byte range in that pack's file).
        var slices: [String: (pack: Int, range: Range<Int>)] = [:]
        for (p, pack) in packs.enumerated() {
            for tensor in pack.table.tensors {
                var at = tensor.offset
                for source in tensor.sources {
                    slices[source.name] = (p, at..<(at + source.length))
                    at += source.length
                }
            }
        }
        try Converter.prepare(output: output, resume: false)
        let sourceFolder = input + "/" + PackManifest.sourceFolder
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
                guard let slice = slices[entry.name] else {
                    throw PackError.tensorInvalid(file: shard, tensor: entry.name, reason: "no stored tensor holds it")
                }
                guard slice.range.count == entry.byteCount else {
                    throw PackError.tensorInvalid(file: shard, tensor: entry.name, reason: "stored slice is \(slice.range.count) bytes, the header needs \(entry.byteCount)")
                }
                // In 64 MiB pieces, each dropped from this process once copied: memory stays bounded.
                let pack = packs[slice.pack].file
                var at = slice.range.lowerBound
                while at < slice.range.upperBound {
                    let piece = at..<min(slice.range.upperBound, at + (64 << 20))
                    pack.adviseSequential(piece)
                    try pack.withMapping { whole in
                        try file.write(UnsafeRawBufferPointer(rebasing: whole[piece]), at: entry.rangeInFile.lowerBound + (at - slice.range.lowerBound))
                    }
                    pack.adviseDone(piece)
                    at = piece.upperBound
                }
                counter.add(entry.byteCount)
            }
            try file.commit()
        }
        if manifest.sourceIndex {
            try AtomicFile.write(try ReadOnlyFile(path: sourceFolder + "/" + ShardIndex.fileName).readAll(), to: output + "/" + ShardIndex.fileName)
        }
        let configPath = input + "/" + CheckpointDirectory.configFileName
        if FileManager.default.fileExists(atPath: configPath) {
            try AtomicFile.write(try ReadOnlyFile(path: configPath).readAll(), to: output + "/" + CheckpointDirectory.configFileName)
        }
        return Report(files: manifest.sourceShards, bytes: total, seconds: Date().timeIntervalSince(start))
    }
}
