import Checkpoint
import Foundation
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
    }

    public var path: String
    public var architecture: String?
    public var shardCount: Int
    public var tensorCount: Int
    public var expectedTensorCount: Int?
    public var bytesScanned: Int
    public var seconds: Double
    public var int4: Int4Summary?
    public var checksums: ChecksumSummary?
    public var findings: [Finding]

    public var passed: Bool { !findings.contains { $0.severity == .error } }
    public var errorCount: Int { findings.filter { $0.severity == .error }.count }

    public func renderText() -> String {
        var out = "checkpoint     \(path)\n"
        if let architecture { out += "architecture   \(architecture)\n" }
        out += "tensors        \(grouped(tensorCount)) in \(shardCount) shard\(shardCount == 1 ? "" : "s")"
        if let expectedTensorCount { out += " (config implies \(grouped(expectedTensorCount)))" }
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
            out += "sha256         \(c.checked) file\(c.checked == 1 ? "" : "s") checked against \(c.listed) listed, \(c.mismatched) mismatched\n"
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
        path: String, options: VerifyOptions = VerifyOptions(), progress: (@Sendable (Int, Int) -> Void)? = nil
    ) throws(CheckpointError) -> VerifyReport {
        let start = Date()
        let checkpoint = try LoadedCheckpoint(path: path)
        let dir = checkpoint.directory
        var findings = checkpoint.findings
        if let expected = checkpoint.expected {
            findings += structuralFindings(checkpoint, expected)
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
                findings += checkExtraFiles(dir: dir, list: list)
                checksums = VerifyReport.ChecksumSummary(
                    listed: list.digests.count, checked: result.checksummed,
                    mismatched: result.findings.filter { $0.code == "checksum_mismatch" }.count)
            }
        }
        let shardCount = dir.shardNames.count
        let tensorCount = dir.shards.reduce(0) { $0 + ($1?.tensors.count ?? 0) }
        return VerifyReport(
            path: path, architecture: checkpoint.config?.architecture.name, shardCount: shardCount, tensorCount: tensorCount,
            expectedTensorCount: checkpoint.expected?.tensors.count, bytesScanned: scanned,
            seconds: Date().timeIntervalSince(start), int4: int4, checksums: checksums, findings: findings)
    }

    /// Every tensor the config implies is present with the right shape and dtype, and nothing else is.
    static func structuralFindings(_ checkpoint: LoadedCheckpoint, _ expected: ExpectedTensorList) -> [Finding] {
        let dir = checkpoint.directory
        var findings: [Finding] = []
        // Tensors of shards that failed to open are reported through the shard, not one by one.
        let unreadable = Set(dir.shardNames.indices.filter { dir.shards[$0] == nil }.map { dir.shardNames[$0] })
        let indexed = dir.index?.weightMap
        for (position, e) in expected.tensors.enumerated() {
            guard let (shard, entry) = dir.entry(named: e.name) else {
                if let shardName = indexed?[e.name], unreadable.contains(shardName) { continue }
                if indexed == nil, !unreadable.isEmpty { continue }
                let dtypes = e.dtypes.map(\.rawValue).joined(separator: " or ")
                let home = likelyShard(of: position, in: expected, dir)
                let place = home.map { " from \($0), which holds the rest of its layer" } ?? ""
                findings.append(Finding(
                    code: "missing_tensor", file: home, tensor: e.name,
                    message: "tensor '\(e.name)' is missing\(place): the config implies \(formatShape(e.shape)) \(dtypes) (\(e.role))"))
                continue
            }
            if entry.shape != e.shape {
                findings.append(Finding(
                    code: "wrong_shape", file: shard.name, tensor: e.name,
                    message: "\(shard.name): tensor '\(e.name)': shape \(formatShape(entry.shape)), expected \(formatShape(e.shape)) from config.json (\(e.role))"))
            }
            if !e.dtypes.contains(entry.dtype) {
                findings.append(Finding(
                    code: "wrong_dtype", file: shard.name, tensor: e.name,
                    message: "\(shard.name): tensor '\(e.name)': dtype \(entry.dtype.rawValue), expected \(e.dtypes.map(\.rawValue).joined(separator: " or ")) (\(e.role))"))
            }
        }
        for (s, shard) in dir.shards.enumerated() {
            guard let shard else { continue }
            for entry in shard.tensors where expected.byName[entry.name] == nil {
                findings.append(Finding(
                    code: "unexpected_tensor", file: dir.shardNames[s], tensor: entry.name,
                    message: "\(dir.shardNames[s]): tensor '\(entry.name)' \(formatShape(entry.shape)) \(entry.dtype.rawValue) is not implied by config.json"))
            }
        }
        return findings
    }

    /// The shard holding the nearest present tensor of the same layer: where a missing tensor belongs.
    static func likelyShard(of position: Int, in expected: ExpectedTensorList, _ dir: CheckpointDirectory) -> String? {
        let layer = expected.tensors[position].layer
        let count = expected.tensors.count
        for distance in 1..<count {
            for candidate in [position - distance, position + distance] where candidate >= 0 && candidate < count {
                let neighbour = expected.tensors[candidate]
                guard neighbour.layer == layer else { continue }
                if let location = dir.locations[neighbour.name] { return dir.shardNames[location.shard] }
            }
            if distance > 4096 { break }
        }
        return nil
    }

    /// Listed files beyond the shards (config.json, the index): checked when present.
    static func checkExtraFiles(dir: CheckpointDirectory, list: ChecksumList) -> [Finding] {
        var findings: [Finding] = []
        let shards = Set(dir.shardNames)
        for name in dir.shardNames where list.digests[name] == nil {
            findings.append(Finding(.warning, code: "checksum_not_listed", file: name, message: "\(name): no SHA-256 listed for this shard"))
        }
        for (name, digest) in list.digests.sorted(by: { $0.key < $1.key }) where !shards.contains(name) {
            let path = dir.path + "/" + name
            guard FileManager.default.fileExists(atPath: path) else {
                findings.append(Finding(.warning, code: "checksum_file_absent", file: name, message: "\(name): listed in the SHA-256 list but not in the checkpoint folder"))
                continue
            }
            do {
                let file = try ReadOnlyFile(path: path)
                let actual = SHA256Digest.hex(of: try file.mapped())
                if actual != digest { findings.append(Finding(CheckpointError.checksumMismatch(file: name, expected: digest, actual: actual))) }
            } catch {
                findings.append(Finding(error))
            }
        }
        return findings
    }
}
