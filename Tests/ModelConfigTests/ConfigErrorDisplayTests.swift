import JSONCore
@testable import ModelConfig
import TestSupport
import Testing

/// ConfigError shows every outside string through `displayed(_:)`, and config.json values that reach an error
/// (model_type, torch_dtype, quant_method, patterns, group names) arrive escaped.
@Suite struct ConfigErrorDisplayTests {
    static let h = "a\u{1B}[2J\nOK: b\u{202E}"
    static let e = "a\\x1B[2J\\nOK: b\\u{202E}"

    @Test func everyCaseEscapesEveryName() {
        let h = Self.h
        let cases: [(ConfigError, Int)] = [
            (.missingConfig(path: h), 1),
            (.invalidJSON(file: h, error: JSONError(offset: 1, reason: h)), 2),
            (.notAnObject(file: h, key: h), 2),
            (.notAnObject(file: h, key: nil), 1),
            (.unknownArchitecture(modelType: h, known: ["kimi_k2"]), 1),
            (.missingKey(file: h, section: h, key: h), 3),
            (.wrongType(file: h, section: h, key: h, expected: "an integer", found: h), 4),
            (.invalidValue(file: h, section: h, key: h, reason: h), 4),
            (.unsupportedQuantization(file: h, reason: h), 2),
            (.manifest(name: h, reason: h), 2),
            (.expression(expression: h, reason: h), 2),
        ]
        for (error, fields) in cases {
            let text = error.description
            #expect(rawTerminalControls(text).isEmpty && !text.unicodeScalars.contains("\n"), "\(text)")
            #expect(text.components(separatedBy: Self.e).count - 1 == fields, "\(text)")
        }
    }

    /// A config string value, JSON-escaped.
    static let value = "x\\u001b[2J\\r\\nOK: no problems found\\u0085\\u2029"
    static let shown = "x\\x1B[2J\\r\\nOK: no problems found\\u{0085}\\u{2029}"

    @Test("config.json values with control characters reach the error escaped")
    func configValues() {
        let documents = [
            "{\"model_type\": \"\(Self.value)\"}",
            "{\"model_type\": \"kimi_k2\", \(textMembers(dropping: "torch_dtype")), \"torch_dtype\": \"\(Self.value)\"}",
            "{\"model_type\": \"kimi_k2\", \(textMembers()), \"quantization_config\": {\"quant_method\": \"\(Self.value)\"}}",
            "{\"model_type\": \"kimi_k2\", \(textMembers()), \"quantization_config\": {\"quant_method\": \"compressed-tensors\", \"ignore\": [\"re:(\(Self.value)\"], \"config_groups\": {}}}",
        ]
        for document in documents {
            do {
                _ = try ModelConfig.parse(Array(document.utf8))
                Issue.record("accepted: \(document)")
            } catch {
                let text = error.description
                #expect(text.contains(Self.shown), "\(text)")
                #expect(rawTerminalControls(text).isEmpty && !text.unicodeScalars.contains("\n"), "\(text)")
            }
        }
    }
}
