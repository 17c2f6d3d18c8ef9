import Foundation
import TestSupport
import Testing

@Suite("k2pack tokenize")
struct TokenizeCommandTests {
    static let folder = TestPaths.fixture("tokenizer")

    @Test("ids of a text, as text and as JSON, and back with --decode")
    func roundTrip() throws {
        let text = "Hello, 世界! It's [BOS] e\u{301} 123456"
        let plain = try run(["tokenize", Self.folder, text])
        #expect(plain.status == 0, "\(plain.err)")
        let ids = plain.out.split(separator: " ").map { Int($0.trimmingCharacters(in: .whitespacesAndNewlines))! }
        #expect(ids.count > 5)
        let json = try run(["tokenize", "--json", Self.folder, text])
        #expect(json.out == "{\"ids\": [" + ids.map(String.init).joined(separator: ", ") + "]}\n")
        let back = try run(["tokenize", "--decode", Self.folder, ids.map(String.init).joined(separator: " ")])
        #expect(back.status == 0, "\(back.err)")
        #expect(back.out == text + "\n")
        let backJSON = try run(["tokenize", "--decode", "--json", Self.folder, json.out])
        #expect(backJSON.out == "{\"text\":\"Hello, 世界! It's [BOS] e\u{301} 123456\"}\n", "\(backJSON.out)")
    }

    @Test("--text FILE reads the text; a file that is not UTF-8 is refused with its byte offset")
    func textFile() throws {
        let dir = TemporaryDirectory()
        let good = dir.write("good.txt", Array("abc\n".utf8))
        let r = try run(["tokenize", Self.folder, "--text", good])
        #expect(r.status == 0, "\(r.err)")
        let bad = dir.write("bad.txt", [0x61, 0x62, 0xFF, 0x63])
        let e = try run(["tokenize", Self.folder, "--text", bad])
        #expect(e.status != 0)
        #expect(e.err.contains("\(bad): not UTF-8 at byte offset 2 (byte 0xff)"), "\(e.err)")
    }

    @Test("refused: a folder without tokenizer files, a bad tiktoken.model line, ids outside the vocabulary")
    func refusals() throws {
        let dir = TemporaryDirectory()
        let none = try run(["tokenize", dir.path, "x"])
        #expect(none.status != 0)
        #expect(none.err.contains("\(dir.path): no tiktoken.model"), "\(none.err)")

        let model = try String(contentsOfFile: Self.folder + "/tiktoken.model", encoding: .utf8)
        var lines = model.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        lines[9] = "not base64 9"
        dir.write("tiktoken.model", Array(lines.joined(separator: "\n").utf8))
        dir.write("tokenizer_config.json", Array(try Data(contentsOf: URL(fileURLWithPath: Self.folder + "/tokenizer_config.json"))))
        let badLine = try run(["tokenize", dir.path, "x"])
        #expect(badLine.status != 0)
        #expect(badLine.err.contains("\(dir.path)/tiktoken.model:10: the rank is not a decimal number; expected '<base64 token> <rank>', found \"not base64 9\""), "\(badLine.err)")

        let outside = try run(["tokenize", "--decode", Self.folder, "1 2 999999"])
        #expect(outside.status != 0)
        #expect(outside.err.contains("id 999999 at position 2 is outside the vocabulary (0..<2485"), "\(outside.err)")
        let notID = try run(["tokenize", "--decode", Self.folder, "1 x2"])
        #expect(notID.err.contains("the argument: entry 1 'x2' is not a token id"), "\(notID.err)")
    }
}
