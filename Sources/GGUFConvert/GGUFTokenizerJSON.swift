import FileIO
import Foundation
import GGUF
import JSONCore
import TensorCore
import Tokenizer

// A DeepSeek-V3 folder's Hugging Face `tokenizer.json` (a byte-level BPE) as GGUF metadata, key for key what
// llama.cpp's converter writes: conversion/deepseek.py `DeepseekV2Model.set_vocab` → base.py `_set_vocab_gpt2`
// (`get_vocab_base`, pre "deepseek-v3" from its pre-tokenizer hash table), then gguf-py 0.19's
// `SpecialVocab(dir, load_merges=True).add_to_gguf`. `GGUFVocabulary.metadata` takes this path when the folder has a
// tokenizer.json (as llama.cpp tries `_set_vocab_gpt2` first).
//
// Keys, in order:
//   tokenizer.ggml.model        "gpt2";   tokenizer.ggml.pre   "deepseek-v3"
//   tokenizer.ggml.tokens       id 0 ..< vocab_size: model.vocab and added_tokens by id, as written (GPT-2 byte
//                               strings), holes "[PAD<id>]"
//   tokenizer.ggml.token_type   1 NORMAL (model.vocab only), 3 CONTROL (an added token marked special, or one that
//                               looks special: "<|…|>", "<｜…｜>", "<pad>", "<mask>", "<2mass>", "[@BOS@]",
//                               "<unused…>"), 4 USER_DEFINED (other added tokens; U+2581 written as a space),
//                               5 UNUSED (holes)
//   tokenizer.ggml.merges       model.merges as they are: "A B" strings kept, [A, B] pairs joined by a space (a space
//                               inside a part written as U+0120, as gguf-py does); absent when the list is empty
//   tokenizer.ggml.*_token_id   tokenizer_config.json's bos/eos/unk/sep/pad/cls/mask_token names (a string or
//                               {"content": …}; cls stands in for a missing bos, sep for a missing eos) looked up in
//                               added_tokens, first; then config.json's ids (or the caller's) for types not set
//   tokenizer.ggml.add_*_token, tokenizer.chat_template   as for the Kimi tokenizer (`specialVocabularyKeys`)
//
// Departures from llama.cpp (each an error here): a tokenizer.json that is not a BPE with a ByteLevel pre-tokenizer
// (llama.cpp would write whatever its hash table says or stop); an id at or past vocab_size (an assert there);
// two strings on one id, or an added token whose content is in model.vocab under another id (the later silently wins
// there); a merge naming a string not in model.vocab, or a string merge that is not two parts around one space
// (llama.cpp fails at load time); a RobertaProcessing or TemplateProcessing post-processor (gguf-py derives
// add_*_token from it; not done here). Not re-done: llama.cpp re-encodes non-normalized added tokens through the
// Hugging Face tokenizer (`decode(encode(t))`); k2pack writes them as they are, which is the same for byte-level
// BPE added tokens (matched whole; the fixture script checks it for its tokens).
enum GGUFTokenizerJSON {
    /// DeepSeek-V3's tokenizer.json is 7.8 MB; a file past this is refused before it is read.
    static let maxFileBytes = 64 << 20
    static let fileName = "tokenizer.json"

    static let normal: Int32 = 1, control: Int32 = 3, userDefined: Int32 = 4, unused: Int32 = 5

