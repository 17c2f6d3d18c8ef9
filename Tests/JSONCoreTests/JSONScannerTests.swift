import JSONCore
import Testing

@Suite("Strict JSON")
struct JSONScannerTests {
    func parse(_ text: String) throws(JSONError) -> JSONValue { try JSONDocument.parse(Array(text.utf8)) }

    @Test("parses nested values and keeps integers exact")
    func nested() throws {
        let v = try parse(#" {"a": [1, -2, 3.5e2, true, false, null], "b": {"c": "d\u00e9\n"}, "big": 9007199254740993} "#)
        #expect(v["a"]?.arrayValue?.count == 6)
        #expect(v["a"]?.arrayValue?[0].intValue == 1)
        #expect(v["a"]?.arrayValue?[2].doubleValue == 350)
        #expect(v["b"]?["c"]?.stringValue == "dé\n")
        #expect(v["big"]?.intValue == 9_007_199_254_740_993)
    }

    @Test("decodes surrogate pairs")
    func surrogates() throws {
        #expect(try parse(#""\ud83d\ude00""#).stringValue == "😀")
    }

    @Test(
        "rejects malformed documents with a reason",
        arguments: [
            ("{\"a\":1,}", "expected a string"),
            ("{\"a\":1 \"b\":2}", "expected ',' or '}' in an object"),
            ("[01]", "leading zero"),
            ("{\"a\":1,\"a\":2}", "duplicate key \"a\""),
            ("\"abc", "unterminated string"),
            ("\"\\q\"", "invalid escape"),
            ("\"\\ud800\"", "unpaired UTF-16 surrogate"),
            ("nul", "unexpected end of input"),
            ("NaN", "expected a number"),
            ("1 2", "after the end of the document"),
            ("{\"a\":\"\u{01}\"}", "unescaped control character"),
        ])
    func rejects(_ input: String, _ reason: String) {
        #expect {
            _ = try parse(input)
        } throws: { error in
            (error as? JSONError)?.reason.contains(reason) ?? false
        }
    }

    @Test("rejects invalid UTF-8 in strings")
    func invalidUTF8() {
        let bytes: [UInt8] = Array("{\"a\":\"".utf8) + [0xC3, 0x28] + Array("\"}".utf8)
        #expect(throws: JSONError.self) { try JSONDocument.parse(bytes) }
        do {
            _ = try JSONDocument.parse(bytes)
        } catch {
            #expect(error.description == "invalid JSON at byte 6: string is not valid UTF-8")
        }
    }

    @Test("strings read eight bytes at a time find a quote, escape, control byte or bad UTF-8 at any position")
    func wordAtATime() throws {
        // Each special byte at every offset of a 40-byte string: the word that holds it, and those before and after.
        for at in 0..<40 {
            func text(_ special: [UInt8]) -> [UInt8] {
                var body = [UInt8](repeating: UInt8(ascii: "a"), count: 40)
                body.replaceSubrange(at..<(at + 1), with: special)
                return Array("[\"".utf8) + body + Array("\"]".utf8)
            }
            let plain = String(repeating: "a", count: 40)
            func replaced(_ s: String) -> String { String(plain.prefix(at)) + s + String(plain.dropFirst(at + 1)) }
            #expect(try JSONDocument.parse(text(Array("\\n".utf8))).arrayValue?[0].stringValue == replaced("\n"))
            #expect(try JSONDocument.parse(text(Array("\\\"".utf8))).arrayValue?[0].stringValue == replaced("\""))
            #expect(try JSONDocument.parse(text([0xC3, 0xA9])).arrayValue?[0].stringValue == replaced("é"))
            #expect(try JSONDocument.parse(text([0x7F])).arrayValue?[0].stringValue == replaced("\u{7F}"))
            #expect(throws: JSONError(offset: 2 + at, reason: "unescaped control character in string")) { try JSONDocument.parse(text([0x01])) }
            #expect(throws: JSONError(offset: 2 + at, reason: "unescaped control character in string")) { try JSONDocument.parse(text([0x1F])) }
            #expect(throws: JSONError(offset: 2, reason: "string is not valid UTF-8")) { try JSONDocument.parse(text([0xFF])) }
            // A quote ends the string early: what follows is not JSON.
            #expect(throws: JSONError.self) { try JSONDocument.parse(text([UInt8(ascii: "\"")])) }
        }
    }

    @Test("bounds nesting depth")
    func depth() {
        let deep = String(repeating: "[", count: 100) + String(repeating: "]", count: 100)
        do {
            _ = try JSONDocument.parse(Array(deep.utf8), maxDepth: 64)
            Issue.record("deep nesting was accepted")
        } catch {
            #expect(error.reason == "nesting deeper than 64 levels")
        }
    }

    @Test("non-negative integers refuse overflow, fractions and signs")
    func integers() {
        for (text, ok) in [("0", true), ("9223372036854775807", true), ("9223372036854775808", false), ("1.0", false), ("-1", false), ("007", false)] {
            let bytes = Array(text.utf8)
            let result = bytes.withUnsafeBytes { raw -> Int? in
                var s = JSONScanner(bytes: raw)
                return try? s.parseNonNegativeInt("value")
            }
            #expect((result != nil) == ok, "\(text)")
        }
    }
}
