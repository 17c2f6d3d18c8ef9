import Checkpoint
import Foundation
import GGUF
@testable import GGUFConvert
import TestSupport
import Testing
@testable import Tokenizer

/// Fixtures/gguf-vocab/expected.json (scripts/fixtures/make_gguf_vocab.py: llama.cpp's kimi-k2 rebuild with
/// tiktoken's ranks, gguf-py 0.19's SpecialVocab and types).
enum VocabularyOracle {
    static var expected: [String: Any] {
        let data = try! Data(contentsOf: URL(fileURLWithPath: TestPaths.fixture("gguf-vocab/expected.json")))
        return try! JSONSerialization.jsonObject(with: data) as! [String: Any]
    }

    /// A copy of Fixtures/tokenizer with `files` written over it.
    static func folder(_ dir: TemporaryDirectory, files: [String: String] = [:]) -> String {
        let path = dir.copy(fixture: "tokenizer")
        for (name, text) in files { dir.write("tokenizer/" + name, Array(text.utf8)) }
        return path
    }

    static func sha256(_ items: [String]) -> String {
        let joined = Array(items.joined(separator: "\n").utf8)
        return joined.withUnsafeBytes { SHA256Digest.hex(of: $0) }
    }

    /// The value of `key` in `keys`, which must hold it once.
    static func value(_ keys: [GGUFKeyValue], _ key: String) -> GGUFValue? {
        let found = keys.filter { $0.key == key }
        #expect(found.count <= 1, "\(key) written \(found.count) times")
        return found.first?.value
    }

    /// The first index where `ours` and `theirs` differ, as a message; nil when equal.
    static func firstDifference<T: Equatable>(_ ours: [T], _ theirs: [T], offset: Int = 0) -> String? {
        for i in 0..<min(ours.count, theirs.count) where ours[i] != theirs[i] {
            return "first difference at index \(offset + i): ours \(ours[i]), llama.cpp's \(theirs[i])"
        }
        return ours.count == theirs.count ? nil : "lengths differ: ours \(ours.count), llama.cpp's \(theirs.count)"
    }

    /// Compares a list with the oracle's count, SHA-256, first and last entries, naming the first differing index.
    static func check<T: Equatable>(_ name: String, _ ours: [T], _ oracle: [String: Any], text: (T) -> String, as _: T.Type) {
        let count = oracle["count"] as! Int
        let first = oracle["first"] as! [T], last = oracle["last"] as! [T]
        #expect(ours.count == count, "\(name): \(ours.count) entries, llama.cpp writes \(count)")
        let head = Array(ours.prefix(first.count))
        let tail = Array(ours.suffix(last.count))
        #expect(firstDifference(head, first) == nil, "\(name): \(firstDifference(head, first) ?? "")")
        #expect(firstDifference(tail, last, offset: max(0, ours.count - last.count)) == nil,
                "\(name): \(firstDifference(tail, last, offset: max(0, ours.count - last.count)) ?? "")")
        let digest = sha256(ours.map(text))
        #expect(digest == oracle["sha256"] as! String,
                "\(name): SHA-256 differs from llama.cpp's (first and last \(first.count) equal: the difference is between index \(first.count) and \(count - last.count))")
    }
}

