import Foundation
import TestSupport
import Testing
@testable import Tokenizer

/// Builds tokenizer files by hand, good and bad.
enum TokenizerFiles {
    /// `base64(token) rank` lines for every single byte (rank = byte), then `extra` tokens.
    static func lines(extra: [String] = []) -> [String] {
        var out = (0..<256).map { "\(Base64.encode([UInt8($0)])) \($0)" }
        for (i, t) in extra.enumerated() { out.append("\(Base64.encode(Array(t.utf8))) \(256 + i)") }
        return out
    }

    static func model(_ lines: [String]) -> [UInt8] { Array(lines.map { $0 + "\n" }.joined().utf8) }

    static let config = Array("""
        {"added_tokens_decoder": {"258": {"content": "[BOS]"}, "259": {"content": "[EOS]"}, "260": "<|im_end|>"},
         "bos_token": "[BOS]", "eos_token": {"content": "[EOS]", "__type": "AddedToken"}, "pad_token": null}
        """.utf8)

    static func scheme() throws -> TokenizerScheme { try TokenizerScheme.kimi() }

    static func tokenizer(_ model: [UInt8], _ config: [UInt8] = config) throws -> KimiTokenizer {
        try KimiTokenizer(ranks: model, ranksFile: "m/tiktoken.model", config: config, configFile: "m/tokenizer_config.json",
                          scheme: scheme())
    }

    /// The error thrown for `model`, or nil.
    static func error(_ model: [UInt8], _ config: [UInt8] = config) -> TokenizerError? {
        do {
            _ = try tokenizer(model, config)
            return nil
        } catch let e as TokenizerError {
            return e
        } catch {
            return nil
        }
    }
}

@Suite("tiktoken.model reader refuses bad files")
struct TiktokenModelErrorTests {
    @Test("a good hand-built file loads: ranks, specials, encode")
    func good() throws {
        let t = try TokenizerFiles.tokenizer(TokenizerFiles.model(TokenizerFiles.lines(extra: ["ab"])))
        #expect(t.baseCount == 257)
        #expect(t.vocabularySize == 257 + 256)
        #expect(t.config.bosID == 257 + 256 - 255 && t.config.padID == nil && t.config.unkID == nil)
        #expect(t.encode("") == [])
    }

    @Test("bad lines are refused naming file and line", arguments: [
        ("YQ== 97x", "the rank is not a decimal number"),
        ("YQ==97", "no space between token and rank"),
        ("", "empty line"),
        ("YR== 97", "the token is not canonical base64"),
        ("YQ 97", "the token is not canonical base64"),
        ("Y=Q= 97", "the token is not canonical base64"),
        ("YQ=a 97", "the token is not canonical base64"),
        ("YQ==  97", "the rank is not a decimal number"),
        ("YQ== 097", "the rank has a leading zero"),
        ("YQ== -97", "the rank is not a decimal number"),
        ("YQ== ", "no rank"),
        (" 97", "empty token"),
        ("YQ== 97\r", "CR before the line end (CRLF line ends are not accepted)"),
        ("YQ== 99999999999", "the rank is too large"),
    ])
    func badLine(line: String, why: String) throws {
        var lines = TokenizerFiles.lines()
        lines[97] = line
        let e = try #require(TokenizerFiles.error(TokenizerFiles.model(lines)))
        #expect(e.kind == .badLine)
        let found = TiktokenModelReader.quote(ArraySlice(Array(line.utf8)))
        #expect(e.message == "m/tiktoken.model:98: \(why); expected '<base64 token> <rank>', found \(found)")
    }

    @Test("a token over 1024 bytes is refused", arguments: [
        (1025, "token of 1025 bytes (1...1024)"), (1027, "token longer than 1024 bytes"), (4000, "token longer than 1024 bytes"),
    ])
    func longToken(length: Int, why: String) throws {
        var lines = TokenizerFiles.lines()
        lines.append(Base64.encode([UInt8](repeating: 0x61, count: length)) + " 256")
        let e = try #require(TokenizerFiles.error(TokenizerFiles.model(lines)))
        #expect(e.kind == .badLine)
        #expect(e.message == "m/tiktoken.model:257: \(why); expected '<base64 token> <rank>', found \(TiktokenModelReader.quote(ArraySlice(Array(lines[256].utf8))))")
    }

