import Foundation
import LoadedModel
import PackFormat
import Repack
import Shard
import TensorCore

/// `k2pack verify` on a k2pack folder: every file's header and table, every tensor's xxHash64, and that the
/// stored slices cover exactly the tensors of the source headers kept for export; every carried file's SHA-256.
/// The record checks are `PackVerifier`'s (in Repack, which export shares); this renders them as a report.
extension PackVerifier {
    public static func verify(folder: String, threads: Int = ProcessInfo.processInfo.activeProcessorCount,
                              progress: ProgressCallback? = nil) throws -> VerifyReport {
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
            findings += sources(folder: folder, manifest: manifest, packs: packs).map(Finding.init)
        } else {
            findings += config(folder: folder).problems.map(Finding.init)
        }
        findings += carriedProblems(manifest.carried, in: folder).map(Finding.init)
        var report = VerifyReport(
            path: folder, architecture: manifest.architecture, shardCount: manifest.files.count,
            tensorCount: packs.reduce(0) { $0 + $1.table.tensors.count }, bytesScanned: total,
            seconds: Date().timeIntervalSince(start), findings: findings)
        report.format = "k2pack"
        return report
    }


    private static func fileName(of error: PackError) -> String? {
        switch error {
        case let .notPack(f, _), let .unsupportedVersion(f, _), let .headerInvalid(f, _), let .tableChecksum(f, _, _),
            let .tableInvalid(f, _), let .tensorInvalid(f, _, _), let .checksumMismatch(f, _, _, _), let .io(f, _, _):
            f
        case .sourceInvalid, .outputExists: nil
        }
    }
}

/// `k2pack verify` on a shard set: every rank's files and checksums, copies held by several ranks agreeing, and
/// the slices tiling every source tensor exactly (what `--merge` needs).
public enum ShardVerifier {
    public static func verify(folder: String, threads: Int = ProcessInfo.processInfo.activeProcessorCount,
                              progress: ProgressCallback? = nil) throws -> VerifyReport {
        let start = Date()
        let set = try ShardSetManifest.read(folder: folder)
        var findings: [Finding] = []
        var files = 0, tensors = 0, bytes = 0
        for r in 0..<set.layout.ranks {
            let rankFolder = ShardSetManifest.rankFolder(r)
            do {
                let report = try PackVerifier.verify(folder: folder + "/" + rankFolder, threads: threads)
                files += report.shardCount
                tensors += report.tensorCount
                bytes += report.bytesScanned
                findings += report.findings.map { f in
                    var f = f
                    f.file = f.file.map { rankFolder + "/" + $0 }
                    if f.code == "carried_file" { f.message = rankFolder + "/" + f.message }
                    return f
                }
            } catch {
                findings.append(Finding(code: "shard_rank", file: rankFolder, message: "\(displayed(rankFolder)): \(error)"))
            }
            progress?(r + 1, set.layout.ranks)
        }
        // The set's config.json and kept source headers: the tensors the config implies, with their shapes and
        // dtypes, and nothing else (the ranks' slices are then checked to tile them).
        findings += PackVerifier.keptHeaders(folder: folder, sourceShards: set.sourceShards, architecture: set.architecture).problems.map(Finding.init)
        if findings.isEmpty {
            do { try ShardMerger.checkCoverage(input: folder) } catch {
                findings.append(Finding(code: "shard_coverage", message: "\(error)"))
            }
        }
        // The set's own copy of the carried files (each rank's is checked with the rank).
        findings += PackVerifier.carriedProblems(set.carried, in: folder).map(Finding.init)
        var report = VerifyReport(
            path: folder, architecture: set.architecture, shardCount: files, tensorCount: tensors, bytesScanned: bytes,
            seconds: Date().timeIntervalSince(start), findings: findings)
        report.format = "k2pack-shards"
        return report
    }
}

/// What `k2pack inspect` reports about a shard set: its layout and each rank's files, bytes and experts.
