import Inspection
import TestSupport
import Testing

/// The text reports display what they interpolate, and findings are escaped line by line when rendered, so a
/// message that carries a raw name (a finding someone builds without `displayed`) still cannot forge a line.
@Suite struct ReportDisplayTests {
    @Test func verifyReportText() {
        let raw = "w\u{1B}[2J\nOK: no problems found\u{202E}"
        let report = VerifyReport(
            path: "/models/\u{1B}]0;title\u{7}", architecture: "kimi\u{9B}k2", shardCount: 1, tensorCount: 1, bytesScanned: 0, seconds: 0,
            findings: [Finding(code: "x", file: raw, tensor: raw, message: "shard: tensor '\(raw)' is odd"), Finding(.warning, code: "y", message: raw)])
        let text = report.renderText()
        #expect(rawTerminalControls(text).isEmpty, "\(text)")
        let lines = text.components(separatedBy: "\n")
        #expect(!lines.contains { $0.hasPrefix("OK: no problems found") }, "\(text)")
        #expect(lines.last(where: { !$0.isEmpty }) == "FAILED: 1 problem")
        #expect(text.contains("checkpoint     /models/\\x1B]0;title\\x07"))
        #expect(text.contains("architecture   kimi\\u{009B}k2"))
        #expect(text.contains("  ✗ shard: tensor 'w\\x1B[2J\\nOK: no problems found\\u{202E}' is odd"))
        // The report's own data stays exact for --json.
        #expect(report.findings[0].tensor == raw)
    }
}
