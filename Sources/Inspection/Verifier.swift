import Checkpoint
import FileIO
import Foundation
import JSONCore
import LoadedModel
import ModelConfig
import Quantization
import TensorCore

/// What `k2pack verify` found.
public struct VerifyReport: Sendable, Codable {
    public struct Int4Summary: Sendable, Codable {
        public var modules: Int
        public var groups: Int
        public var zeroGroups: Int
        /// Occurrences of codes −8...7.
        public var codeHistogram: [Int]
        public var scaleMin: Float?
        public var scaleMax: Float?
    }

    public struct ChecksumSummary: Sendable, Codable {
        public var listed: Int
        public var checked: Int
        public var mismatched: Int
        /// "list" (--sha256) or "blob_names" (a Hugging Face cache snapshot's blobs are named by their SHA-256).
        public var source = "list"
    }

    public var path: String
    /// `huggingface`, `k2pack` or `gguf`.
    public var format = "huggingface"
    public var architecture: String?
    public var shardCount: Int
    public var tensorCount: Int
    public var expectedTensorCount: Int?
    public var bytesScanned: Int
    public var seconds: Double
    public var int4: Int4Summary?
    public var checksums: ChecksumSummary?
    public var findings: [Finding]

    public init(
        path: String, architecture: String?, shardCount: Int, tensorCount: Int, expectedTensorCount: Int? = nil,
        bytesScanned: Int, seconds: Double, int4: Int4Summary? = nil, checksums: ChecksumSummary? = nil, findings: [Finding]
    ) {
        self.path = path
        self.architecture = architecture
        self.shardCount = shardCount
        self.tensorCount = tensorCount
        self.expectedTensorCount = expectedTensorCount
        self.bytesScanned = bytesScanned
        self.seconds = seconds
        self.int4 = int4
        self.checksums = checksums
        // Every verifier (Hugging Face folder, k2pack folder, shard set) reports at most 1,000 per code.
        self.findings = Finding.capped(findings)
    }

    public var passed: Bool { !findings.contains { $0.severity == .error } }
    /// Errors found, those summarised in a "… and N more" line included.
    public var errorCount: Int { findings.filter { $0.severity == .error }.reduce(0) { $0 + ($1.more ?? 1) } }

    public func renderText() -> String {
        var out = "checkpoint     \(displayed(path))\n"
        if let architecture { out += "architecture   \(displayed(architecture))\n" }
        out += "tensors        \(grouped(tensorCount)) in \(shardCount) \(format == "k2pack" ? "file" : format == "gguf" ? "part" : "shard")\(shardCount == 1 ? "" : "s")"
        if let expectedTensorCount { out += " (\(format == "gguf" ? "the architecture needs" : "config implies") \(grouped(expectedTensorCount)))" }
        out += "\n"
        let rate = seconds > 0 ? Double(bytesScanned) / seconds : 0
        out += "scanned        \(formatBytes(bytesScanned)) in \(String(format: "%.2f", seconds)) s (\(formatBytes(Int(rate)))/s)\n"
        if let q = int4 {
            out += "int4           \(grouped(q.modules)) modules, \(grouped(q.groups)) groups, \(grouped(q.zeroGroups)) all-zero"
            if let lo = q.scaleMin, let hi = q.scaleMax { out += ", scales \(lo)…\(hi)" }
            out += "\n"
            let total = max(1, q.codeHistogram.reduce(0, +))
            let shares = q.codeHistogram.enumerated().map { i, c in "\(i - 8):\(String(format: "%.1f", 100 * Double(c) / Double(total)))%" }
            out += "codes          \(shares.joined(separator: " "))\n"
        }
        if let c = checksums {
            let against = c.source == "blob_names" ? "the Hugging Face cache's blob names" : "\(c.listed) listed"
            out += "sha256         \(c.checked) file\(c.checked == 1 ? "" : "s") checked against \(against), \(c.mismatched) mismatched\n"
        }
        out += renderFindings(findings)
        out += passed ? "\nOK: no problems found\n" : "\nFAILED: \(errorCount) problem\(errorCount == 1 ? "" : "s")\n"
        return out
    }
}

public struct VerifyOptions: Sendable {
    public var checksums: ChecksumList?
    /// Read every tensor's bytes (scales, codes, weight_shape, non-finite weights). Off: headers only.
    public var scanData: Bool
    public var threads: Int

    public init(checksums: ChecksumList? = nil, scanData: Bool = true, threads: Int = ProcessInfo.processInfo.activeProcessorCount) {
        self.checksums = checksums
        self.scanData = scanData
        self.threads = threads
    }
}

