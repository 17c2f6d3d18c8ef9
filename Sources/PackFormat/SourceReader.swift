import Checkpoint
import JSONCore
import TensorCore

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
