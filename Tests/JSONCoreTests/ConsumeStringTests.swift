import JSONCore
import Testing

@Suite("JSONScanner.consumeString: a known string recognized without building it")
struct ConsumeStringTests {
    /// Runs `consumeString(equalTo: literal)` on `input`; returns whether it matched and what `parseString` then reads
    /// (nil when the scanner is at the end or the rest is not a string).
    func attempt(_ input: String, _ literal: String) -> (matched: Bool, rest: String?) {
        let bytes = Array(input.utf8)
        let literalBytes = Array(literal.utf8)
        return bytes.withUnsafeBytes { raw in
            literalBytes.withUnsafeBytes { lit in
                var scanner = JSONScanner(bytes: raw)
                let matched = scanner.consumeString(equalTo: lit)
                return (matched, try? scanner.parseString())
            }
        }
    }

    @Test(
        "matches only the exact, unescaped spelling and otherwise consumes nothing",
        arguments: [
            (#""abc""#, "abc", true, nil as String?),
            (#"  "abc""#, "abc", true, nil),
            (#""""#, "", true, nil),
            (#""abcd""#, "abc", false, "abcd"),
            (#""ab""#, "abc", false, "ab"),
            (#""a\u0062c""#, "abc", false, "abc"),
            (#""abc"#, "abc", false, nil),
            (#""a"b""#, "a\"b", false, "a"),
            (#""a\\b""#, "a\\b", false, "a\\b"),
            ("", "abc", false, nil),
            (#"1"#, "1", false, nil),
        ])
    func exact(_ input: String, _ literal: String, _ matches: Bool, _ rest: String?) {
        let result = attempt(input, literal)
        #expect(result.matched == matches, "\(input) against \(literal)")
        #expect(result.rest == rest, "\(input): then read \(result.rest ?? "nothing")")
    }

    @Test("a literal is matched in place and the scan goes on after it")
    func literal() throws {
        let bytes = Array(#"{"dtype":"BF16"}"#.utf8)
        try bytes.withUnsafeBytes { raw in
            var scanner = JSONScanner(bytes: raw)
            try scanner.expect(UInt8(ascii: "{"), "'{'")
            let shape = scanner.consumeString("shape")
            let dtype = scanner.consumeString("dtype")
            #expect(!shape && dtype)
            try scanner.expect(UInt8(ascii: ":"), "':'")
            let value = try scanner.parseString()
            #expect(value == "BF16")
            try scanner.expect(UInt8(ascii: "}"), "'}'")
            try scanner.expectEnd()
        }
    }
}
