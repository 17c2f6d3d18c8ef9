import FileIO
import Foundation
import GGUF
import JSONCore
import TensorCore
import Tokenizer

// The tokenizer of a Kimi K2 / K2-Thinking / K2.5 folder as GGUF metadata, key for key what llama.cpp's converter
// writes (conversion/deepseek.py, `DeepseekV2Model.set_vocab`, its `kimi-k2` branch, then gguf-py 0.19's
// `SpecialVocab(dir, load_merges=False).add_to_gguf`). For the container writer (part "ggufconvert"):
//
//   let ids = try GGUFSpecialTokenIDs.read(modelFolder: folder)        // config.json, as gguf-py reads it
//   let keys = try GGUFVocabulary.metadata(modelFolder: folder, vocabularySize: vocabSize, specialIDs: ids)
//   // or, with ids the caller already has: metadata(modelFolder:vocabularySize:bos:eos:pad:)
//
// `keys` are in the order llama.cpp writes them; every error is a `TokenizerError` naming the file (and line).
// `vocabularySize` is the text model's `vocab_size` (root or `text_config`), the same number written as
// `deepseek2.vocab_size`.
//
// Keys, in order, with their GGUF types:
//   tokenizer.ggml.model            string         "gpt2"
//   tokenizer.ggml.pre              string         "kimi-k2"
//   tokenizer.ggml.tokens           array string   id 0 ..< vocab_size: ranks as GPT-2 byte-to-unicode strings,
//                                                  the 256 special ids by name, any other id "[PAD<id>]"
//   tokenizer.ggml.token_type       array i32      1 NORMAL (ranks), 3 CONTROL (specials), 5 UNUSED (pads)
//   tokenizer.ggml.merges           array string   "A B" per token of ≥ 2 bytes whose BPE with only lower ranks
//                                                  ends in two parts, in rank order
//   tokenizer.ggml.{bos,eos,unknown,seperator,padding,cls,mask}_token_id   u32, those given (config.json order)
//   tokenizer.ggml.add_{bos,eos,sep}_token                               bool, where tokenizer_config.json has them
//   tokenizer.chat_template         string         tokenizer_config.json's `chat_template`, else
//                                                  chat_template.jinja, else chat_template.json's
//
// Where this departs from llama.cpp, on purpose (each is an error here, never a different file):
// - ranks plus specials more than `vocab_size` (llama.cpp drops the ids past it), a special id (bos/eos/…) at or
//   past `vocab_size` (gguf-py writes it when it has no size to check against), a non-integer id in config.json or
//   a non-boolean `add_*_token` (gguf-py skips them), a `chat_template` that is neither a string nor null (gguf-py
//   warns and drops it);
// - named chat templates (a `chat_template` list, `additional_chat_templates/`) are not converted (`.unsupported`);
// A folder with `tokenizer.json` (DeepSeek-V3's Hugging Face BPE, model gpt2 / pre "deepseek-v3") takes the path in
// GGUFTokenizerJSON.swift instead, as llama.cpp's converter tries it first.
// - the merges are rebuilt in rank order; llama.cpp follows tiktoken.model's line order, the same for every real
//   file (they list ranks in order).
// Kept as llama.cpp does it: a rank whose GPT-2 string equals a special's name gives its id up (`[PAD<id>]`,
// UNUSED) — the dict merge `{**vocab, **special_tokens}` there; every one of the 256 special ids is CONTROL,
// reserved names included; bos/eos/pad names in tokenizer_config.json do not give ids (gguf-py reads those only
// with a tokenizer.json), config.json's do.

/// Special token ids as gguf-py's `SpecialVocab` reads them from `config.json`: `<type>_token_id` at the root, else
/// in `text_config` (K2.5 and Kimi-VL nest the text model's).
public struct GGUFSpecialTokenIDs: Sendable, Equatable {
    public var bos: Int?
    public var eos: Int?
    public var unk: Int?
    public var sep: Int?
    public var pad: Int?
    public var cls: Int?
    public var mask: Int?

    public init(bos: Int? = nil, eos: Int? = nil, unk: Int? = nil, sep: Int? = nil, pad: Int? = nil, cls: Int? = nil, mask: Int? = nil) {
        self.bos = bos
        self.eos = eos
        self.unk = unk
        self.sep = sep
        self.pad = pad
        self.cls = cls
        self.mask = mask
    }