@Suite("GGUF tokenizer metadata (convert --to gguf)")
struct GGUFVocabularyTests {
    @Test("Fixtures/tokenizer gives llama.cpp's tokens, token types and merges, keys and types in its order")
    func fixtureMatchesLlamaCpp() throws {
        let dir = TemporaryDirectory()
        let folder = VocabularyOracle.folder(dir)
        let expected = VocabularyOracle.expected
        let size = expected["vocabulary_size"] as! Int
        let keys = try GGUFVocabulary.metadata(modelFolder: folder, vocabularySize: size)
        let keyTypes = (expected["key_types"] as! [[String]]).map { $0[0] + ": " + $0[1] }
        #expect(keys.map { $0.key + ": " + $0.value.typeName } == keyTypes)
        #expect(VocabularyOracle.value(keys, "tokenizer.ggml.model") == .string("gpt2"))
        #expect(VocabularyOracle.value(keys, "tokenizer.ggml.pre") == .string("kimi-k2"))
        guard case let .array(.string(tokens)) = VocabularyOracle.value(keys, "tokenizer.ggml.tokens"),
              case let .array(.i32(types)) = VocabularyOracle.value(keys, "tokenizer.ggml.token_type"),
              case let .array(.string(merges)) = VocabularyOracle.value(keys, "tokenizer.ggml.merges") else {
            Issue.record("token keys missing or of the wrong type: \(keys.map { $0.key + " " + $0.value.typeName })")
            return
        }
        VocabularyOracle.check("tokens", tokens, expected["tokens"] as! [String: Any], text: { $0 }, as: String.self)
        VocabularyOracle.check("token types", types.map(Int.init), expected["token_types"] as! [String: Any], text: { String($0) }, as: Int.self)
        VocabularyOracle.check("merges", merges, expected["merges"] as! [String: Any], text: { $0 }, as: String.self)
    }

    @Test("special ids, add_*_token and the chat template: gguf-py's SpecialVocab keys, in order, for each oracle case")
    func specialVocabularyCases() throws {
        let expected = VocabularyOracle.expected
        let size = expected["vocabulary_size"] as! Int
        let cases = expected["special_vocab_cases"] as! [[String: Any]]
        #expect(cases.count == 3)
        for c in cases {
            let dir = TemporaryDirectory()
            let folder = VocabularyOracle.folder(dir, files: c["files"] as! [String: String])
            let keys = try GGUFVocabulary.metadata(modelFolder: folder, vocabularySize: size).dropFirst(5)
            var theirs: [GGUFKeyValue] = []
            for entry in c["keys"] as! [[Any]] {
                let key = entry[0] as! String, type = entry[1] as! String
                switch type {
                case "u32": theirs.append(GGUFKeyValue(key: key, value: .u32(UInt32(entry[2] as! Int))))
                case "bool": theirs.append(GGUFKeyValue(key: key, value: .bool(entry[2] as! Bool)))
                default: theirs.append(GGUFKeyValue(key: key, value: .string(entry[2] as! String)))
                }
            }
            #expect(Array(keys) == theirs, "case \(c["name"]!)")
        }
    }

    @Test("the brief's signature: bos/eos/pad the caller has, written as u32 in gguf-py's order")
    func callerIDs() throws {
        let dir = TemporaryDirectory()
        let folder = VocabularyOracle.folder(dir)
        let keys = try GGUFVocabulary.metadata(modelFolder: folder, vocabularySize: 2485, bos: 2229, eos: 2230, pad: 2484)
        #expect(keys.dropFirst(5).map(\.key) == ["tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.padding_token_id"])
        #expect(keys.dropFirst(5).map(\.value) == [.u32(2229), .u32(2230), .u32(2484)])
    }

    @Test("merges rebuilt by BPE with lower ranks only: leftmost on ties, unreachable tokens give none, GPT-2 spelling")
    func handMadeMerges() throws {
        // Ranks: the 256 bytes, then ab 256, bc 257, abc 258, xyz 259, " a" 260, "\n\n" 261, aa 262, and a^4 263 … a^64
        // 267 (a^64 is longer than the scan limit: the heap path).
        let extra = ["ab", "bc", "abc", "xyz", " a", "\n\n"] + (1...6).map { String(repeating: "a", count: 1 << $0) }
        let dir = TemporaryDirectory()
        let lines = (0..<256).map { "\(Base64.encode([UInt8($0)])) \($0)" } + extra.enumerated().map { "\(Base64.encode(Array($1.utf8))) \(256 + $0)" }
        dir.write("m/tiktoken.model", Array(lines.map { $0 + "\n" }.joined().utf8))
        dir.write("m/tokenizer_config.json", Array(#"{"added_tokens_decoder": {"268": {"content": "[BOS]"}, "269": {"content": "[EOS]"}}}"#.utf8))
        let keys = try GGUFVocabulary.metadata(modelFolder: dir.path + "/m", vocabularySize: 268 + 256)
        guard case let .array(.string(merges)) = VocabularyOracle.value(keys, "tokenizer.ggml.merges") else {
            Issue.record("no merges")
            return
        }
        // abc: ab (lower) first, then "ab c"; xyz has no lower pair (three parts): no merge; a^4: a a → leftmost first.
        #expect(merges == ["a b", "b c", "ab c", "Ġ a", "Ċ Ċ", "a a", "aa aa", "aaaa aaaa", "aaaaaaaa aaaaaaaa",
                           String(repeating: "a", count: 16) + " " + String(repeating: "a", count: 16),
                           String(repeating: "a", count: 32) + " " + String(repeating: "a", count: 32)])
    }

