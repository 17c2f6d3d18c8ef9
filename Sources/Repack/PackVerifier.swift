import Checkpoint
import Foundation
import Inspection
import JSONCore
import ModelConfig
import PackFormat
import TensorCore

/// `k2pack verify` on a k2pack folder: every file's header and table, every tensor's xxHash64, and that the
/// stored slices cover exactly the tensors of the source headers kept for export; every carried file's SHA-256.
public enum PackVerifier {
    public static func verify(folder: String, threads: Int = ProcessInfo.processInfo.activeProcessorCount,
                              progress: (@Sendable (Int, Int) -> Void)? = nil) throws -> VerifyReport {
        let start = Date()
        let manifest = try PackManifest.read(folder: folder)
        var findings: [Finding] = []
        let opened: [Result<PackFile, PackError>] = manifest.files.map { name in
            Result { () throws(PackError) -> PackFile in try PackFile(folder: folder, name: name) }
        }
        var packs: [PackFile] = []
        for result in opened {
            switch result {
            case .success(let pack): packs.append(pack)
            case .failure(let error): findings.append(Finding(code: "pack_invalid", file: fileName(of: error), message: error.description))
            }
        }
        // Checksums, tensor by tensor across all cores.
        let work = packs.flatMap { pack in pack.table.tensors.map { (pack, $0) } }
        let total = work.reduce(0) { $0 + $1.1.length }
        let counter = ProgressCounter(total: total, report: progress)
        let mismatches: [Finding?] = parallelMap(count: work.count, width: threads) { i -> Finding? in
            let (pack, tensor) = work[i]
            defer { counter.add(tensor.length) }
            do {
                let actual = try pack.checksum(of: tensor)
                guard actual != tensor.xxh64 else { return nil }
                return Finding(
                    code: "checksum_mismatch", file: pack.name, tensor: tensor.name,
                    message: PackError.checksumMismatch(file: pack.name, tensor: tensor.name, expected: tensor.xxh64, actual: actual).description)
            } catch {
                return Finding(code: "pack_invalid", file: pack.name, tensor: tensor.name, message: "\(error)")
            }
        }
        findings += mismatches.compactMap { $0 }
        // A rank of a shard set holds slices; its set's coverage is checked from the set's folder.
        if manifest.shard == nil {
            findings += sources(folder: folder, manifest: manifest, packs: packs)
        } else {
            findings += config(folder: folder).findings
        }
        findings += carriedFindings(manifest.carried, in: folder)
        var report = VerifyReport(
            path: folder, architecture: manifest.architecture, shardCount: manifest.files.count,
            tensorCount: packs.reduce(0) { $0 + $1.table.tensors.count }, bytesScanned: total,
            seconds: Date().timeIntervalSince(start), findings: findings)
        report.format = "k2pack"
        return report
    }

    /// config.json of a k2pack folder: required (the forward pass, inspect and export need it), read through the
    /// folder guard and parsed as for a Hugging Face folder.
    static func config(folder: String) -> (config: ModelConfig?, findings: [Finding]) {
        let name = CheckpointDirectory.configFileName
        guard FileManager.default.fileExists(atPath: folder + "/" + name) else {
            return (nil, [Finding(code: "config", file: name, message: ConfigError.missingConfig(path: folder).description)])
        }
        do {
            let bytes = try ReadOnlyFile(folder: folder, name: name).readAll()
            return (try ModelConfig.parse(bytes), [])
        } catch let error as CheckpointError {
            if case .outsideFolder = error { return (nil, [Finding(code: "outside_folder", file: name, message: error.description)]) }
            return (nil, [Finding(code: "io", file: name, message: error.description)])
        } catch {
            return (nil, [Finding(code: "config", file: name, message: "\(error)")])
        }
    }