    /// gguf-py's order (`special_token_types`) with each type's GGUF key.
    static var kinds: [(name: String, key: String, path: WritableKeyPath<GGUFSpecialTokenIDs, Int?>)] { [
        ("bos", "tokenizer.ggml.bos_token_id", \.bos), ("eos", "tokenizer.ggml.eos_token_id", \.eos),
        ("unk", "tokenizer.ggml.unknown_token_id", \.unk), ("sep", "tokenizer.ggml.seperator_token_id", \.sep),
        ("pad", "tokenizer.ggml.padding_token_id", \.pad), ("cls", "tokenizer.ggml.cls_token_id", \.cls),
        ("mask", "tokenizer.ggml.mask_token_id", \.mask),
    ] }

    public static let maxConfigBytes = 16 << 20

    /// The ids in `modelFolder/config.json`; none when the folder has no config.json (as gguf-py). A value that is
    /// not a non-negative integer (or null) is refused naming the key.
    public static func read(modelFolder: String) throws(TokenizerError) -> GGUFSpecialTokenIDs {
        guard FileManager.default.fileExists(atPath: modelFolder + "/config.json") else { return GGUFSpecialTokenIDs() }
        let bytes = try KimiTokenizer.readFile(folder: modelFolder, name: "config.json", limit: maxConfigBytes, what: "a config.json")
        return try parse(bytes, file: displayed(modelFolder + "/config.json"))
    }

    static func parse(_ bytes: [UInt8], file: String) throws(TokenizerError) -> GGUFSpecialTokenIDs {
        let root: JSONValue
        do { root = try JSONDocument.parse(bytes) } catch { throw TokenizerError(.badConfig, "\(file): \(error)") }
        guard root.objectValue != nil else {
            throw TokenizerError(.badConfig, "\(file): the top level is \(root.kindName), expected an object")
        }
        var ids = GGUFSpecialTokenIDs()
        for kind in kinds {
            let key = "\(kind.name)_token_id"
            var place = key
            var value = root[key]
            if value == nil || value!.isNull, let nested = root["text_config"], nested.objectValue != nil {
                value = nested[key]
                place = "text_config.\(key)"
            }
            guard let value, !value.isNull else { continue }
            guard let id = value.intValue, id >= 0 else {
                throw TokenizerError(.badConfig, "\(file): \(place) is \(value.numberText ?? value.kindName), expected a non-negative integer token id")
            }
            ids[keyPath: kind.path] = id
        }
        return ids
    }
}

/// The tokenizer of a model folder as GGUF metadata keys (see the comment at the top of this file).
public enum GGUFVocabulary {
    /// Bounds `vocabularySize` before anything is allocated for it: as many ids as `tiktoken.model` may hold
    /// lines (2²¹, `TiktokenModelReader.maxLines`); real vocabularies are under 2¹⁸.
    public static let maxVocabularySize = TiktokenModelReader.maxLines

    /// The keys for `modelFolder`, special ids from its config.json as gguf-py reads them.
    public static func metadata(modelFolder: String, vocabularySize: Int) throws(TokenizerError) -> [GGUFKeyValue] {
        try metadata(modelFolder: modelFolder, vocabularySize: vocabularySize, specialIDs: GGUFSpecialTokenIDs.read(modelFolder: modelFolder))
    }

    /// The keys for `modelFolder` with bos/eos/pad ids the caller has read (nil: key not written).
    public static func metadata(modelFolder: String, vocabularySize: Int, bos: Int?, eos: Int?, pad: Int?) throws(TokenizerError) -> [GGUFKeyValue] {
        try metadata(modelFolder: modelFolder, vocabularySize: vocabularySize, specialIDs: GGUFSpecialTokenIDs(bos: bos, eos: eos, pad: pad))
    }

