import Foundation
import GGUF
@testable import GGUFConvert
import TestSupport
import Testing
import Tokenizer

/// Fixtures/gguf-vocab/expected-deepseek-v3.json (scripts/fixtures/make_gguf_vocab.py: llama.cpp's get_vocab_base
/// rebuilt over a tokenizers 0.23.3 byte-level BPE, gguf-py 0.19's SpecialVocab(load_merges=True)).
enum DeepSeekVocabularyOracle {
    static var expected: [String: Any] {
        let data = try! Data(contentsOf: URL(fileURLWithPath: TestPaths.fixture("gguf-vocab/expected-deepseek-v3.json")))
        return try! JSONSerialization.jsonObject(with: data) as! [String: Any]
    }

    static func keys(_ entries: [[Any]]) -> [GGUFKeyValue] {
        entries.map { entry in
            let key = entry[0] as! String
            switch entry[1] as! String {
            case "u32": return GGUFKeyValue(key: key, value: .u32(UInt32(entry[2] as! Int)))
            case "bool": return GGUFKeyValue(key: key, value: .bool(entry[2] as! Bool))
            default: return GGUFKeyValue(key: key, value: .string(entry[2] as! String))
            }
        }
    }

    /// The whole key list llama.cpp's converter writes for the fixture, in order.
    static var expectedKeys: [GGUFKeyValue] {
        let e = expected
        return [
            GGUFKeyValue(key: "tokenizer.ggml.model", value: .string(e["tokenizer.ggml.model"] as! String)),
            GGUFKeyValue(key: "tokenizer.ggml.pre", value: .string(e["tokenizer.ggml.pre"] as! String)),
            GGUFKeyValue(key: "tokenizer.ggml.tokens", value: .array(.string(e["tokens"] as! [String]))),
            GGUFKeyValue(key: "tokenizer.ggml.token_type", value: .array(.i32((e["token_types"] as! [Int]).map { Int32($0) }))),
            GGUFKeyValue(key: "tokenizer.ggml.merges", value: .array(.string(e["merges"] as! [String]))),
        ] + keys(e["special_vocab_keys"] as! [[Any]])
    }

    /// Our keys against the oracle's: key order, then each list with its first differing index named.
    static func compare(_ ours: [GGUFKeyValue], sourceLocation: SourceLocation = #_sourceLocation) {
        let theirs = expectedKeys
        #expect(ours.map(\.key) == theirs.map(\.key), sourceLocation: sourceLocation)
        for (a, b) in zip(ours, theirs) where a != b {
            switch (a.value, b.value) {
            case let (.array(.string(x)), .array(.string(y))):
                Issue.record("\(a.key): \(VocabularyOracle.firstDifference(x, y) ?? "counts \(x.count) vs \(y.count)")", sourceLocation: sourceLocation)
            case let (.array(.i32(x)), .array(.i32(y))):
                Issue.record("\(a.key): \(VocabularyOracle.firstDifference(x, y) ?? "counts \(x.count) vs \(y.count)")", sourceLocation: sourceLocation)
            default:
                Issue.record("\(a.key): ours \(a.value), llama.cpp's \(b.value)", sourceLocation: sourceLocation)
            }
        }
    }
}

@Suite("GGUF tokenizer metadata from a DeepSeek-V3 tokenizer.json")
struct GGUFTokenizerJSONTests {
    @Test("the fixture tokenizer.json gives llama.cpp's tokens, types, merges and special keys, in its order")
    func fixtureMatchesLlamaCpp() throws {
        let dir = TemporaryDirectory()
        let folder = dir.copy(fixture: "gguf-vocab/deepseek-v3")
        let size = DeepSeekVocabularyOracle.expected["vocabulary_size"] as! Int
        let keys = try GGUFVocabulary.metadata(modelFolder: folder, vocabularySize: size)
        DeepSeekVocabularyOracle.compare(keys)
        // The types the fixture covers: NORMAL, CONTROL (special, and looks-special), USER_DEFINED, UNUSED.
        #expect(Set(DeepSeekVocabularyOracle.expected["token_types"] as! [Int]) == [1, 3, 4, 5])
    }