    @Test("rank gaps are refused", arguments: [300, 257, 1_000_000])
    func rankGap(rank: Int) throws {
        var lines = TokenizerFiles.lines()
        lines.append("YWI= \(rank)")
        let e = try #require(TokenizerFiles.error(TokenizerFiles.model(lines)))
        #expect(e.kind == .rankGap)
        #expect(e.message == "m/tiktoken.model:257: rank \(rank) leaves a gap: the file has 257 tokens, so the ranks must be exactly 0..<257")
    }

    @Test("duplicate ranks are refused")
    func duplicateRank() throws {
        var lines = TokenizerFiles.lines(extra: ["ab", "cd"])
        lines[257] = "Y2Q= 256"
        let e = try #require(TokenizerFiles.error(TokenizerFiles.model(lines)))
        #expect(e.kind == .duplicateRank)
        #expect(e.message == "m/tiktoken.model:258: rank 256 is already given on line 257")
        var swapped = TokenizerFiles.lines()
        swapped[5] = "BQ== 4"
        let e2 = try #require(TokenizerFiles.error(TokenizerFiles.model(swapped)))
        #expect(e2.message == "m/tiktoken.model:6: rank 4 is already given on line 5")
    }

    @Test("duplicate token bytes are refused")
    func duplicateToken() throws {
        let lines = TokenizerFiles.lines(extra: ["ab", "cd", "ab"])
        let e = try #require(TokenizerFiles.error(TokenizerFiles.model(lines)))
        #expect(e.kind == .duplicateToken)
        #expect(e.message == "m/tiktoken.model:259: token YWI= (bytes 6162) is already rank 256 on line 257")
        var single = TokenizerFiles.lines()
        single.append("YQ== 256")
        let e2 = try #require(TokenizerFiles.error(TokenizerFiles.model(single)))
        #expect(e2.message == "m/tiktoken.model:257: token YQ== (bytes 61) is already rank 97 on line 98")
    }

    @Test("a missing single byte is refused")
    func missingByte() throws {
        var lines = TokenizerFiles.lines()
        lines[0x41] = "YWI= 65"
        let e = try #require(TokenizerFiles.error(TokenizerFiles.model(lines)))
        #expect(e.kind == .missingByte)
        #expect(e.message == "m/tiktoken.model: byte 0x41 has no token of its own; byte-level BPE needs all 256 single bytes")
    }

    @Test("too many lines and an empty file are refused before allocation")
    func limits() throws {
        let many = [UInt8](repeating: 0x0A, count: TiktokenModelReader.maxLines + 1)
        let e = try #require(TokenizerFiles.error(many))
        #expect(e.kind == .tooLarge)
        #expect(e.message == "m/tiktoken.model: \(TiktokenModelReader.maxLines + 1) lines, over the \(TiktokenModelReader.maxLines)-line limit for a tiktoken.model")
        let empty = try #require(TokenizerFiles.error([]))
        #expect(empty.message == "m/tiktoken.model: empty; expected one '<base64 token> <rank>' line per token")
    }

    @Test("a file over the size limit is refused from its size, without reading it")
    func sizeLimit() throws {
        let dir = TemporaryDirectory()
        let path = dir.write("tiktoken.model", [])
        let handle = try #require(FileHandle(forWritingAtPath: path))
        try handle.truncate(atOffset: UInt64(TiktokenModelReader.maxFileBytes + 1))
        try handle.close()
        dir.write("tokenizer_config.json", TokenizerFiles.config)
        #expect(throws: TokenizerError(.tooLarge, "\(path): \(TiktokenModelReader.maxFileBytes + 1) bytes, over the \(TiktokenModelReader.maxFileBytes)-byte limit for a tiktoken.model")) {
            try KimiTokenizer.load(directory: dir.path)
        }
    }
}

@Suite("tokenizer_config.json reader refuses bad configs")
struct TokenizerConfigErrorTests {
    static let model = TokenizerFiles.model(TokenizerFiles.lines(extra: ["ab", "cd"]))