    public static func metadata(modelFolder: String, vocabularySize: Int, specialIDs: GGUFSpecialTokenIDs) throws(TokenizerError) -> [GGUFKeyValue] {
        let folder = displayed(modelFolder)
        guard vocabularySize > 0 && vocabularySize <= maxVocabularySize else {
            throw TokenizerError(.vocabularySize, "\(folder): vocab_size \(vocabularySize) is outside 1...\(maxVocabularySize)")
        }
        let scheme = try TokenizerScheme.kimi()
        let fm = FileManager.default
        let hasRanks = fm.fileExists(atPath: modelFolder + "/" + scheme.ranksFile)
        if fm.fileExists(atPath: modelFolder + "/" + GGUFTokenizerJSON.fileName) {
            // DeepSeek-V3's Hugging Face BPE; llama.cpp's converter tries it first, over a tiktoken.model too.
            return try GGUFTokenizerJSON.metadata(modelFolder: modelFolder, vocabularySize: vocabularySize, specialIDs: specialIDs)
        }
        guard hasRanks else {
            throw TokenizerError(.missingFile, "\(folder): no tokenizer: neither \(scheme.ranksFile) (+ \(scheme.configFile), the Kimi tokenizer) nor tokenizer.json")
        }
        var idKeys: [GGUFKeyValue] = []
        for kind in GGUFSpecialTokenIDs.kinds {
            guard let id = specialIDs[keyPath: kind.path] else { continue }
            guard id >= 0 && id < vocabularySize else {
                throw TokenizerError(.badID, "\(folder): \(kind.name)_token_id \(id) is outside the vocabulary (0..<\(vocabularySize))")
            }
            idKeys.append(GGUFKeyValue(key: kind.key, value: .u32(UInt32(id))))
        }
        let tokenizer = try KimiTokenizer.load(directory: modelFolder)
        let vocab = try Vocabulary(tokenizer: tokenizer, vocabularySize: vocabularySize, folder: folder, scheme: scheme)

        var keys = [
            GGUFKeyValue(key: "tokenizer.ggml.model", value: .string("gpt2")),
            GGUFKeyValue(key: "tokenizer.ggml.pre", value: .string("kimi-k2")),
            GGUFKeyValue(key: "tokenizer.ggml.tokens", value: .array(.string(vocab.tokens))),
            GGUFKeyValue(key: "tokenizer.ggml.token_type", value: .array(.i32(vocab.types))),
            GGUFKeyValue(key: "tokenizer.ggml.merges", value: .array(.string(vocab.merges))),
        ]
        keys += idKeys
        keys += try specialVocabularyKeys(modelFolder: modelFolder, configFile: scheme.configFile)
        return keys
    }

    /// The ids, types and merges of the tokenizer over `vocabularySize` ids.
    struct Vocabulary {
        var tokens: [String]
        var types: [Int32]
        var merges: [String]

        static let normal: Int32 = 1, control: Int32 = 3, unused: Int32 = 5

        init(tokenizer: KimiTokenizer, vocabularySize: Int, folder: String, scheme: TokenizerScheme) throws(TokenizerError) {
            let table = tokenizer.table
            let specials = tokenizer.config.specialNames
            let first = tokenizer.config.firstSpecialID
            guard table.count + specials.count <= vocabularySize else {
                throw TokenizerError(.vocabularySize, "\(folder): \(scheme.ranksFile) has \(table.count) ranks and \(specials.count) special ids follow them (ids 0..<\(table.count + specials.count)), more than the model's vocab_size \(vocabularySize)")
            }
            let rankStrings = (0..<table.count).map { GPT2Bytes.string(table.tokenBytes($0)) }
            tokens = rankStrings
            types = [Int32](repeating: Self.normal, count: table.count)
            tokens.reserveCapacity(vocabularySize)
            types.reserveCapacity(vocabularySize)
            for (i, name) in specials.enumerated() {
                precondition(first + i == tokens.count)
                tokens.append(name)
                types.append(Self.control)
                // A rank spelled like this special loses its id to it, as llama.cpp's `{**vocab, **special_tokens}`.
                if let bytes = GPT2Bytes.bytes(of: name), let r = table.rank(of: bytes) {
                    tokens[r] = "[PAD\(r)]"
                    types[r] = Self.unused
                }
            }
            for id in tokens.count..<vocabularySize {
                tokens.append("[PAD\(id)]")
                types.append(Self.unused)
            }
            var merges: [String] = []
            merges.reserveCapacity(table.count)
            for r in 0..<table.count where table.tokenBytes(r).count > 1 {
                let parts = table.mergeParts(of: r)
                if parts.count == 2 { merges.append(rankStrings[parts[0]] + " " + rankStrings[parts[1]]) }
            }
            self.merges = merges
        }
    }

    /// What gguf-py's `SpecialVocab` adds from tokenizer_config.json and the chat template files, after the ids:
    /// `add_bos_token`, `add_eos_token`, `add_sep_token` (booleans, where given), then the chat template. Like
    /// gguf-py, nothing when tokenizer_config.json is an empty object.
    static func specialVocabularyKeys(modelFolder: String, configFile: String) throws(TokenizerError) -> [GGUFKeyValue] {
        let file = displayed(modelFolder + "/" + configFile)
        let bytes = try KimiTokenizer.readFile(folder: modelFolder, name: configFile, limit: TokenizerConfigReader.maxFileBytes, what: "a tokenizer_config.json")
        let root: JSONValue
        do { root = try JSONDocument.parse(bytes) } catch { throw TokenizerError(.badConfig, "\(file): \(error)") }
        guard let object = root.objectValue, object.count > 0 else { return [] }
        var keys: [GGUFKeyValue] = []
        for name in ["bos", "eos", "sep"] {
            guard let value = object["add_\(name)_token"], !value.isNull else { continue }
            guard let flag = value.boolValue else {
                throw TokenizerError(.badConfig, "\(file): add_\(name)_token is \(value.kindName), expected true or false")
            }
            keys.append(GGUFKeyValue(key: "tokenizer.ggml.add_\(name)_token", value: .bool(flag)))
        }
        if let template = try chatTemplate(object: object, file: file, modelFolder: modelFolder) {
            keys.append(GGUFKeyValue(key: "tokenizer.chat_template", value: .string(template)))
        }
        return keys
    }