    @Test("merges as \"A B\" strings give the same keys as merges as pairs")
    func stringMerges() throws {
        let dir = TemporaryDirectory()
        let folder = dir.copy(fixture: "gguf-vocab/deepseek-v3")
        let text = try Data(contentsOf: URL(fileURLWithPath: TestPaths.fixture("gguf-vocab/deepseek-v3-string-merges.tokenizer.json")))
        try text.write(to: URL(fileURLWithPath: folder + "/tokenizer.json"))
        let keys = try GGUFVocabulary.metadata(modelFolder: folder, vocabularySize: 320)
        DeepSeekVocabularyOracle.compare(keys)
    }

    @Test("tokenizer.json wins over tiktoken.model, as in llama.cpp's converter")
    func tokenizerJSONFirst() throws {
        let dir = TemporaryDirectory()
        let folder = dir.copy(fixture: "gguf-vocab/deepseek-v3")
        try FileManager.default.copyItem(atPath: TestPaths.fixture("tokenizer/tiktoken.model"), toPath: folder + "/tiktoken.model")
        let keys = try GGUFVocabulary.metadata(modelFolder: folder, vocabularySize: 320)
        #expect(keys.first { $0.key == "tokenizer.ggml.pre" }?.value == .string("deepseek-v3"))
    }

