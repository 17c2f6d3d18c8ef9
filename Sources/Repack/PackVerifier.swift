import Checkpoint
import Foundation
import Inspection
import ModelConfig
import PackFormat
import TensorCore

/// `k2pack verify` on a k2pack folder: every file's header and table, every tensor's xxHash64, and that the
/// stored slices cover exactly the tensors of the source headers kept for export; every carried file's SHA-256.
public enum PackVerifier {
    public static func isPackFolder(_ path: String) -> Bool {
        FileManager.default.fileExists(atPath: path + "/" + PackManifest.fileName)
    }

    public static func verify(folder: String, threads: Int = ProcessInfo.processInfo.activeProcessorCount,
                              progress: (@Sendable (Int, Int) -> Void)? = nil) throws -> VerifyReport {
        let start = Date()
        let manifest = try PackManifest.read(folder: folder)
        var findings: [Finding] = []
        let opened: [Result<PackFile, PackError>] = manifest.files.map { name in
            Result { () throws(PackError) -> PackFile in try PackFile(path: folder + "/" + name, name: name) }
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
        if manifest.shard == nil { findings += coverage(folder: folder, manifest: manifest, packs: packs) }
        findings += carriedFindings(manifest.carried, in: folder)
        if let config = FileManager.default.contents(atPath: folder + "/" + CheckpointDirectory.configFileName) {
            do throws(ConfigError) { _ = try ModelConfig.parse(Array(config)) } catch {
                findings.append(Finding(code: "config", file: CheckpointDirectory.configFileName, message: error.description))
            }
        }
        var report = VerifyReport(
            path: folder, architecture: manifest.architecture, shardCount: manifest.files.count,
            tensorCount: packs.reduce(0) { $0 + $1.table.tensors.count }, bytesScanned: total,
            seconds: Date().timeIntervalSince(start), findings: findings)
        report.format = "k2pack"
        return report
    }

    /// Every tensor of every source header is stored exactly once, with its length; nothing else is stored.
    static func coverage(folder: String, manifest: PackManifest, packs: [PackFile]) -> [Finding] {
        var findings: [Finding] = []
        var stored: [String: (file: String, length: Int)] = [:]
        for pack in packs {
            for tensor in pack.table.tensors {
                for source in tensor.sources {
                    if stored.updateValue((pack.name, source.length), forKey: source.name) != nil {
                        findings.append(Finding(code: "pack_source_mismatch", file: pack.name, tensor: source.name,
                                                message: "\(displayed(pack.name)): source tensor '\(displayed(source.name))' is stored twice"))
                    }
                }
            }
        }
        for shard in manifest.sourceShards {
            let header: SafetensorsHeader
            do {
                header = try PackManifest.sourceHeader(folder: folder, shard: shard).header
            } catch {
                findings.append(Finding(code: "pack_source_mismatch", file: shard, message: "\(error)"))
                continue
            }
            for entry in header.tensors {
                guard let (file, length) = stored.removeValue(forKey: entry.name) else {
                    findings.append(Finding(code: "pack_source_mismatch", file: shard, tensor: entry.name,
                                            message: "\(displayed(shard)): tensor '\(displayed(entry.name))' is in the source header but no file stores it"))
                    continue
                }
                if length != entry.byteCount {
                    findings.append(Finding(code: "pack_source_mismatch", file: file, tensor: entry.name,
                                            message: "\(displayed(file)): tensor '\(displayed(entry.name))' is stored as \(length) bytes, the source header needs \(entry.byteCount)"))
                }
            }
        }
        for (name, where_) in stored.sorted(by: { $0.key < $1.key }) {
            findings.append(Finding(code: "pack_source_mismatch", file: where_.file, tensor: name,
                                    message: "\(displayed(where_.file)): stores '\(displayed(name))', which no source header lists"))
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
