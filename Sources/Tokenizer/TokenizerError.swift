/// Everything that can be wrong with a tokenizer folder, its files, a text or a list of ids. Each error names
/// the file (and line, or byte offset) and what was found against what was expected.
public struct TokenizerError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        /// The folder lacks tiktoken.model or tokenizer_config.json, or a file cannot be read.
        case missingFile
        case io
        /// A tiktoken.model file over the size or line limits (checked before allocation).
        case tooLarge
        /// A tiktoken.model line that is not `<canonical base64> <decimal rank>`.
        case badLine
        /// Ranks that are not exactly 0 ..< number of lines: a gap or a rank used twice.
        case rankGap
        case duplicateRank
        /// The same token bytes on two lines.
        case duplicateToken
        /// A single byte without a token (byte-level BPE needs all 256).
        case missingByte
        /// tokenizer_config.json that does not parse or is not shaped as the Kimi tokenizer reads it.
        case badConfig
        /// A text that is not UTF-8.
        case notUTF8
        /// An id outside the vocabulary, or an id list that does not parse.
        case badID
        /// A vocabulary that does not fit the model's `vocab_size` (GGUF metadata: ranks plus specials more than the
        /// ids the model has, or a size out of bounds).
        case vocabularySize
        /// A tokenizer this code does not convert (a Hugging Face `tokenizer.json` where GGUF output needs the Kimi
        /// files; several named chat templates).
        case unsupported
    }

    public var kind: Kind
    public var message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }
}