    @Test("hand-made: holes as pads, U+2581 in user-defined tokens, a space in a pair merge, cls for a missing bos")
    func handMade() throws {
        let dir = TemporaryDirectory()
        dir.write("m/tokenizer.json", Array(#"""
        {"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 3, "a b": 4}, "merges": [["a", "b"], ["a b", "b"]]},
         "pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "Split"}, {"type": "ByteLevel"}]},
         "post_processor": {"type": "ByteLevel"},
         "added_tokens": [{"id": 5, "content": "▁hi▁", "special": false, "normalized": true},
                          {"id": 6, "content": "<s>", "special": true, "normalized": false}]}
        """#.utf8))
        dir.write("m/tokenizer_config.json", Array(#"{"cls_token": {"content": "<s>"}, "add_bos_token": true}"#.utf8))
        dir.write("m/config.json", Array(#"{"bos_token_id": 0, "eos_token_id": 1}"#.utf8))
        let keys = try GGUFVocabulary.metadata(modelFolder: dir.path + "/m", vocabularySize: 8)
        #expect(keys == [
            GGUFKeyValue(key: "tokenizer.ggml.model", value: .string("gpt2")),
            GGUFKeyValue(key: "tokenizer.ggml.pre", value: .string("deepseek-v3")),
            GGUFKeyValue(key: "tokenizer.ggml.tokens", value: .array(.string(["a", "b", "[PAD2]", "ab", "a b", " hi ", "<s>", "[PAD7]"]))),
            GGUFKeyValue(key: "tokenizer.ggml.token_type", value: .array(.i32([1, 1, 5, 1, 1, 4, 3, 5]))),
            GGUFKeyValue(key: "tokenizer.ggml.merges", value: .array(.string(["a b", "a\u{120}b b"]))),
            GGUFKeyValue(key: "tokenizer.ggml.bos_token_id", value: .u32(6)),
            GGUFKeyValue(key: "tokenizer.ggml.cls_token_id", value: .u32(6)),
            GGUFKeyValue(key: "tokenizer.ggml.eos_token_id", value: .u32(1)),
            GGUFKeyValue(key: "tokenizer.ggml.add_bos_token", value: .bool(true)),
        ])
    }
}

@Suite("convert --to gguf writes a tokenizer.json's keys")
struct GGUFTokenizerJSONConvertTests {
    /// k2-thinking-tiny (the DeepSeek-V3 layout) with a hand-made byte-level BPE tokenizer.json: the default tokenizer
    /// hook takes the tokenizer.json path (over the folder's tiktoken.model, as llama.cpp's converter) and the GGUF
    /// holds its keys after the model's, over the model's vocab_size ids.
    @Test("convert on a DeepSeek-V3-layout folder with tokenizer.json writes gpt2 / deepseek-v3 keys over vocab_size ids")
    func convertWritesKeys() throws {
        let dir = TemporaryDirectory()
        let input = dir.copy(fixture: "k2-thinking-tiny")
        dir.write("k2-thinking-tiny/tokenizer.json", Array(GGUFTokenizerJSONErrorTests.good.utf8))
        dir.write("k2-thinking-tiny/tokenizer_config.json", Array(#"{"eos_token": "<|x|>", "add_bos_token": false}"#.utf8))
        try FileManager.default.createDirectory(atPath: dir.path + "/out", withIntermediateDirectories: false)
        let output = dir.path + "/out/o.gguf"
        _ = try GGUFConverter.convert(input: input, output: output, options: GGUFConverter.Options())
        let file = try GGUFFile(path: output)
        let vocab = try FixtureRecord.vocabularySize("k2-thinking-tiny")
        let expected = try GGUFVocabulary.metadata(modelFolder: input, vocabularySize: vocab)
        #expect(Array(file.metadata.suffix(expected.count)) == expected)
        #expect(file["tokenizer.ggml.pre"] == .string("deepseek-v3"))
        #expect(file["tokenizer.ggml.eos_token_id"] == .u32(3))
        guard case let .array(.string(tokens)) = file["tokenizer.ggml.tokens"] else {
            Issue.record("no token list")
            return
        }
        #expect(tokens.count == vocab)
        #expect(Array(tokens.prefix(5)) == ["a", "b", "ab", "<|x|>", "[PAD4]"])
    }
}

@Suite("GGUF tokenizer metadata refuses a bad tokenizer.json by name")
struct GGUFTokenizerJSONErrorTests {
    static let good = #"""
    {"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]},
     "pre_tokenizer": {"type": "ByteLevel"},
     "added_tokens": [{"id": 3, "content": "<|x|>", "special": true, "normalized": false}]}
    """#

    /// The error for a folder holding `tokenizer` as tokenizer.json (and `files`), nil when it converts.
    static func error(_ tokenizer: String, size: Int = 4, files: [String: String] = [:]) -> TokenizerError? {
        let dir = TemporaryDirectory()
        dir.write("m/tokenizer.json", Array(tokenizer.utf8))
        for (name, text) in files { dir.write("m/" + name, Array(text.utf8)) }
        do {
            _ = try GGUFVocabulary.metadata(modelFolder: dir.path + "/m", vocabularySize: size)
            return nil
        } catch {
            return error
        }
    }

    static func expect(_ tokenizer: String, size: Int = 4, files: [String: String] = [:], _ kind: TokenizerError.Kind, _ parts: [String],
                       sourceLocation: SourceLocation = #_sourceLocation) {
        let error = error(tokenizer, size: size, files: files)
        #expect(error?.kind == kind, "\(String(describing: error))", sourceLocation: sourceLocation)
        for part in ["/m"] + parts {
            #expect(error?.message.contains(part) == true, "\(String(describing: error?.message)) lacks \(part)", sourceLocation: sourceLocation)
        }
    }

    static func edit(_ old: String, _ new: String) -> String {
        precondition(good.contains(old))
        return good.replacingOccurrences(of: old, with: new)
    }

    @Test("the good hand-made file converts (the cases below each break one thing)")
    func goodConverts() {
        #expect(Self.error(Self.good) == nil)
    }

    @Test("not JSON, not an object, no model")
    func notJSON() {
        Self.expect("{\"model\": ", .badConfig, ["m/tokenizer.json: invalid JSON at byte"])
        Self.expect("[]", .badConfig, ["tokenizer.json: the top level is an array, expected an object"])
        Self.expect("{}", .badConfig, ["tokenizer.json: no \"model\" object"])
    }

    @Test("not a byte-level BPE, or a post-processor gguf-py reads add_*_token from")
    func notByteLevelBPE() {
        Self.expect(Self.edit(#""type": "BPE""#, #""type": "WordPiece""#), .unsupported,
                    ["tokenizer.json: model type WordPiece; k2pack converts a byte-level BPE tokenizer.json"])
        Self.expect(Self.edit(#""type": "ByteLevel""#, #""type": "Whitespace""#), .unsupported, ["tokenizer.json: the pre_tokenizer is not ByteLevel"])
        Self.expect(Self.edit(#""added_tokens""#, #""post_processor": {"type": "TemplateProcessing"}, "added_tokens""#), .unsupported,
                    ["tokenizer.json: post_processor TemplateProcessing (gguf-py derives add_*_token from it)"])
    }

    @Test("ids out of range, duplicated, or past vocab_size")
    func ids() {
        Self.expect(Self.edit(#""ab": 2"#, #""ab": -2"#), .badID, ["tokenizer.json: model.vocab token \"ab\" has id -2, expected a non-negative integer"])
        Self.expect(Self.edit(#""ab": 2"#, #""ab": "2""#), .badID, ["model.vocab token \"ab\" has id a string, expected a non-negative integer"])
        Self.expect(Self.edit(#""ab": 2"#, #""ab": 1"#), .badID, ["tokenizer.json: model.vocab gives id 1 to both \"b\" and \"ab\""])
        Self.expect(Self.edit(#""id": 3"#, #""id": 2"#), .badID, ["tokenizer.json: added token \"<|x|>\" has id 2, which model.vocab gives to \"ab\""])
        Self.expect(Self.edit(#""content": "<|x|>""#, #""content": "ab""#), .badID, ["tokenizer.json: added token \"ab\" has id 3, but model.vocab gives it id 2"])
        Self.expect(Self.edit(#"}]}"#, #"}, {"id": 3, "content": "y", "special": false, "normalized": false}]}"#), .badID,
                    ["tokenizer.json: added_tokens gives id 3 twice (again to \"y\")"])
        Self.expect(Self.good, size: 3, .vocabularySize, ["tokenizer.json: added token \"<|x|>\" has id 3, at or past the model's vocab_size 3"])
        Self.expect(Self.good, size: 2, .vocabularySize, ["tokenizer.json: model.vocab token \"ab\" has id 2, at or past the model's vocab_size 2"])
        Self.expect(Self.good, files: ["config.json": #"{"eos_token_id": 9}"#], .badID, ["m: eos_token_id 9 is outside the vocabulary (0..<4)"])
    }

    @Test("malformed vocab, added tokens and merges")
    func shapes() {
        Self.expect(Self.edit(#""vocab": {"a": 0, "b": 1, "ab": 2}"#, #""vocab": [1]"#), .badConfig, ["tokenizer.json: model.vocab is an array, expected an object"])
        Self.expect(Self.edit(#""added_tokens": ["#, #""added_tokens": 1, "x": ["#), .badConfig, ["tokenizer.json: added_tokens is a number, expected a list"])
        Self.expect(Self.edit(#""content": "<|x|>""#, #""content": 7"#), .badConfig, ["tokenizer.json: added_tokens[0] has no string \"content\""])
        Self.expect(Self.edit(#""special": true"#, #""special": 1"#), .badConfig, ["tokenizer.json: added token \"<|x|>\" has no boolean \"special\""])
        Self.expect(Self.edit(#""merges": ["a b"]"#, #""merges": "a b""#), .badConfig, ["tokenizer.json: model.merges is a string, expected a list"])
        Self.expect(Self.edit(#""merges": ["a b"]"#, #""merges": ["a b", ["a", "b"]]"#), .badConfig, ["tokenizer.json: model.merges[1] is an array; the list starts with strings"])
        Self.expect(Self.edit(#""merges": ["a b"]"#, #""merges": ["a b", "ab"]"#), .badConfig, ["tokenizer.json: model.merges[1] \"ab\" is not two tokens around one space"])
        Self.expect(Self.edit(#""merges": ["a b"]"#, #""merges": [["a", "b"], ["a"]]"#), .badConfig, ["tokenizer.json: model.merges[1] is not a pair of strings"])
    }

    @Test("merges naming tokens not in the vocab, in both forms")
    func unknownMerges() {
        Self.expect(Self.edit(#""merges": ["a b"]"#, #""merges": ["a c"]"#), .badConfig, ["tokenizer.json: model.merges[0] names \"c\", which is not in model.vocab"])
        Self.expect(Self.edit(#""merges": ["a b"]"#, #""merges": [["a", "b"], ["ab", "<|x|>"]]"#), .badConfig,
                    ["tokenizer.json: model.merges[1] names \"<|x|>\", which is not in model.vocab"])
    }

    @Test("a tokenizer_config.json that is not an object")
    func badConfig() {
        Self.expect(Self.good, files: ["tokenizer_config.json": "[]"], .badConfig, ["tokenizer_config.json: the top level is not an object"])
        Self.expect(Self.good, files: ["tokenizer_config.json": "{"], .badConfig, ["tokenizer_config.json: invalid JSON at byte"])
    }
}