    @Test("bad configs are refused naming the file", arguments: [
        ("[1, 2]", "m/tokenizer_config.json: the top level is an array, expected an object"),
        ("{\"added_tokens_decoder\": [1]}", "m/tokenizer_config.json: added_tokens_decoder is an array, expected an object of id → token"),
        ("{\"added_tokens_decoder\": {\"abc\": \"[BOS]\"}}", "m/tokenizer_config.json: added_tokens_decoder key 'abc' is not a decimal token id"),
        ("{\"added_tokens_decoder\": {\"0258\": \"[BOS]\"}}", "m/tokenizer_config.json: added_tokens_decoder key '0258' is not a decimal token id"),
        ("{\"added_tokens_decoder\": {\"258\": {\"special\": true}}}", "m/tokenizer_config.json: added_tokens_decoder[258] is an object without a string 'content'"),
        ("{\"added_tokens_decoder\": {\"258\": \"\"}}", "m/tokenizer_config.json: added_tokens_decoder[258] has a name of 0 bytes (1...1024)"),
        ("{\"added_tokens_decoder\": {\"5\": \"[BOS]\"}}", "m/tokenizer_config.json: added_tokens_decoder[5] ('[BOS]') is not a special id: tiktoken.model has 258 ranks, so the 256 specials are 258..<514"),
        ("{\"added_tokens_decoder\": {\"514\": \"[BOS]\"}}", "m/tokenizer_config.json: added_tokens_decoder[514] ('[BOS]') is not a special id: tiktoken.model has 258 ranks, so the 256 specials are 258..<514"),
        ("{\"added_tokens_decoder\": {\"258\": \"[BOS]\", \"300\": \"[BOS]\"}}", "m/tokenizer_config.json: special ids 258 and 300 are both named '[BOS]'"),
        ("{\"added_tokens_decoder\": {\"258\": \"[BOS]\", \"259\": \"<|reserved_token_300|>\"}}", "m/tokenizer_config.json: special ids 259 and 300 are both named '<|reserved_token_300|>'"),
        ("{\"added_tokens_decoder\": {\"259\": \"[EOS]\"}}", "m/tokenizer_config.json: bos_token '[BOS]' is not one of the 256 special tokens (258..<514)"),
        ("{\"added_tokens_decoder\": {\"258\": \"[BOS]\"}}", "m/tokenizer_config.json: eos_token '[EOS]' is not one of the 256 special tokens (258..<514)"),
        ("{\"added_tokens_decoder\": {\"258\": \"[BOS]\", \"259\": \"[EOS]\"}, \"unk_token\": \"<unk>\"}", "m/tokenizer_config.json: unk_token '<unk>' is not one of the 256 special tokens (258..<514)"),
        ("{\"added_tokens_decoder\": {\"258\": \"[BOS]\", \"259\": \"[EOS]\"}, \"pad_token\": 5}", "m/tokenizer_config.json: pad_token is a number, expected a token name"),
        ("{\"added_tokens_decoder\": {\"258\": \"[BOS]\", \"259\": \"[EOS]\"}, \"bos_token\": null}", "m/tokenizer_config.json: bos_token is null; the Kimi tokenizer needs one"),
    ])
    func badConfig(config: String, message: String) throws {
        let e = try #require(TokenizerFiles.error(Self.model, Array(config.utf8)))
        #expect(e.kind == .badConfig)
        #expect(e.message == message)
    }

    @Test("a config that is not JSON names the file and the byte")
    func notJSON() throws {
        let e = try #require(TokenizerFiles.error(Self.model, Array("{\"bos_token\": }".utf8)))
        #expect(e.kind == .badConfig)
        #expect(e.message.hasPrefix("m/tokenizer_config.json: invalid JSON at byte "), "\(e)")
    }

    @Test("names and defaults: reserved names fill the block, bos/eos default to [BOS]/[EOS]")
    func defaults() throws {
        let t = try TokenizerFiles.tokenizer(Self.model, Array("{\"added_tokens_decoder\": {\"258\": \"[BOS]\", \"259\": \"[EOS]\", \"513\": {\"content\": \"[PAD]\"}}, \"pad_token\": {\"content\": \"[PAD]\"}}".utf8))
        #expect(t.config.bosID == 258 && t.config.eosID == 259 && t.config.padID == 513)
        #expect(t.config.specialNames[2] == "<|reserved_token_260|>")
        #expect(t.encode("ab<|reserved_token_260|>[PAD]cd") == [256, 260, 513, 257])
    }
}

