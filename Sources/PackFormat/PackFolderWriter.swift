import Checkpoint
import FileIO
import Foundation
import JSONCore
import ModelConfig
import TensorCore

/// Writing a k2pack folder, in one order for every writer (`convert`, `shard`'s ranks, `quantize --format k2pack`
/// through convert): `prepare` the output folder, `plan` the data files, write them (`SourceReader`), keep the
/// source records (`keepSourceRecords`), carried files, and the folder record last (`writeRecord`). Export and
/// merge copy the kept records back out with `copyKeptRecords`.
public enum PackFolderWriter {
    /// A source tensor's part of a rank: its shape and source slice (nil: none of it).
    public typealias Share = (TensorEntry, PackSource) -> (shape: [Int], source: PackSource)?

    /// What goes into each data file, in order: one file per decoder layer (`layer-NNNN`), one for everything else
    /// (`globals`); routed experts stacked expert-major when all of `experts` are present with one shape and dtype.
    /// `expected` places a header entry (shard, entry) by the architecture manifest; `share`, when given, picks
    /// what a rank stores of each source tensor.
    public static func plan(
        _ dir: CheckpointDirectory, expected: (Int, Int) -> ExpectedTensor?, experts: Range<Int>,
        fileExtension: String = PackSpec.fileExtension, share: Share? = nil
    ) -> [(file: String, tensors: [PlannedTensor])] {
        enum Item { case single(PlannedTensor), stack(String) }
        var files: [String] = []
        var items: [String: [Item]] = [:]
        var stacks: [String: [(expert: Int, tensor: PlannedTensor)]] = [:]
        for (s, shard) in dir.shards.enumerated() {
            guard let shard else { continue }
            for (e, entry) in shard.tensors.enumerated() {
                let expected = expected(s, e)
                let file = expected?.layer.map { "layer-" + String(format: "%04d", $0) + "." + fileExtension }
                    ?? "globals." + fileExtension
                if items[file] == nil {
                    files.append(file)
                    items[file] = []
                }
                var source = PackSource(name: entry.name, shard: dir.shardNames[s], offset: entry.rangeInFile.lowerBound, length: entry.byteCount)
                var shape = entry.shape
                if let share {
                    guard let mine = share(entry, source) else { continue }
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
        let experts = Array(experts)
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

    /// The output folder must be new or empty, unless resuming; never a link, never overlapping the input.
    public static func prepare(output: String, input: String, resume: Bool) throws {
        do throws(FileIOError) {
            try OutputPaths.prepareFolder(output, inputs: [input], existing: resume ? .resumable : .empty)
        } catch {
            guard case .outputExists(let path, _) = error else { throw error }
            throw PackError.outputExists(path: path, resumable: true)
        }
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

    /// The folder record, written last: its presence marks the folder finished.
    public static func writeRecord(_ manifest: PackManifest, to folder: String) throws {
        try AtomicFile.write(try manifest.encoded(), to: folder + "/" + PackManifest.fileName)
    }
}