    static func metadata(modelFolder: String, vocabularySize: Int, specialIDs: GGUFSpecialTokenIDs) throws(TokenizerError) -> [GGUFKeyValue] {
        let file = displayed(modelFolder + "/" + fileName)
        let bytes = try KimiTokenizer.readFile(folder: modelFolder, name: fileName, limit: maxFileBytes, what: "a tokenizer.json")
        let root: JSONValue
        do { root = try JSONDocument.parse(bytes) } catch { throw TokenizerError(.badConfig, "\(file): \(error)") }
        let parsed = try Parsed(root, file: file, vocabularySize: vocabularySize)

        var keys = [
            GGUFKeyValue(key: "tokenizer.ggml.model", value: .string("gpt2")),
            GGUFKeyValue(key: "tokenizer.ggml.pre", value: .string("deepseek-v3")),
            GGUFKeyValue(key: "tokenizer.ggml.tokens", value: .array(.string(parsed.tokens))),
            GGUFKeyValue(key: "tokenizer.ggml.token_type", value: .array(.i32(parsed.types))),
        ]
        if !parsed.merges.isEmpty {
            keys.append(GGUFKeyValue(key: "tokenizer.ggml.merges", value: .array(.string(parsed.merges))))
        }
        let configFile = "tokenizer_config.json"
        let hasConfig = FileManager.default.fileExists(atPath: modelFolder + "/" + configFile)
        var config: JSONObject?
        if hasConfig {
            let path = displayed(modelFolder + "/" + configFile)
            let configBytes = try KimiTokenizer.readFile(folder: modelFolder, name: configFile, limit: TokenizerConfigReader.maxFileBytes, what: "a tokenizer_config.json")
            do { config = try JSONDocument.parse(configBytes).objectValue } catch { throw TokenizerError(.badConfig, "\(path): \(error)") }
            guard config != nil else { throw TokenizerError(.badConfig, "\(path): the top level is not an object") }
        }
        // Names first (gguf-py's tokenizer.json pass), then the numeric ids for the types still unset.
        var order: [(key: String, id: Int, name: String)] = []
        if let config, config.count > 0 {
            func name(_ type: String) -> String? {
                guard let entry = config["\(type)_token"] else { return nil }
                if let s = entry.stringValue { return s }
                return entry["content"]?.stringValue
            }
            let bos = name("bos") ?? name("cls"), eos = name("eos") ?? name("sep")
            for kind in GGUFSpecialTokenIDs.kinds {
                let wanted = kind.name == "bos" ? bos : kind.name == "eos" ? eos : name(kind.name)
                guard let wanted, let id = parsed.addedIDs[wanted] else { continue }
                order.append((kind.key, id, "\(kind.name)_token \"\(displayed(wanted))\""))
            }
        }
        for kind in GGUFSpecialTokenIDs.kinds where !order.contains(where: { $0.key == kind.key }) {
            guard let id = specialIDs[keyPath: kind.path] else { continue }
            order.append((kind.key, id, "\(kind.name)_token_id"))
        }
        for entry in order {
            guard entry.id < vocabularySize else {
                throw TokenizerError(.badID, "\(displayed(modelFolder)): \(entry.name) \(entry.id) is outside the vocabulary (0..<\(vocabularySize))")
            }
            keys.append(GGUFKeyValue(key: entry.key, value: .u32(UInt32(entry.id))))
        }
        if hasConfig {
            keys += try GGUFVocabulary.specialVocabularyKeys(modelFolder: modelFolder, configFile: configFile)
        }
        return keys
    }

    /// The tokens, types and merges of a parsed tokenizer.json over `vocabularySize` ids.
    struct Parsed {
        var tokens: [String]
        var types: [Int32]
        var merges: [String]
        /// added_tokens' content → id, the first entry for a content (as gguf-py's lookup).
        var addedIDs: [String: Int] = [:]

        init(_ root: JSONValue, file: String, vocabularySize: Int) throws(TokenizerError) {
            guard root.objectValue != nil else {
                throw TokenizerError(.badConfig, "\(file): the top level is \(root.kindName), expected an object")
            }
            guard let model = root["model"], model.objectValue != nil else {
                throw TokenizerError(.badConfig, "\(file): no \"model\" object")
            }
            let type = model["type"]?.stringValue ?? "(none)"
            guard type == "BPE" else {
                throw TokenizerError(.unsupported, "\(file): model type \(displayed(type)); k2pack converts a byte-level BPE tokenizer.json (DeepSeek-V3's)")
            }
            guard Self.isByteLevel(root["pre_tokenizer"]) else {
                throw TokenizerError(.unsupported, "\(file): the pre_tokenizer is not ByteLevel; k2pack converts a byte-level BPE tokenizer.json (DeepSeek-V3's)")
            }
            if let post = root["post_processor"], !post.isNull {
                let processors = post["processors"]?.arrayValue ?? [post]
                for p in processors {
                    if let t = p["type"]?.stringValue, t == "RobertaProcessing" || t == "TemplateProcessing" {
                        throw TokenizerError(.unsupported, "\(file): post_processor \(t) (gguf-py derives add_*_token from it); k2pack converts DeepSeek-V3's ByteLevel post-processor")
                    }
                }
            }
            guard let vocab = model["vocab"]?.objectValue else {
                throw TokenizerError(.badConfig, "\(file): model.vocab is \(model["vocab"]?.kindName ?? "missing"), expected an object of token → id")
            }
            var byID = [String?](repeating: nil, count: vocabularySize)
            var types = [Int32](repeating: GGUFTokenizerJSON.unused, count: vocabularySize)
            var vocabIDs: [String: Int] = [:]
            vocabIDs.reserveCapacity(vocab.count)
            func place(_ token: String, _ value: JSONValue?, _ what: String) throws(TokenizerError) -> Int {
                guard let value, let id = value.intValue, id >= 0 else {
                    throw TokenizerError(.badID, "\(file): \(what) \"\(displayed(token))\" has id \(value?.numberText ?? value?.kindName ?? "missing"), expected a non-negative integer")
                }
                guard id < vocabularySize else {
                    throw TokenizerError(.vocabularySize, "\(file): \(what) \"\(displayed(token))\" has id \(id), at or past the model's vocab_size \(vocabularySize)")
                }
                return id
            }
            for (token, value) in vocab.entries {
                let id = try place(token, value, "model.vocab token")
                if let other = byID[id] {
                    throw TokenizerError(.badID, "\(file): model.vocab gives id \(id) to both \"\(displayed(other))\" and \"\(displayed(token))\"")
                }
                byID[id] = token
                types[id] = GGUFTokenizerJSON.normal
                vocabIDs[token] = id
            }
            let added = root["added_tokens"]
            guard added == nil || added!.isNull || added!.arrayValue != nil else {
                throw TokenizerError(.badConfig, "\(file): added_tokens is \(added!.kindName), expected a list")
            }
            var addedSeen = Set<Int>()
            for (n, entry) in (added?.arrayValue ?? []).enumerated() {
                guard let content = entry["content"]?.stringValue else {
                    throw TokenizerError(.badConfig, "\(file): added_tokens[\(n)] has no string \"content\"")
                }
                let id = try place(content, entry["id"], "added token")
                guard let special = entry["special"]?.boolValue else {
                    throw TokenizerError(.badConfig, "\(file): added token \"\(displayed(content))\" has no boolean \"special\"")
                }
                guard addedSeen.insert(id).inserted else {
                    throw TokenizerError(.badID, "\(file): added_tokens gives id \(id) twice (again to \"\(displayed(content))\")")
                }
                if let other = byID[id], other != content {
                    throw TokenizerError(.badID, "\(file): added token \"\(displayed(content))\" has id \(id), which model.vocab gives to \"\(displayed(other))\"")
                }
                if let vocabID = vocabIDs[content], vocabID != id {
                    throw TokenizerError(.badID, "\(file): added token \"\(displayed(content))\" has id \(id), but model.vocab gives it id \(vocabID)")
                }
                if addedIDs[content] == nil { addedIDs[content] = id }
                if special || Self.looksSpecial(content) {
                    byID[id] = content
                    types[id] = GGUFTokenizerJSON.control
                } else {
                    byID[id] = content.replacingOccurrences(of: "\u{2581}", with: " ")
                    types[id] = GGUFTokenizerJSON.userDefined
                }
            }
            tokens = byID.enumerated().map { $1 ?? "[PAD\($0)]" }
            self.types = types
            merges = try Self.merges(model["merges"], vocab: vocabIDs, file: file)
        }