@Suite("special tokens in the text")
struct SpecialTokenTests {
    static let model = TokenizerFiles.model(TokenizerFiles.lines(extra: ["ab", "cd"]))

    @Test("leftmost first; where two specials start at one place, the longer wins")
    func longestFirst() throws {
        let config = Array("{\"added_tokens_decoder\": {\"258\": \"[BOS]\", \"259\": \"[EOS]\", \"260\": \"<|x|>\", \"261\": \"<|x|>y\"}}".utf8)
        let t = try TokenizerFiles.tokenizer(Self.model, config)
        #expect(t.encode("<|x|>y") == [261])
        #expect(t.encode("<|x|>z") == [260, Int(UInt8(ascii: "z"))])
        #expect(t.encode("a<|x|>y<|x|>") == [97, 261, 260])
        #expect(t.encode("<|x|") == [60, 124, 120, 124])
        #expect(t.encode("[BOS[EOS]") == [91, 66, 79, 83, 259])
    }

    @Test("the text between specials is pre-tokenized on its own: (?!\\S) holds at a special")
    func segments() throws {
        let model = TokenizerFiles.model(TokenizerFiles.lines(extra: ["ab", "  "]))
        let config = Array("{\"added_tokens_decoder\": {\"258\": \"[BOS]\", \"259\": \"[EOS]\"}}".utf8)
        let t = try TokenizerFiles.tokenizer(model, config)
        // Two spaces before [EOS] end their segment: one piece, one token. Before "x" the run gives one space
        // to " x" (\s+(?!\S) backs off), so the two spaces are two pieces.
        #expect(t.encode("ab  [EOS]") == [256, 257, 259])
        #expect(t.encode("ab  x") == [256, 32, 32, 120])
        #expect(t.encode("ab  ") == [256, 257])
    }
}

@Suite("tokenizer folders, texts and ids")
struct TokenizerInputErrorTests {
    @Test("a folder without the tokenizer files is refused")
    func missingFiles() throws {
        let dir = TemporaryDirectory()
        #expect(throws: TokenizerError(.missingFile, "\(dir.path): no tiktoken.model (the Kimi tokenizer needs tiktoken.model and tokenizer_config.json)")) {
            try KimiTokenizer.load(directory: dir.path)
        }
        dir.write("tiktoken.model", TokenizerFiles.model(TokenizerFiles.lines()))
        #expect(throws: TokenizerError(.missingFile, "\(dir.path): no tokenizer_config.json (the Kimi tokenizer needs tiktoken.model and tokenizer_config.json)")) {
            try KimiTokenizer.load(directory: dir.path)
        }
        #expect(throws: TokenizerError(.missingFile, "\(dir.path)/nothing: not a folder")) {
            try KimiTokenizer.load(directory: dir.path + "/nothing")
        }
        dir.write("tokenizer_config.json", Array("{\"added_tokens_decoder\": {\"256\": \"[BOS]\", \"257\": \"[EOS]\"}}".utf8))
        let t = try KimiTokenizer.load(directory: dir.path)
        #expect(t.config.bosID == 256)
    }

    @Test("text that is not UTF-8 is refused naming file and byte offset", arguments: [
        ([0x61, 0x80, 0x62], 1, "80"),
        ([0x61, 0x62, 0xE4, 0xB8], 2, "e4"),
        ([0xC0, 0xAF], 0, "c0"),
        ([0x61, 0xED, 0xA0, 0x80], 1, "ed"),
        ([0xF4, 0x90, 0x80, 0x80], 0, "f4"),
        ([0xE2, 0x82, 0xAC, 0xF5, 0x80], 3, "f5"),
        ([0xE0, 0x80, 0x80], 0, "e0"),
        ([0xFF], 0, "ff"),
    ] as [([UInt8], Int, String)])
    func notUTF8(bytes: [UInt8], offset: Int, byte: String) throws {
        #expect(throws: TokenizerError(.notUTF8, "t.txt: not UTF-8 at byte offset \(offset) (byte 0x\(byte))")) {
            try KimiTokenizer.text(fromUTF8: bytes, file: "t.txt")
        }
    }

    @Test("valid UTF-8 passes, including 4-byte scalars and U+FFFF")
    func validUTF8() throws {
        let text = "a€中😀\u{FFFF}\u{10FFFF}"
        #expect(try KimiTokenizer.text(fromUTF8: Array(text.utf8), file: "t") == text)
    }

    @Test("ids outside the vocabulary are refused with their position", arguments: [-1, 514, 1 << 40])
    func badID(id: Int) throws {
        let t = try TokenizerFiles.tokenizer(TokenizerFiles.model(TokenizerFiles.lines(extra: ["ab", "cd"])))
        #expect(throws: TokenizerError(.badID, "id \(id) at position 2 is outside the vocabulary (0..<514: 258 ranks and 256 specials)")) {
            try t.decode([97, 256, id])
        }
        #expect(try t.decode([97, 256, 513]) == "aab<|reserved_token_513|>")
    }
}

