import Checkpoint
import FileIO
import Foundation
import LoadedModel
import JSONCore
import ModelConfig
import PackFormat
import TensorCore

/// The checks of a k2pack folder's records that writers need too (export checks a folder's sources before writing
/// it out): config.json, the kept source headers against the config and the stored tables, the carried files.
/// Problems are the model layer's typed `CheckpointProblem`s; `k2pack verify` (Inspection) adds the file
/// and checksum checks and renders the report.
public enum PackVerifier {
    /// config.json of a k2pack folder: required (the forward pass, inspect and export need it), read through the
    /// folder guard and parsed as for a Hugging Face folder.
    public static func config(folder: String) -> (config: ModelConfig?, problems: [CheckpointProblem]) {
        let name = CheckpointDirectory.configFileName
        guard FileManager.default.fileExists(atPath: folder + "/" + name) else {
            return (nil, [.config(.missingConfig(path: folder))])
        }
        let bytes: [UInt8]
        do { bytes = try ReadOnlyFile(folder: folder, name: name).readAll() } catch { return (nil, [.configUnreadable(error)]) }
        do { return (try ModelConfig.parse(bytes), []) } catch { return (nil, [.config(error)]) }
    }

    /// The kept source headers against the config and against what is stored: every tensor the config implies is
    /// in the headers with its shape and dtype, and nothing else (as `verify` checks a Hugging Face folder); every
    /// stored tensor is what its sources say (name, dtype, shape, offset, byte length); every source tensor is
    /// stored exactly once.
    public static func sources(folder: String, manifest: PackManifest, packs: [PackFile]) -> [CheckpointProblem] {
        let kept = keptHeaders(folder: folder, sourceShards: manifest.sourceShards, architecture: manifest.architecture)
        return kept.problems + storedAgainstSources(
            manifest: manifest, packs: packs, entries: kept.entries, expected: kept.expected, complete: kept.complete)
    }

    /// The source headers kept in `folder` (a k2pack folder or a shard set) read and checked against the folder's
    /// config.json, expanded through the architecture manifest: the expected-tensor check of a Hugging Face folder.
    public static func keptHeaders(folder: String, sourceShards: [String], architecture: String) -> (
        problems: [CheckpointProblem], entries: [ByteName: (shard: Int, entry: TensorEntry)], expected: ExpectedTensorList?, complete: Bool
    ) {
        var problems: [CheckpointProblem] = []
        var headers: [[TensorEntry]?] = []
        for shard in sourceShards {
            do {
                headers.append(try PackManifest.sourceHeader(folder: folder, shard: shard).header.tensors)
            } catch {
                headers.append(nil)
                problems.append(.sourceMismatch(file: shard, tensor: nil, message: "\(error)"))
            }
        }
        let (config, configProblems) = config(folder: folder)
        problems += configProblems
        var expected: ExpectedTensorList?
        if let config {
            do {
                expected = try ExpectedTensorList(config: config)
            } catch {
                problems.append(.config(error))
            }
        }
        if let config, config.architecture.name != architecture {
            problems.append(.architectureMismatch(config: config.architecture.name, recorded: architecture))
        }
        // Source tensor name → (shard, entry).
        var entries: [ByteName: (shard: Int, entry: TensorEntry)] = [:]
        for (s, tensors) in headers.enumerated() {
            for entry in tensors ?? [] where entries[ByteName(entry.name)] == nil { entries[ByteName(entry.name)] = (s, entry) }
        }
        if let expected {
            let positions = headers.map { ($0 ?? []).map { expected.byName[$0.name] ?? -1 } }
            problems += LoadedCheckpoint.structuralProblems(
                shardNames: sourceShards, headers: headers, indexed: nil, locate: { entries[ByteName($0)]?.shard },
                expected, positions)
        }
        return (problems, entries, expected, !headers.contains { $0 == nil })
    }

