import Checkpoint
import Foundation
@testable import Inspection
import TestSupport
import Testing

/// Reports and the index stay bounded whatever the input claims: findings are listed up to
/// `Finding.perCodeLimit` per code and summarised after; the index is bounded in bytes and entries.
@Suite("bounded reports and index")
struct BoundedReportTests {
    func finding(_ code: String, _ i: Int, _ severity: Finding.Severity = .error) -> Finding {
        Finding(severity, code: code, tensor: "t\(i)", message: "\(code) \(i)")
    }

    @Test("the first findings of each code are kept in order, the rest summarised; capping twice changes nothing")
    func capped() {
        let many = (0..<2500).map { finding("missing_tensor", $0) } + [finding("wrong_shape", 0)]
            + (0..<1200).map { finding("unlisted_shard", $0, .warning) }
        let capped = Finding.capped(many)
        #expect(capped.count == 1000 + 1 + 1000 + 2)
        #expect(capped.prefix(1000).map(\.message) == (0..<1000).map { "missing_tensor \($0)" })
        let summaries = capped.filter { $0.more != nil }
        #expect(summaries.map(\.code) == ["missing_tensor", "unlisted_shard"])
        #expect(summaries.map(\.more) == [1500, 200])
        #expect(summaries[0].message == "… and 1500 more missing_tensor problems (the first 1000 are listed)")
        #expect(summaries[1].message == "… and 200 more unlisted_shard warnings (the first 1000 are listed)" && summaries[1].severity == .warning)
        #expect(Finding.capped(capped) == capped)
        #expect(Finding.capped(capped + [finding("missing_tensor", 9999)]).first { $0.more != nil }?.more == 1501)
        let report = VerifyReport(path: "x", architecture: nil, shardCount: 1, tensorCount: 0, bytesScanned: 0, seconds: 0, findings: many)
        #expect(report.findings == capped, "every verifier's report is capped where it is made")
        #expect(report.errorCount == 2501)
        let text = report.renderText()
        #expect(text.contains("2501 problems:") && text.contains("1200 warnings:"), "\(text)")
        #expect(text.contains("… and 2480 more missing_tensor problems (see --json)"), "\(text)")
        #expect(text.hasSuffix("FAILED: 2501 problems\n"))
        #expect(Finding.capped([finding("a", 0), finding("b", 0)]) == [finding("a", 0), finding("b", 0)])
    }

    @Test("an index with more entries than any config implies is refused while it is read")
    func indexEntries() throws {
        func index(_ n: Int) -> [UInt8] {
            var text = "{\"weight_map\": {"
            text += (0..<n).map { "\"t\($0)\": \"a.safetensors\"" }.joined(separator: ", ")
            return Array((text + "}}").utf8)
        }
        #expect(try ShardIndex.parse(index(3), maxEntries: 3).weightMap.count == 3)
        #expect(throws: CheckpointError.indexMalformed(
            file: ShardIndex.fileName, reason: "weight_map has more than 3 entries (a config implies at most 3 tensors)")) {
            _ = try ShardIndex.parse(index(4), maxEntries: 3)
        }
        #expect(throws: CheckpointError.indexMalformed(
            file: ShardIndex.fileName, reason: "weight_map has more than 1000000 entries (a config implies at most 1000000 tensors)")) {
            _ = try ShardIndex.parse(index(ShardIndex.maxEntries + 1))
        }
    }

    /// Runs the built `k2pack`: exit status, standard output and standard error.
    func run(_ arguments: [String]) throws -> (status: Int32, out: String, err: String) {
        let executable = try #require(TestPaths.executable, "k2pack is not built (swift build)")
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
    }

    @Test("an index file larger than any real one is refused before it is read")
    func indexBytes() throws {
        let temp = TemporaryDirectory()
        let folder = temp.copy(fixture: "k25-tiny")
        let path = folder + "/" + ShardIndex.fileName
        // A sparse file: its size is claimed, not stored.
        #expect(truncate(path, off_t(ShardIndex.maxBytes + 1)) == 0)
        #expect(throws: CheckpointError.indexMalformed(
            file: ShardIndex.fileName, reason: "201326593 bytes, more than k2pack reads for an index (201326592; 1000000 entries fit in it)")) {
            _ = try Verifier.verify(path: folder, options: VerifyOptions(scanData: false))
        }
        let r = try run(["verify", folder])
        #expect(r.status == 1 && r.err.contains("201326593 bytes, more than k2pack reads for an index"), "\(r.out)\(r.err)")
    }

    @Test("a config implying thousands of missing tensors gives a bounded report with the true count")
    func manyMissing() throws {
        let temp = TemporaryDirectory()
        let folder = temp.copy(fixture: "deepseek-v3-tiny")
        try edit(folder + "/config.json") { $0.replacingOccurrences(of: "\"num_hidden_layers\": 3", with: "\"num_hidden_layers\": 200") }
        let report = try Verifier.verify(path: folder, options: VerifyOptions(scanData: false))
        let missing = report.findings.filter { $0.code == "missing_tensor" }
        #expect(missing.count == Finding.perCodeLimit + 1)
        let more = try #require(missing.last?.more)
        #expect(more > 5_000 && report.errorCount == Finding.perCodeLimit + more + report.findings.filter { $0.code != "missing_tensor" && $0.severity == .error }.count)
        #expect(report.renderText().contains("FAILED: \(report.errorCount) problems"))
    }
}