    @Test("the limited BPE makes the same choices by scan and by heap for every rank of the fixture and long tokens")
    func scanAgreesWithHeap() throws {
        let tokenizer = try KimiTokenizer.load(directory: TestPaths.fixture("tokenizer"))
        let table = tokenizer.table
        for r in 0..<table.count {
            let bytes = Array(table.tokenBytes(r))
            var scan: [Int] = [], heap: [Int] = []
            bytes.withUnsafeBufferPointer { p in
                BytePairEncoder.scan(p.baseAddress!, p.count, table, limit: r, into: &scan)
                BytePairEncoder.heap(p.baseAddress!, p.count, table, limit: r, into: &heap)
            }
            #expect(scan == heap, "rank \(r)")
            if bytes.count > 1 { #expect(table.mergeParts(of: r) == scan) }
        }
        // Long pieces with a mid-table limit.
        for text in [String(repeating: "the quick brown fox ", count: 5), String(repeating: "ab", count: 40)] {
            let bytes = Array(text.utf8)
            for limit in [300, 900, 1500, table.count] {
                var scan: [Int] = [], heap: [Int] = []
                bytes.withUnsafeBufferPointer { p in
                    BytePairEncoder.scan(p.baseAddress!, p.count, table, limit: limit, into: &scan)
                    BytePairEncoder.heap(p.baseAddress!, p.count, table, limit: limit, into: &heap)
                }
                #expect(scan == heap, "limit \(limit)")
                #expect(scan.allSatisfy { $0 < limit || table.tokenBytes($0).count == 1 })
            }
        }
    }

    @Test("a rank spelled like a special gives its id up, as llama.cpp's dict merge does")
    func rankShadowedBySpecial() throws {
        let dir = TemporaryDirectory()
        let lines = (0..<256).map { "\(Base64.encode([UInt8($0)])) \($0)" } + ["\(Base64.encode(Array("ab".utf8))) 256", "\(Base64.encode(Array("[BOS]".utf8))) 257"]
        dir.write("m/tiktoken.model", Array(lines.map { $0 + "\n" }.joined().utf8))
        dir.write("m/tokenizer_config.json", Array(#"{"added_tokens_decoder": {"258": {"content": "[BOS]"}, "259": {"content": "[EOS]"}}}"#.utf8))
        let keys = try GGUFVocabulary.metadata(modelFolder: dir.path + "/m", vocabularySize: 520)
        guard case let .array(.string(tokens)) = VocabularyOracle.value(keys, "tokenizer.ggml.tokens"),
              case let .array(.i32(types)) = VocabularyOracle.value(keys, "tokenizer.ggml.token_type") else {
            Issue.record("no tokens")
            return
        }
        #expect(tokens[256] == "ab" && types[256] == 1)
        #expect(tokens[257] == "[PAD257]" && types[257] == 5)
        #expect(tokens[258] == "[BOS]" && types[258] == 3)
        #expect(tokens[259] == "[EOS]" && tokens[260] == "<|reserved_token_260|>" && types[513] == 3)
        #expect(tokens[514] == "[PAD514]" && types[519] == 5 && tokens.count == 520)
    }
}

@Suite("GGUF tokenizer metadata refuses bad input by name")
struct GGUFVocabularyErrorTests {
    /// The error `metadata` throws for a fixture copy with `files` over it (nil content: the file removed).
    static func error(files: [String: String?] = [:], size: Int = 2500, bos: Int? = nil, raw: [String: [UInt8]] = [:],
                      folders: [String] = []) -> TokenizerError? {
        let dir = TemporaryDirectory()
        let folder = dir.copy(fixture: "tokenizer")
        for (name, text) in files {
            if let text { dir.write("tokenizer/" + name, Array(text.utf8)) } else { try? FileManager.default.removeItem(atPath: folder + "/" + name) }
        }
        for (name, bytes) in raw { dir.write("tokenizer/" + name, bytes) }
        for name in folders { try! FileManager.default.createDirectory(atPath: folder + "/" + name, withIntermediateDirectories: true) }
        do {
            if let bos {
                _ = try GGUFVocabulary.metadata(modelFolder: folder, vocabularySize: size, bos: bos, eos: nil, pad: nil)
            } else {
                _ = try GGUFVocabulary.metadata(modelFolder: folder, vocabularySize: size)
            }
            return nil
        } catch {
            return error
        }
    }

    static func expect(_ error: TokenizerError?, _ kind: TokenizerError.Kind, _ parts: [String], sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(error?.kind == kind, "\(String(describing: error))", sourceLocation: sourceLocation)
        for part in parts {
            #expect(error?.message.contains(part) == true, "\(String(describing: error?.message)) lacks \(part)", sourceLocation: sourceLocation)
        }
    }

    @Test("no tokenizer files: named, with what is needed")
    func noTokenizer() {
        Self.expect(Self.error(files: ["tiktoken.model": nil]), .missingFile,
                    ["tokenizer: no tokenizer: neither tiktoken.model (+ tokenizer_config.json, the Kimi tokenizer) nor tokenizer.json"])
        Self.expect(Self.error(files: ["tokenizer_config.json": nil]), .missingFile, ["no tokenizer_config.json"])
    }

    @Test("a tokenizer.json is read as DeepSeek-V3's BPE, over a tiktoken.model too (its errors: GGUFTokenizerJSONErrorTests)")
    func tokenizerJSON() {
        Self.expect(Self.error(files: ["tokenizer.json": "{}", "tiktoken.model": nil]), .badConfig, ["tokenizer/tokenizer.json: no \"model\" object"])
        Self.expect(Self.error(files: ["tokenizer.json": "{}"]), .badConfig, ["tokenizer/tokenizer.json: no \"model\" object"])
    }

    @Test("a vocabulary larger than vocab_size, or a size out of bounds")
    func vocabularySize() {
        Self.expect(Self.error(size: 2484), .vocabularySize,
                    ["tiktoken.model has 2229 ranks and 256 special ids follow them (ids 0..<2485), more than the model's vocab_size 2484"])
        Self.expect(Self.error(size: 0), .vocabularySize, ["vocab_size 0 is outside 1...2097152"])
        Self.expect(Self.error(size: 1 << 40), .vocabularySize, ["vocab_size 1099511627776 is outside 1...2097152"])
    }

    @Test("tiktoken.model errors come from the tokenizer's reader, naming file and line")
    func rankFileErrors() throws {
        let model = try String(contentsOfFile: TestPaths.fixture("tokenizer/tiktoken.model"), encoding: .utf8)
        var lines = model.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        lines[9] = "CQ== 12"
        Self.expect(Self.error(files: ["tiktoken.model": lines.joined(separator: "\n")]), .duplicateRank, ["tiktoken.model:13: rank 12 is already given on line 10"])
        lines[9] = "CQ== 9999"
        Self.expect(Self.error(files: ["tiktoken.model": lines.joined(separator: "\n")]), .rankGap, ["tiktoken.model:10: rank 9999 leaves a gap"])
        lines[9] = "CQ==  9"
        Self.expect(Self.error(files: ["tiktoken.model": lines.joined(separator: "\n")]), .badLine, ["tiktoken.model:10: the rank is not a decimal number"])
    }

    @Test("special ids out of the vocabulary, or not integers, are refused naming the key")
    func specialIDs() {
        Self.expect(Self.error(bos: 2500), .badID, ["bos_token_id 2500 is outside the vocabulary (0..<2500)"])
        Self.expect(Self.error(files: ["config.json": #"{"eos_token_id": 2500}"#]), .badID, ["eos_token_id 2500 is outside the vocabulary (0..<2500)"])
        Self.expect(Self.error(files: ["config.json": #"{"text_config": {"pad_token_id": -1}}"#]), .badConfig,
                    ["config.json: text_config.pad_token_id is -1, expected a non-negative integer token id"])
        Self.expect(Self.error(files: ["config.json": #"{"bos_token_id": "[BOS]"}"#]), .badConfig,
                    ["config.json: bos_token_id is a string, expected a non-negative integer token id"])
        Self.expect(Self.error(files: ["config.json": #"{"bos_token_id": 1.5}"#]), .badConfig, ["bos_token_id is 1.5, expected"])
        Self.expect(Self.error(files: ["config.json": "[1]"]), .badConfig, ["config.json: the top level is an array, expected an object"])
        Self.expect(Self.error(files: ["config.json": "{"]), .badConfig, ["config.json: "])
    }

    @Test("chat templates and add_*_token flags that are not what gguf-py reads are refused")
    func templates() throws {
        let config = try String(contentsOfFile: TestPaths.fixture("tokenizer/tokenizer_config.json"), encoding: .utf8)
        func with(_ entry: String) -> String { config.replacingOccurrences(of: "  \"bos_token\"", with: "  \(entry),\n  \"bos_token\"") }
        Self.expect(Self.error(files: ["tokenizer_config.json": with(#""chat_template": 7"#)]), .badConfig,
                    ["tokenizer_config.json: chat_template is a number, expected a string"])
        Self.expect(Self.error(files: ["tokenizer_config.json": with(#""chat_template": [{"name": "default", "template": "x"}]"#)]), .unsupported,
                    ["tokenizer_config.json: chat_template is a list of named templates; k2pack writes one tokenizer.chat_template"])
        Self.expect(Self.error(files: ["tokenizer_config.json": with(#""add_bos_token": "yes""#)]), .badConfig,
                    ["tokenizer_config.json: add_bos_token is a string, expected true or false"])
        Self.expect(Self.error(raw: ["chat_template.jinja": [0x7B, 0x7B, 0xC0, 0x80]]), .notUTF8, ["chat_template.jinja: not UTF-8 at byte offset 2 (byte 0xc0)"])
        Self.expect(Self.error(files: ["chat_template.jinja": "{{ x }}", "additional_chat_templates/tool.jinja": "t"]), .unsupported,
                    ["additional_chat_templates/ holds named templates"])
        Self.expect(Self.error(files: ["chat_template.json": #"{"chat_template": false}"#]), .badConfig,
                    ["chat_template.json: chat_template is a boolean, expected a string"])
    }

    @Test("good variants: a null chat_template writes none; chat_template.json is read; an empty config writes no flags")
    func templateVariants() throws {
        let dir = TemporaryDirectory()
        let folder = VocabularyOracle.folder(dir, files: ["chat_template.json": #"{"chat_template": "{{ m }}"}"#])
        let keys = try GGUFVocabulary.metadata(modelFolder: folder, vocabularySize: 2485)
        #expect(Array(keys.dropFirst(5)) == [GGUFKeyValue(key: "tokenizer.chat_template", value: .string("{{ m }}"))])
        let config = try String(contentsOfFile: TestPaths.fixture("tokenizer/tokenizer_config.json"), encoding: .utf8)
            .replacingOccurrences(of: "  \"bos_token\"", with: "  \"chat_template\": null,\n  \"add_eos_token\": null,\n  \"bos_token\"")
        dir.write("tokenizer/tokenizer_config.json", Array(config.utf8))
        dir.write("tokenizer/chat_template.jinja", Array("ignored".utf8))
        #expect(try GGUFVocabulary.metadata(modelFolder: folder, vocabularySize: 2485).count == 5)
    }
}