public enum Verifier {
    /// Verifies a checkpoint folder. Throws only when the folder cannot be read as a checkpoint at all.
    public static func verify(
        path: String, options: VerifyOptions = VerifyOptions(), progress: ProgressCallback? = nil
    ) throws(CheckpointError) -> VerifyReport {
        let start = Date()
        let checkpoint = try LoadedCheckpoint(path: path)
        let dir = checkpoint.directory
        var findings = checkpoint.problems.map(Finding.init)
        // In a Hugging Face cache snapshot every shard's blob is named by its SHA-256: check against those names
        // when no list was given.
        var options = options
        var source = "list"
        if options.checksums == nil, options.scanData, let blobs = FolderLinks.blobDigests(folder: path, names: dir.shardNames) {
            options.checksums = blobs
            source = "blob_names"
        }
        var int4: VerifyReport.Int4Summary?
        var checksums: VerifyReport.ChecksumSummary?
        var scanned = 0
        if options.scanData || options.checksums != nil {
            let scan = DataScan(checkpoint: checkpoint, options: options, progress: progress)
            let result = scan.run()
            findings += result.findings
            scanned = result.bytes
            if result.int4Modules > 0 {
                int4 = VerifyReport.Int4Summary(
                    modules: result.int4Modules, groups: result.codes.groupCount, zeroGroups: result.codes.zeroGroupCount,
                    codeHistogram: result.codes.histogram, scaleMin: result.scaleMin.isFinite ? result.scaleMin : nil,
                    scaleMax: result.scaleMax.isFinite ? result.scaleMax : nil)
            }
            if let list = options.checksums {
                let (extraFindings, extraChecked) = checkExtraFiles(dir: dir, list: list, userList: source == "list")
                findings += extraFindings
                checksums = VerifyReport.ChecksumSummary(
                    listed: list.digests.count, checked: result.checksummed + extraChecked,
                    mismatched: findings.filter { $0.code == "checksum_mismatch" }.count, source: source)
            }
        }
        let shardCount = dir.shardNames.count
        let tensorCount = dir.shards.reduce(0) { $0 + ($1?.tensors.count ?? 0) }
        return VerifyReport(
            path: path, architecture: checkpoint.config?.architecture.name, shardCount: shardCount, tensorCount: tensorCount,
            expectedTensorCount: checkpoint.expected?.count, bytesScanned: scanned,
            seconds: Date().timeIntervalSince(start), int4: int4, checksums: checksums, findings: findings)
    }

    /// Every shard must be covered by a list the user gave (a shard it does not name is an error: the check the
    /// user asked for did not happen); in a cache snapshot, a shard without a SHA-256 blob name is a warning.
    /// Listed files beyond the shards (config.json, the index): checked when present.
    static func checkExtraFiles(dir: CheckpointDirectory, list: ChecksumList, userList: Bool = true) -> (findings: [Finding], checked: Int) {
        var findings: [Finding] = []
        var checked = 0
        var used: Set<ByteName> = []
        for name in dir.shardNames {
            if let entry = list.entry(for: name) { used.insert(entry) }
        }
        for name in dir.shardNames where list.digest(for: name) == nil {
            findings.append(Finding(
                userList ? .error : .warning, code: "checksum_not_listed", file: name,
                message: userList
                    ? "\(displayed(name)): no SHA-256 listed for this shard: the list does not cover the checkpoint (a list for another version, or an incomplete one?)"
                    : "\(displayed(name)): no SHA-256 listed for this shard"))
        }
        for (key, digest) in list.digests.sorted(by: { $0.key < $1.key }) where !used.contains(key) {
            // The checkpoint file this entry stands for: its whole path, or the path after the list's common folder
            // prefix (`model/docs/README.md` → `docs/README.md`).
            let name = list.checkpointPath(of: key) { FileManager.default.fileExists(atPath: dir.path + "/" + $0) }
            guard let name else {
                findings.append(Finding(.warning, code: "checksum_file_absent", file: key.string, message: "\(displayed(key.string)): listed in the SHA-256 list but not in the checkpoint folder"))
                continue
            }
            do {
                let actual = try ReadOnlyFile(folder: dir.path, name: name).sha256Hex()
                checked += 1
                if actual != digest { findings.append(Finding(CheckpointError.checksumMismatch(file: name, expected: digest, actual: actual))) }
            } catch let error as FileIOError {
                findings.append(Finding(CheckpointError(error)))
            } catch {
                findings.append(Finding(code: "io", file: name, message: "\(displayed(name)): \(error)"))
            }
        }
        return (findings, checked)
    }
}
