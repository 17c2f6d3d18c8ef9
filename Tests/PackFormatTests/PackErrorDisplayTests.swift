import PackFormat
import TestSupport
import Testing

/// PackError shows every outside string (file, tensor, digests read from a table) through `displayed(_:)`.
@Suite struct PackErrorDisplayTests {
    static let h = "layer\u{1B}[2J\nOK: b\u{202E}.k2p"
    static let e = "layer\\x1B[2J\\nOK: b\\u{202E}.k2p"

    @Test func everyCaseEscapesEveryName() {
        let h = Self.h
        let cases: [(PackError, Int)] = [
            (.io(path: h, operation: "read", reason: h), 2),
            (.notPack(file: h, reason: h), 2),
            (.unsupportedVersion(file: h, version: 9), 1),
            (.headerInvalid(file: h, reason: h), 2),
            (.tableChecksum(file: h, expected: h, actual: "00"), 2),
            (.tableInvalid(file: h, reason: h), 2),
            (.tensorInvalid(file: h, tensor: h, reason: h), 3),
            (.checksumMismatch(file: h, tensor: h, expected: h, actual: h), 4),
            (.sourceInvalid(reason: h), 1),
            (.outputExists(path: h), 1),
        ]
        for (error, fields) in cases {
            let text = error.description
            #expect(rawTerminalControls(text).isEmpty && !text.unicodeScalars.contains("\n"), "\(text)")
            #expect(text.components(separatedBy: Self.e).count - 1 == fields, "\(text)")
        }
        #expect(PackError.tensorInvalid(file: "layer-0001.k2p", tensor: "model.norm.weight", reason: "length 3").description
            == "layer-0001.k2p: tensor 'model.norm.weight': length 3")
    }
}
