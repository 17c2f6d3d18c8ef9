import Checkpoint
import FileIO
import JSONCore
import LoadedModel
import ModelConfig
import PackFormat
import TensorCore

/// `quantize` and `dequantize --format k2pack`: the rewritten tensors streamed straight into a k2pack folder
/// through `PackFolderWriter` and `PackWriter`, the same path convert uses. The folder is the one convert would
/// make of the Hugging Face folder `--format hf` writes (the same plan, the same source records: those shards'
/// headers and index, their config.json), without writing that folder first.
enum PackOutput {
    /// A tensor of an output shard, by shard and tensor name as bytes (an NFC and an NFD spelling are two names).
    struct Key: Hashable {
        let shard: ByteName
        let name: ByteName
        init(_ shard: String, _ name: String) {
            self.shard = ByteName(shard)
            self.name = ByteName(name)
        }
    }

    /// Writes the folder; returns the bytes the Hugging Face shards would have (headers and data), as `--format hf`
    /// reports. The output was checked by the caller (`OutputPaths.checkFolder`); after any failure what was
    /// written is removed, so no folder is left that looks finished.
    static func write(
        _ checkpoint: LoadedCheckpoint, to output: String, shards: [(name: String, tensors: [OutputTensor])], config: JSONObject, threads: Int
    ) throws -> Int {
        let dir = checkpoint.directory
        let configBytes = Array((JSONValue.object(config).serialized() + "\n").utf8)
        // The written config.json plans the folder, as convert would plan it from that file.
        let written: ModelConfig
        let expected: ExpectedTensorList
        do {
            written = try ModelConfig.parse(configBytes)
            expected = try ExpectedTensorList(config: written)
        } catch {
            throw PackError.sourceInvalid(reason: "\(displayed(output)): the rewritten \(CheckpointDirectory.configFileName): \(error)")
        }

        // The shards `--format hf` writes: their headers and each tensor's place in them. With an index, a shard
        // left without tensors is not one of the checkpoint's shards (the index does not name it).
        var headers: [(name: String, bytes: [UInt8])] = []
        var entries: [(name: String, entries: [TensorEntry])?] = []
        var tensors: [Key: OutputTensor] = [:]
        var total = 0
        for shard in shards where dir.index == nil || !shard.tensors.isEmpty {
            let head = SafetensorsWriter.header(shard.tensors)
            var offset = 0
            var list: [TensorEntry] = []
            for t in shard.tensors {
                list.append(TensorEntry(name: t.name, dtype: t.dtype, shape: t.shape, dataBegin: offset, dataEnd: offset + t.length, dataStartInFile: head.count))
                tensors[Key(shard.name, t.name)] = t
                offset += t.length
            }
            headers.append((shard.name, head))
            entries.append((shard.name, list))
            total += head.count + offset
        }
        let plan = PackFolderWriter.plan(
            shards: entries, expected: { s, e in expected[entries[s]!.entries[e].name] }, experts: 0..<written.text.numRoutedExperts)
        let carried = try CarriedFiles.list(checkpoint: dir)
        if let reason = PackManifest.namesProblem(files: plan.map(\.file), sourceShards: headers.map(\.name), carried: carried) {
            throw PackError.sourceInvalid(reason: "\(displayed(dir.path)): \(reason)")
        }
        try OutputPaths.prepareFolder(output, inputs: [dir.path], existing: .empty)
        do {
            let lookup = tensors
            let results: [Result<Void, any Error>] = parallelMap(count: plan.count, width: threads) { i in
                Result {
                    _ = try PackWriter.write(path: output + "/" + plan[i].file, tensors: plan[i].tensors) { source, emit in
                        guard let tensor = lookup[Key(source.shard, source.name)] else {
                            throw PackError.sourceInvalid(reason: "\(displayed(source.shard)): no tensor '\(displayed(source.name))'")
                        }
                        try tensor.produce(emit)
                    }
                }
            }
            // An input shard rewritten while it was read (a sync, a re-download) makes the output a mix: refused.
            try dir.checkUnchanged()
            for result in results { try result.get() }
            try PackFolderWriter.keepSourceRecords(
                headers: headers.map { header in (header.name, { header.bytes }) },
                index: dir.index == nil ? nil : { IndexWriter.bytes(shards: shards) }, output: output)
            try AtomicFile.write(configBytes, to: output + "/" + CheckpointDirectory.configFileName)
            let records = try carried.map { try CarriedFiles.copy($0, from: dir.path, to: output) }
            try PackFolderWriter.writeRecord(
                PackManifest(
                    architecture: written.architecture.name, files: plan.map(\.file), sourceShards: headers.map(\.name), sourceIndex: dir.index != nil,
                    carried: records),
                to: output)
            return total
        } catch {
            // The folder was new or empty: everything this run may have put there goes.
            let source = headers.map { PackManifest.sourceFolder + "/" + $0.name + PackManifest.headerSuffix } + [PackManifest.sourceFolder + "/" + ShardIndex.fileName]
            CarriedFiles.remove(
                plan.map(\.file) + source + [CheckpointDirectory.configFileName, PackManifest.fileName] + carried, from: output)
            throw error
        }
    }
}
