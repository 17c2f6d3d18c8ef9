import Foundation
import GGUF
import GGUFModel
import JSONCore
import Manifests
import TensorCore

/// A GGUF file's tokenizer (`tokenizer.ggml.*`) as llama.cpp's vocabulary loader reads it, checked: a known
/// `model` and (for BPE) a known `pre` (`Manifests/json/gguf_tokenizer.json`), `tokens` a string array as long as
/// `token_embd` has rows (and `vocab_size` says), no duplicate token, `token_type` an i32 array of the same
/// length, `scores` (when present) at least as long, bos / eos / pad / unk ids inside the vocabulary, and
/// `merges` strings "A B" whose two parts are tokens. A file without a tokenizer is a warning: k2pack reads
/// token ids without one, llama.cpp refuses to load it.
public enum GGUFTokenizerCheck {
    struct Rules: Decodable {
        var models: [String]
        var noVocabularyModels: [String]
        var bpeModels: [String]
        var bpeMergesOptionalPre: [String]
        var bpePre: [String]

        enum CodingKeys: String, CodingKey {
            case models
            case noVocabularyModels = "no_vocabulary_models"
            case bpeModels = "bpe_models"
            case bpeMergesOptionalPre = "bpe_merges_optional_pre"
            case bpePre = "bpe_pre"
        }

        static let shared: Rules? = ManifestResources.data(named: "gguf_tokenizer").flatMap { try? JSONDecoder().decode(Rules.self, from: $0) }
    }

    /// The special-token id keys checked against the vocabulary.
    static let specialKeys = ["bos", "eos", "padding", "unknown", "seperator", "eot", "eom"].map { "tokenizer.ggml.\($0)_token_id" }