    public static let maxTemplateBytes = 16 << 20

    /// tokenizer_config.json's `chat_template` (null: none), else chat_template.jinja, else chat_template.json's.
    static func chatTemplate(object: JSONObject, file: String, modelFolder: String) throws(TokenizerError) -> String? {
        if let value = object["chat_template"] {
            if value.isNull { return nil }
            if let s = value.stringValue { return s }
            if value.arrayValue != nil {
                throw TokenizerError(.unsupported, "\(file): chat_template is a list of named templates; k2pack writes one tokenizer.chat_template")
            }
            throw TokenizerError(.badConfig, "\(file): chat_template is \(value.kindName), expected a string")
        }
        let fm = FileManager.default
        if fm.fileExists(atPath: modelFolder + "/chat_template.jinja") {
            let extra = (try? fm.contentsOfDirectory(atPath: modelFolder + "/additional_chat_templates")) ?? []
            if extra.contains(where: { $0.hasSuffix(".jinja") }) {
                throw TokenizerError(.unsupported, "\(displayed(modelFolder)): additional_chat_templates/ holds named templates; k2pack writes one tokenizer.chat_template")
            }
            let path = modelFolder + "/chat_template.jinja"
            let bytes = try KimiTokenizer.readFile(folder: modelFolder, name: "chat_template.jinja", limit: maxTemplateBytes, what: "a chat template")
            return try KimiTokenizer.text(fromUTF8: bytes, file: displayed(path))
        }
        if fm.fileExists(atPath: modelFolder + "/chat_template.json") {
            let path = displayed(modelFolder + "/chat_template.json")
            let bytes = try KimiTokenizer.readFile(folder: modelFolder, name: "chat_template.json", limit: maxTemplateBytes, what: "a chat template")
            let root: JSONValue
            do { root = try JSONDocument.parse(bytes) } catch { throw TokenizerError(.badConfig, "\(path): \(error)") }
            guard let value = root["chat_template"], !value.isNull else { return nil }
            guard let s = value.stringValue else {
                throw TokenizerError(.badConfig, "\(path): chat_template is \(value.kindName), expected a string")
            }
            return s
        }
        return nil
    }
}

/// GPT-2's byte-to-unicode table (transformers' `bytes_to_unicode`): the printable bytes ! … ~, ¡ … ¬, ® … ÿ stand
/// for themselves; the other 68, in byte order, become U+0100, U+0101, ….
enum GPT2Bytes {
    /// The UTF-8 of each byte's character.
    static let utf8: [[UInt8]] = {
        var scalars = [UInt32](repeating: 0, count: 256)
        var next: UInt32 = 256
        for b in 0..<256 {
            let printable = (0x21...0x7E).contains(b) || (0xA1...0xAC).contains(b) || (0xAE...0xFF).contains(b)
            if printable {
                scalars[b] = UInt32(b)
            } else {
                scalars[b] = next
                next += 1
            }
        }
        return scalars.map { Array(String(Character(Unicode.Scalar($0)!)).utf8) }
    }()

    /// Character → byte, for the inverse.
    static let byteOfScalar: [UInt32: UInt8] = {
        var out: [UInt32: UInt8] = [:]
        for (b, bytes) in utf8.enumerated() {
            out[String(decoding: bytes, as: UTF8.self).unicodeScalars.first!.value] = UInt8(b)
        }
        return out
    }()

    static func string(_ bytes: ArraySlice<UInt8>) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        for b in bytes { out.append(contentsOf: utf8[Int(b)]) }
        return String(decoding: out, as: UTF8.self)
    }

    /// The bytes a GPT-2 string stands for, or nil when a character is outside the table.
    static func bytes(of text: String) -> [UInt8]? {
        var out: [UInt8] = []
        for s in text.unicodeScalars {
            guard let b = byteOfScalar[s.value] else { return nil }
            out.append(b)
        }
        return out
    }
}
