import JSONCore
import Manifests

/// The Kimi tokenizer's facts, read from `Manifests/json/kimi_tokenizer.json`.
public struct TokenizerScheme: Sendable, Equatable {
    public var ranksFile: String
    public var configFile: String
    /// Special ids follow the ranks: len(ranks) ..< len(ranks) + reservedSpecialTokens.
    public var reservedSpecialTokens: Int
    /// encode cuts the text into pieces of this many characters (Unicode scalars) ...
    public var maxEncodeChars: Int
    /// ... and splits runs of more than this many whitespace (str.isspace) or non-whitespace characters.
    public var maxRunChars: Int
    public var defaultBOS: String
    public var defaultEOS: String

    public init(ranksFile: String, configFile: String, reservedSpecialTokens: Int, maxEncodeChars: Int, maxRunChars: Int,
                defaultBOS: String, defaultEOS: String) {
        self.ranksFile = ranksFile
        self.configFile = configFile
        self.reservedSpecialTokens = reservedSpecialTokens
        self.maxEncodeChars = maxEncodeChars
        self.maxRunChars = maxRunChars
        self.defaultBOS = defaultBOS
        self.defaultEOS = defaultEOS
    }

    /// The shipped manifest.
    public static func kimi() throws(TokenizerError) -> TokenizerScheme {
        let name = "kimi_tokenizer"
        guard let data = ManifestResources.data(named: name) else {
            throw TokenizerError(.missingFile, "manifest \(name).json is missing from the k2pack build")
        }
        let value: JSONValue
        do { value = try JSONDocument.parse([UInt8](data)) } catch {
            throw TokenizerError(.badConfig, "manifest \(name).json: \(error)")
        }
        func string(_ key: String) throws(TokenizerError) -> String {
            guard let s = value[key]?.stringValue else { throw TokenizerError(.badConfig, "manifest \(name).json: '\(key)' is not a string") }
            return s
        }
        func int(_ key: String) throws(TokenizerError) -> Int {
            guard let v = value[key]?.intValue, v > 0 else { throw TokenizerError(.badConfig, "manifest \(name).json: '\(key)' is not a positive integer") }
            return v
        }
        return TokenizerScheme(
            ranksFile: try string("ranks_file"), configFile: try string("config_file"),
            reservedSpecialTokens: try int("reserved_special_tokens"), maxEncodeChars: try int("max_encode_chars"),
            maxRunChars: try int("max_run_chars"), defaultBOS: try string("default_bos_token"),
            defaultEOS: try string("default_eos_token"))
    }
}
