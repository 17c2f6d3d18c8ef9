import JSONCore

/// What the Kimi tokenizer takes from `tokenizer_config.json`: the names of the special ids
/// (`added_tokens_decoder`, the rest `<|reserved_token_ID|>`) and the bos/eos/pad/unk names.
public struct TokenizerConfig: Sendable, Equatable {
    /// Names of the special ids, index i for id `firstSpecialID + i`.
    public var specialNames: [String]
    public var firstSpecialID: Int
    public var bosID: Int
    public var eosID: Int
    public var padID: Int?
    public var unkID: Int?
}

public enum TokenizerConfigReader {
    public static let maxFileBytes = 16 << 20
    public static let maxNameBytes = 1024

    /// Reads the config for a vocabulary of `baseCount` ranks. Stricter than tokenization_kimi.py where it would
    /// go quietly wrong: an `added_tokens_decoder` id outside the special block (the Python ignores it for
    /// encode), two ids with one name (the Python keeps the last), an empty name (tiktoken would match it
    /// everywhere) are refused; a bos/eos/pad/unk name that is not a special is refused, as the Python's
    /// lookup fails.
    public static func read(_ bytes: [UInt8], file: String, baseCount: Int, scheme: TokenizerScheme) throws(TokenizerError) -> TokenizerConfig {
        guard bytes.count <= maxFileBytes else {
            throw TokenizerError(.tooLarge, "\(file): \(bytes.count) bytes, over the \(maxFileBytes)-byte limit for a tokenizer_config.json")
        }
        let root: JSONValue
        do { root = try JSONDocument.parse(bytes) } catch {
            throw TokenizerError(.badConfig, "\(file): \(error)")
        }
        guard let object = root.objectValue else {
            throw TokenizerError(.badConfig, "\(file): the top level is \(root.kindName), expected an object")
        }
        let first = baseCount
        let count = scheme.reservedSpecialTokens
        var names = (0..<count).map { "<|reserved_token_\(first + $0)|>" }
        if let decoder = object["added_tokens_decoder"], !decoder.isNull {
            guard let entries = decoder.objectValue else {
                throw TokenizerError(.badConfig, "\(file): added_tokens_decoder is \(decoder.kindName), expected an object of id → token")
            }
            for (key, value) in entries.entries {
                guard !key.isEmpty, key.count <= 12, key.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
                      key.count == 1 || !key.hasPrefix("0"), let id = Int(key) else {
                    throw TokenizerError(.badConfig, "\(file): added_tokens_decoder key '\(key)' is not a decimal token id")
                }
                let content: String
                if let s = value.stringValue {
                    content = s
                } else if let c = value["content"]?.stringValue {
                    content = c
                } else {
                    throw TokenizerError(.badConfig, "\(file): added_tokens_decoder[\(id)] is \(value.kindName) without a string 'content'")
                }
                guard !content.isEmpty, content.utf8.count <= maxNameBytes else {
                    throw TokenizerError(.badConfig, "\(file): added_tokens_decoder[\(id)] has a name of \(content.utf8.count) bytes (1...\(maxNameBytes))")
                }
                guard id >= first && id < first + count else {
                    throw TokenizerError(.badConfig, "\(file): added_tokens_decoder[\(id)] ('\(content)') is not a special id: tiktoken.model has \(first) ranks, so the \(count) specials are \(first)..<\(first + count)")
                }
                names[id - first] = content
            }
        }
        // Names compared as bytes, as tiktoken does (two canonically equivalent spellings are two names).
        var idOfName: [ByteName: Int] = [:]
        for (i, name) in names.enumerated() {
            if let other = idOfName[ByteName(name)] {
                throw TokenizerError(.badConfig, "\(file): special ids \(first + other) and \(first + i) are both named '\(name)'")
            }
            idOfName[ByteName(name)] = i
        }
        func special(_ key: String, default fallback: String?) throws(TokenizerError) -> Int? {
            var name = fallback
            if let v = object[key] {
                if v.isNull {
                    name = nil
                } else if let s = v.stringValue {
                    name = s
                } else if let c = v["content"]?.stringValue {
                    name = c
                } else {
                    throw TokenizerError(.badConfig, "\(file): \(key) is \(v.kindName), expected a token name")
                }
            }
            guard let name else { return nil }
            guard let i = idOfName[ByteName(name)] else {
                throw TokenizerError(.badConfig, "\(file): \(key) '\(name)' is not one of the \(count) special tokens (\(first)..<\(first + count))")
            }
            return first + i
        }
        guard let bos = try special("bos_token", default: scheme.defaultBOS) else {
            throw TokenizerError(.badConfig, "\(file): bos_token is null; the Kimi tokenizer needs one")
        }
        guard let eos = try special("eos_token", default: scheme.defaultEOS) else {
            throw TokenizerError(.badConfig, "\(file): eos_token is null; the Kimi tokenizer needs one")
        }
        return TokenizerConfig(specialNames: names, firstSpecialID: first, bosID: bos, eosID: eos,
                               padID: try special("pad_token", default: nil), unkID: try special("unk_token", default: nil))
    }
}