    public static func check(_ model: GGUFModel) -> [Finding] {
        let file = model.first.path
        var findings: [Finding] = []
        func error(_ code: String, _ message: String, tensor: String? = nil) {
            findings.append(Finding(code: code, file: file, tensor: tensor, message: "\(displayed(file)): \(message)"))
        }
        func warning(_ code: String, _ message: String) {
            findings.append(Finding(.warning, code: code, file: file, message: "\(displayed(file)): \(message)"))
        }
        guard let rules = Rules.shared else {
            error("manifest", "the tokenizer rules manifest gguf_tokenizer.json is missing or unreadable (a k2pack bug)")
            return findings
        }
        guard let modelValue = model["tokenizer.ggml.model"] else {
            warning("tokenizer_missing", "no tokenizer (tokenizer.ggml.model absent): k2pack runs it from token ids, but llama.cpp refuses to load the file")
            return findings
        }
        guard let tokenizerModel = modelValue.stringValue else {
            error("tokenizer_invalid", "tokenizer.ggml.model is \(modelValue.typeName), expected a string")
            return findings
        }
        guard rules.models.contains(tokenizerModel) else {
            error("tokenizer_invalid", "tokenizer.ggml.model \"\(displayed(tokenizerModel))\" is not a tokenizer llama.cpp knows (\(rules.models.joined(separator: ", ")))")
            return findings
        }
        if rules.noVocabularyModels.contains(tokenizerModel) {
            warning("tokenizer_missing", "tokenizer.ggml.model is \"\(tokenizerModel)\": the file has no vocabulary")
            return findings
        }
        let isBPE = rules.bpeModels.contains(tokenizerModel)
        var pre: String?
        if let value = model["tokenizer.ggml.pre"] {
            if let p = value.stringValue {
                pre = p
                if isBPE, !rules.bpePre.contains(p) {
                    error("tokenizer_pre_unknown", "tokenizer.ggml.pre \"\(displayed(p))\" is not a pre-tokenizer llama.cpp knows: it refuses the file (\"unknown pre-tokenizer type\")")
                }
            } else {
                error("tokenizer_invalid", "tokenizer.ggml.pre is \(value.typeName), expected a string")
            }
        } else if isBPE {
            warning("tokenizer_pre_missing", "tokenizer.ggml.pre absent: llama.cpp falls back to the 'default' pre-tokenizer and warns that generation quality will be degraded")
        }

        // The vocabulary.
        guard let tokensValue = model["tokenizer.ggml.tokens"] else {
            error("tokenizer_invalid", "tokenizer.ggml.tokens is missing: llama.cpp refuses the file (\"cannot find tokenizer vocab\")")
            return findings
        }
        guard case let .array(tokenArray) = tokensValue, let tokens = tokenArray.stringValues else {
            error("tokenizer_invalid", "tokenizer.ggml.tokens is \(tokensValue.typeName), expected an array of string")
            return findings
        }
        let n = tokens.count
        if let embedding = model.tensor(named: "token_embd.weight")?.info, embedding.ne.count == 2, embedding.ne[1] != n {
            error(
                "tokenizer_vocab_size", "tokenizer.ggml.tokens holds \(grouped(n)) tokens but token_embd.weight has \(grouped(embedding.ne[1])) rows (ne {\(embedding.ne.map(String.init).joined(separator: ", "))})",
                tensor: embedding.name)
        }
        if let architecture = model.first.architecture, let vocab = model["\(architecture).vocab_size"]?.intValue, vocab != n {
            error("tokenizer_vocab_size", "tokenizer.ggml.tokens holds \(grouped(n)) tokens but \(displayed(architecture)).vocab_size is \(grouped(vocab))")
        }
        var ids: [ByteName: Int] = [:]
        ids.reserveCapacity(n)
        var empty: [Int] = []
        for (i, token) in tokens.enumerated() {
            if token.isEmpty { empty.append(i) }
            if let other = ids.updateValue(i, forKey: ByteName(token)) {
                error("tokenizer_duplicate_token", "token \(i) \"\(displayed(token))\" is also token \(other): llama.cpp refuses a vocabulary with a duplicate token")
                ids[ByteName(token)] = other
            }
        }
        if let first = empty.first {
            warning("tokenizer_empty_token", "\(empty.count) empty token\(empty.count == 1 ? "" : "s") (first: id \(first)): llama.cpp renames them [EMPTY_id]")
        }

        // Per-token arrays.
        if let typeValue = model["tokenizer.ggml.token_type"] {
            if case let .array(a) = typeValue, case .i32 = a {
                if a.count != n {
                    error("tokenizer_token_type", "tokenizer.ggml.token_type holds \(grouped(a.count)) entries, expected one per token (\(grouped(n)))")
                }
            } else {
                error("tokenizer_token_type", "tokenizer.ggml.token_type is \(typeValue.typeName), expected an array of i32")
            }
        }
        if let scoreValue = model["tokenizer.ggml.scores"] {
            if case let .array(a) = scoreValue, a.elementType == .f32 || a.elementType == .i32 {
                if a.count < n {
                    error("tokenizer_invalid", "tokenizer.ggml.scores holds \(grouped(a.count)) entries, fewer than the \(grouped(n)) tokens: llama.cpp refuses the file")
                }
            } else {
                error("tokenizer_invalid", "tokenizer.ggml.scores is \(scoreValue.typeName), expected an array of f32")
            }
        }

        // Special tokens.
        for key in specialKeys {
            guard let value = model[key] else { continue }
            guard let id = value.intValue else {
                error("tokenizer_special_id", "\(key) is \(value.typeName) \(value.summary), expected an integer token id")
                continue
            }
            if id < 0 || id >= n {
                error("tokenizer_special_id", "\(key) is \(id), outside the vocabulary of \(grouped(n)) tokens (ids 0–\(n - 1))")
            }
        }

        // Merges.
        guard isBPE else { return findings }
        guard let mergesValue = model["tokenizer.ggml.merges"] else {
            if !(pre.map(rules.bpeMergesOptionalPre.contains) ?? false) {
                error("tokenizer_invalid", "tokenizer.ggml.merges is missing: llama.cpp refuses a \(tokenizerModel) vocabulary without merges (unless tokenizer.ggml.pre is \(rules.bpeMergesOptionalPre.joined(separator: ", ")))")
            }
            return findings
        }
        guard case let .array(mergeArray) = mergesValue, let merges = mergeArray.stringValues else {
            error("tokenizer_invalid", "tokenizer.ggml.merges is \(mergesValue.typeName), expected an array of string")
            return findings
        }
        for (i, merge) in merges.enumerated() {
            // llama.cpp splits at the first space after the first byte.
            let bytes = Array(merge.utf8)
            guard bytes.count > 2, let space = bytes[1...].firstIndex(of: UInt8(ascii: " ")), space < bytes.count - 1 else {
                error("tokenizer_merge", "merge \(i) \"\(displayed(merge))\" is not two tokens separated by a space (\"A B\")")
                continue
            }
            // Cut at an ASCII space: both parts are whole UTF-8.
            let parts = [bytes[..<space], bytes[(space + 1)...]].map { String(decoding: $0, as: UTF8.self) }
            let missing = parts.filter { ids[ByteName($0)] == nil }
            if !missing.isEmpty {
                let names = missing.map { "\"\(displayed($0))\"" }.joined(separator: " and ")
                error("tokenizer_merge", "merge \(i) \"\(displayed(merge))\": \(names) \(missing.count == 1 ? "is not a token" : "are not tokens")")
            }
        }
        return findings
    }
}