    static func storedAgainstSources(
        manifest: PackManifest, packs: [PackFile], entries: [ByteName: (shard: Int, entry: TensorEntry)],
        expected: ExpectedTensorList?, complete: Bool
    ) -> [CheckpointProblem] {
        var problems: [CheckpointProblem] = []
        func mismatch(_ file: String, _ tensor: String, _ message: String) {
            problems.append(.sourceMismatch(file: file, tensor: tensor, message: "\(displayed(file)): \(message)"))
        }
        let stored = PackSliceIndex(packs)
        for (p, pack) in packs.enumerated() {
            for t in pack.table.tensors {
                var sourceEntries: [TensorEntry] = []
                for (i, source) in t.sources.enumerated() {
                    // Every copy after the first is reported.
                    guard let first = stored[source.name].first, first.file == p, ByteName(first.tensor.name) == ByteName(t.name), first.index == i else {
                        mismatch(pack.name, source.name, "source tensor '\(displayed(source.name))' is stored twice")
                        continue
                    }
                    guard let (s, entry) = entries[ByteName(source.name)] else {
                        // With a header unreadable (reported), its tensors cannot be matched.
                        if complete { mismatch(pack.name, source.name, "stores '\(displayed(source.name))', which no source header lists") }
                        continue
                    }
                    let shard = manifest.sourceShards[s]
                    if ByteName(source.shard) != ByteName(shard) {
                        mismatch(pack.name, source.name, "source '\(displayed(source.name))' is recorded in \(displayed(source.shard)), but its header is \(displayed(shard))'s")
                    }
                    if source.offset != entry.rangeInFile.lowerBound {
                        mismatch(pack.name, source.name, "source '\(displayed(source.name))' is recorded at byte \(source.offset) of \(displayed(shard)), its header puts it at \(entry.rangeInFile.lowerBound)")
                    }
                    if source.slice != nil {
                        mismatch(pack.name, source.name, "source '\(displayed(source.name))' is stored as a slice, outside a shard set")
                    } else if source.length != entry.byteCount {
                        mismatch(pack.name, source.name, "tensor '\(displayed(source.name))' is stored as \(source.length) bytes, the source header needs \(entry.byteCount)")
                    }
                    if entry.dtype != t.dtype {
                        mismatch(pack.name, t.name, "tensor '\(displayed(t.name))' is stored as \(t.dtype.rawValue), its source '\(displayed(source.name))' is \(entry.dtype.rawValue)")
                    }
                    sourceEntries.append(entry)
                }
                guard sourceEntries.count == t.sources.count, let first = sourceEntries.first else { continue }
                // What the stored tensor must be called and shaped, from its sources.
                let name: String?, shape: [Int]
                if sourceEntries.count == 1 {
                    name = first.name
                    shape = first.shape
                } else {
                    let stacks = Set(sourceEntries.map { expected?.byName[$0.name].flatMap { expected?.tensors[$0].stackName } })
                    name = stacks.count == 1 ? stacks.first! : nil
                    shape = sourceEntries.allSatisfy { $0.shape == first.shape } ? [sourceEntries.count] + first.shape : []
                    if expected != nil, name == nil {
                        mismatch(pack.name, t.name, "tensor '\(displayed(t.name))' stacks sources that are not the experts of one stack")
                    }
                }
                if let name, ByteName(name) != ByteName(t.name) {
                    mismatch(pack.name, t.name, "stored tensor '\(displayed(t.name))' holds '\(displayed(first.name))'\(t.sources.count > 1 ? " and \(t.sources.count - 1) more" : ""): it must be named '\(displayed(name))'")
                }
                if shape != t.shape {
                    mismatch(pack.name, t.name, "tensor '\(displayed(t.name))' is stored with shape \(formatShape(t.shape)), its sources give \(shape.isEmpty ? "experts of different shapes" : formatShape(shape))")
                }
            }
        }
        if complete {
            for (key, value) in entries.sorted(by: { $0.key < $1.key }) where stored[key.string].isEmpty {
                let shard = manifest.sourceShards[value.shard]
                mismatch(shard, key.string, "tensor '\(displayed(key.string))' is in the source header but no file stores it")
            }
        }
        return problems
    }

    /// Every carried file recorded in a folder record, checked against its size and SHA-256: one finding
    /// (`carried_file`) naming each one that changed, is missing or cannot be read.
    public static func carriedProblems(_ files: [CarriedFile], in folder: String) -> [CheckpointProblem] {
        CarriedFiles.check(files, in: folder).map { file, problem in .carriedFile(path: file.path, problem: problem) }
    }
}