    /// The kept source headers against the config and against what is stored: every tensor the config implies is
    /// in the headers with its shape and dtype, and nothing else (as `verify` checks a Hugging Face folder); every
    /// stored tensor is what its sources say (name, dtype, shape, offset, byte length); every source tensor is
    /// stored exactly once.
    static func sources(folder: String, manifest: PackManifest, packs: [PackFile]) -> [Finding] {
        let kept = keptHeaders(folder: folder, sourceShards: manifest.sourceShards, architecture: manifest.architecture)
        return kept.findings + storedAgainstSources(
            manifest: manifest, packs: packs, entries: kept.entries, expected: kept.expected, complete: kept.complete)
    }

    /// The source headers kept in `folder` (a k2pack folder or a shard set) read and checked against the folder's
    /// config.json, expanded through the architecture manifest: the expected-tensor check of a Hugging Face folder.
    public static func keptHeaders(folder: String, sourceShards: [String], architecture: String) -> (
        findings: [Finding], entries: [ByteName: (shard: Int, entry: TensorEntry)], expected: ExpectedTensorList?, complete: Bool
    ) {
        var findings: [Finding] = []
        var headers: [[TensorEntry]?] = []
        for shard in sourceShards {
            do {
                headers.append(try PackManifest.sourceHeader(folder: folder, shard: shard).header.tensors)
            } catch {
                headers.append(nil)
                findings.append(Finding(code: "pack_source_mismatch", file: shard, message: "\(error)"))
            }
        }
        let (config, configFindings) = config(folder: folder)
        findings += configFindings
        var expected: ExpectedTensorList?
        if let config {
            do {
                expected = try ExpectedTensorList(config: config)
            } catch {
                findings.append(Finding(code: "config", file: CheckpointDirectory.configFileName, message: "\(error)"))
            }
        }
        if let config, config.architecture.name != architecture {
            findings.append(Finding(
                code: "config", file: CheckpointDirectory.configFileName,
                message: "\(CheckpointDirectory.configFileName): describes \(config.architecture.name), but the folder record says \(displayed(architecture))"))
        }
        // Source tensor name → (shard, entry).
        var entries: [ByteName: (shard: Int, entry: TensorEntry)] = [:]
        for (s, tensors) in headers.enumerated() {
            for entry in tensors ?? [] where entries[ByteName(entry.name)] == nil { entries[ByteName(entry.name)] = (s, entry) }
        }
        if let expected {
            let positions = headers.map { ($0 ?? []).map { expected.byName[$0.name] ?? -1 } }
            findings += LoadedCheckpoint.structuralFindings(
                shardNames: sourceShards, headers: headers, indexed: nil, locate: { entries[ByteName($0)]?.shard },
                expected, positions)
        }
        return (findings, entries, expected, !headers.contains { $0 == nil })
    }

    static func storedAgainstSources(
        manifest: PackManifest, packs: [PackFile], entries: [ByteName: (shard: Int, entry: TensorEntry)],
        expected: ExpectedTensorList?, complete: Bool
    ) -> [Finding] {
        var findings: [Finding] = []
        func mismatch(_ file: String, _ tensor: String, _ message: String) {
            findings.append(Finding(code: "pack_source_mismatch", file: file, tensor: tensor, message: "\(displayed(file)): \(message)"))
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
        return findings
    }

    /// Every carried file recorded in a folder record, checked against its size and SHA-256: one finding
    /// (`carried_file`) naming each one that changed, is missing or cannot be read.
    public static func carriedFindings(_ files: [CarriedFile], in folder: String) -> [Finding] {
        CarriedFiles.check(files, in: folder).map { file, problem in
            Finding(code: "carried_file", file: file.path, message: "\(displayed(file.path)): \(problem)")
        }
    }

    static func fileName(of error: PackError) -> String? {
        switch error {
        case let .notPack(f, _), let .unsupportedVersion(f, _), let .headerInvalid(f, _), let .tableChecksum(f, _, _),
            let .tableInvalid(f, _), let .tensorInvalid(f, _, _), let .checksumMismatch(f, _, _, _), let .io(f, _, _):
            f
        case .sourceInvalid, .outputExists: nil
        }
    }
}