@Suite("tokenizer files are opened through the folder guard")
struct TokenizerFolderGuardTests {
    @Test("a tiktoken.model or tokenizer_config.json linked from outside the folder is refused by name")
    func linkOutside() throws {
        for name in ["tiktoken.model", "tokenizer_config.json"] {
            let outside = TemporaryDirectory()
            let dir = TemporaryDirectory()
            let target = outside.write(name, name == "tiktoken.model" ? TokenizerFiles.model(TokenizerFiles.lines(extra: [])) : TokenizerFiles.config)
            if name != "tiktoken.model" { dir.write("tiktoken.model", TokenizerFiles.model(TokenizerFiles.lines(extra: []))) }
            if name != "tokenizer_config.json" { dir.write("tokenizer_config.json", TokenizerFiles.config) }
            try FileManager.default.createSymbolicLink(atPath: dir.path + "/" + name, withDestinationPath: target)
            do {
                _ = try KimiTokenizer.load(directory: dir.path)
                Issue.record("\(name) linked from outside the folder was read")
            } catch {
                #expect(error.kind == .io)
                #expect(error.description.contains(name) && error.description.contains("symlink"), "\(error.description)")
            }
        }
    }

    @Test("a FIFO named tiktoken.model is refused at once, not waited on")
    func fifo() throws {
        let dir = TemporaryDirectory()
        #expect(mkfifo(dir.path + "/tiktoken.model", 0o644) == 0)
        dir.write("tokenizer_config.json", TokenizerFiles.config)
        #expect(throws: TokenizerError(.io, "\(dir.path)/tiktoken.model: cannot read: not a regular file")) {
            try KimiTokenizer.load(directory: dir.path)
        }
    }
}

@Suite("ids and special names are read as bytes")
struct TokenizerBytesTests {
    @Test("ids separated by CRLF, LF, tabs, commas or spaces read the same; a bad entry is named")
    func crlfIDs() throws {
        for text in ["1 2 3", "1\r\n2\r\n3\r\n", "\r\n1,2\t3", "1\n2\r3"] {
            #expect(try IDList.parse(text, source: "ids.txt") == [1, 2, 3], "\(Array(text.utf8))")
        }
        #expect(try IDList.parse("\r\n[1, 2]", source: "ids.txt") == [1, 2])
        #expect(throws: TokenizerError(.badID, "ids.txt: entry 1 'x' is not a token id")) { try IDList.parse("1\r\nx\r\n", source: "ids.txt") }
    }

    @Test("two specials named by canonically equivalent spellings are two names, as in tiktoken")
    func canonicalNames() throws {
        let nfc = "<|caf\u{E9}|>", nfd = "<|cafe\u{301}|>"
        let config = Array("""
            {"added_tokens_decoder": {"258": {"content": "[BOS]"}, "259": {"content": "[EOS]"}, "260": "\(nfc)", "261": "\(nfd)"},
             "bos_token": "[BOS]", "eos_token": "[EOS]", "pad_token": "\(nfd)"}
            """.utf8)
        let tokenizer = try TokenizerFiles.tokenizer(TokenizerFiles.model(TokenizerFiles.lines()), config)
        #expect(tokenizer.config.specialNames[260 - tokenizer.baseCount] == nfc && tokenizer.config.specialNames[261 - tokenizer.baseCount] == nfd)
        #expect(tokenizer.config.padID == 261)
    }
}