        /// llama.cpp's `does_token_look_special`.
        static func looksSpecial(_ t: String) -> Bool {
            ["<pad>", "<mask>", "<2mass>", "[@BOS@]"].contains(t)
                || (t.hasPrefix("<|") && t.hasSuffix("|>")) || (t.hasPrefix("<｜") && t.hasSuffix("｜>"))
                || (t.hasPrefix("<unused") && t.hasSuffix(">"))
        }

        static func isByteLevel(_ pre: JSONValue?) -> Bool {
            guard let pre else { return false }
            if pre["type"]?.stringValue == "ByteLevel" { return true }
            guard pre["type"]?.stringValue == "Sequence", let list = pre["pretokenizers"]?.arrayValue else { return false }
            return list.contains { $0["type"]?.stringValue == "ByteLevel" }
        }

        /// model.merges as gguf-py writes them, each part checked to be in model.vocab.
        static func merges(_ value: JSONValue?, vocab: [String: Int], file: String) throws(TokenizerError) -> [String] {
            guard let value, !value.isNull else { return [] }
            guard let list = value.arrayValue else {
                throw TokenizerError(.badConfig, "\(file): model.merges is \(value.kindName), expected a list")
            }
            guard let first = list.first else { return [] }
            let strings = first.stringValue != nil
            var out: [String] = []
            out.reserveCapacity(list.count)
            for (n, entry) in list.enumerated() {
                let parts: [String]
                if strings {
                    guard let s = entry.stringValue else {
                        throw TokenizerError(.badConfig, "\(file): model.merges[\(n)] is \(entry.kindName); the list starts with strings")
                    }
                    parts = s.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
                    guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
                        throw TokenizerError(.badConfig, "\(file): model.merges[\(n)] \"\(displayed(s))\" is not two tokens around one space")
                    }
                } else {
                    guard let pair = entry.arrayValue, pair.count == 2, let a = pair[0].stringValue, let b = pair[1].stringValue else {
                        throw TokenizerError(.badConfig, "\(file): model.merges[\(n)] is not a pair of strings")
                    }
                    parts = [a, b]
                }
                for part in parts where vocab[part] == nil {
                    throw TokenizerError(.badConfig, "\(file): model.merges[\(n)] names \"\(displayed(part))\", which is not in model.vocab")
                }
                if strings {
                    out.append(parts[0] + " " + parts[1])
                } else {
                    out.append(parts.map { $0.replacingOccurrences(of: " ", with: "\u{120}") }.joined(separator: " "))
                }
            }
            return out
        }
    }
}
