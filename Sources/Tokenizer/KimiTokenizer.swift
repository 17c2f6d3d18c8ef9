import Checkpoint
import FileIO
import Foundation
import TensorCore

/// The Kimi K2 / K2.5 tokenizer (tokenization_kimi.TikTokenTokenizer), bit-exact with tiktoken: byte-level BPE
/// over `tiktoken.model`'s ranks, the Kimi pre-tokenizer, every special token allowed in the text, and Kimi's
/// encode rules (400,000-character pieces, runs of more than 25,000 whitespace or non-whitespace characters
/// split before BPE).
public struct KimiTokenizer: Sendable {
    public let table: TokenTable
    public let config: TokenizerConfig
    public let scheme: TokenizerScheme
    let preTokenizer = PreTokenizer()
    let specials: SpecialMatcher

    /// Ranks plus specials: ids are 0 ..< vocabularySize.
    public var vocabularySize: Int { table.count + config.specialNames.count }
    public var baseCount: Int { table.count }

    public init(ranks: [UInt8], ranksFile: String, config: [UInt8], configFile: String, scheme: TokenizerScheme) throws(TokenizerError) {
        table = try TiktokenModelReader.read(ranks, file: ranksFile)
        self.config = try TokenizerConfigReader.read(config, file: configFile, baseCount: table.count, scheme: scheme)
        self.scheme = scheme
        specials = SpecialMatcher(names: self.config.specialNames, firstID: self.config.firstSpecialID)
    }

    /// Loads `tiktoken.model` and `tokenizer_config.json` from a model folder. Both are opened through the
    /// folder guard (`ReadOnlyFile(folder:name:)`): regular files inside the folder, never a link out of it.
    public static func load(directory: String) throws(TokenizerError) -> KimiTokenizer {
        let scheme = try TokenizerScheme.kimi()
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDir), isDir.boolValue else {
            throw TokenizerError(.missingFile, "\(displayed(directory)): not a folder")
        }
        for name in [scheme.ranksFile, scheme.configFile] where !FileManager.default.fileExists(atPath: directory + "/" + name) {
            throw TokenizerError(.missingFile, "\(displayed(directory)): no \(name) (the Kimi tokenizer needs \(scheme.ranksFile) and \(scheme.configFile))")
        }
        let ranks = try readFile(folder: directory, name: scheme.ranksFile, limit: TiktokenModelReader.maxFileBytes, what: "a tiktoken.model")
        let config = try readFile(folder: directory, name: scheme.configFile, limit: TokenizerConfigReader.maxFileBytes, what: "a tokenizer_config.json")
        return try KimiTokenizer(
            ranks: ranks, ranksFile: directory + "/" + scheme.ranksFile, config: config, configFile: directory + "/" + scheme.configFile, scheme: scheme)
    }

    /// A whole file of a model folder (checked to lie inside it), its size checked against `limit` before it is read.
    public static func readFile(folder: String, name: String, limit: Int, what: String) throws(TokenizerError) -> [UInt8] {
        let file: ReadOnlyFile
        do { file = try ReadOnlyFile(folder: folder, name: name) } catch { throw TokenizerError(.io, error.description) }
        return try readWhole(file, limit: limit, what: what)
    }

    /// A whole file the user names directly (a `--text` file), its size checked against `limit` before it is read.
    public static func readFile(_ path: String, limit: Int, what: String) throws(TokenizerError) -> [UInt8] {
        let file: ReadOnlyFile
        do { file = try ReadOnlyFile(path: path) } catch { throw TokenizerError(.io, error.description) }
        return try readWhole(file, limit: limit, what: what)
    }

    private static func readWhole(_ file: ReadOnlyFile, limit: Int, what: String) throws(TokenizerError) -> [UInt8] {
        guard file.byteCount <= limit else {
            throw TokenizerError(.tooLarge, "\(displayed(file.path)): \(file.byteCount) bytes, over the \(limit)-byte limit for \(what)")
        }
        do { return try file.read(count: file.byteCount, at: 0) } catch { throw TokenizerError(.io, error.description) }
    }

    // MARK: encode

    /// The ids of `text`, as tokenization_kimi.py's encode gives them (all special tokens allowed).
    public func encode(_ text: String) -> [Int] {
        let scalars = text.unicodeScalars.map(\.value)
        let utf8 = Array(text.utf8)
        var offsets = [Int](repeating: 0, count: scalars.count + 1)
        var o = 0
        for (i, v) in scalars.enumerated() {
            offsets[i] = o
            o += v < 0x80 ? 1 : v < 0x800 ? 2 : v < 0x10000 ? 3 : 4
        }
        offsets[scalars.count] = o
        var ids: [Int] = []
        ids.reserveCapacity(utf8.count / 3)
        scalars.withUnsafeBufferPointer { s in
            utf8.withUnsafeBufferPointer { u in
                offsets.withUnsafeBufferPointer { off in
                    var chunk = 0
                    while chunk < s.count {
                        let chunkEnd = min(chunk + scheme.maxEncodeChars, s.count)
                        for part in runs(s, chunk..<chunkEnd) {
                            encodeAllowingSpecials(s, u, off, part, into: &ids)
                        }
                        chunk = chunkEnd
                    }
                }
            }
        }
        return ids
    }

    /// tokenization_kimi.py's `_split_whitespaces_or_nonwhitespaces`: a new part starts inside any run of more
    /// than maxRunChars scalars that are all str.isspace or all not.
    func runs(_ s: UnsafeBufferPointer<UInt32>, _ range: Range<Int>) -> [Range<Int>] {
        guard !range.isEmpty else { return [range] }
        let classes = preTokenizer.classes
        var parts: [Range<Int>] = []
        var length = 0
        var isSpace = classes.of(s[range.lowerBound]) & CharacterClasses.pythonSpace != 0
        var start = range.lowerBound
        for i in range {
            let now = classes.of(s[i]) & CharacterClasses.pythonSpace != 0
            if isSpace != now {
                length = 1
                isSpace = now
            } else {
                length += 1
                if length > scheme.maxRunChars {
                    parts.append(start..<i)
                    start = i
                    length = 1
                }
            }
        }
        parts.append(start..<range.upperBound)
        return parts
    }

    /// tiktoken's `encode(text, allowed_special="all")` over `range`: special tokens found leftmost (longest
    /// first where two start at one place), the text between them pre-tokenized and byte-pair encoded.
    func encodeAllowingSpecials(_ s: UnsafeBufferPointer<UInt32>, _ u: UnsafeBufferPointer<UInt8>, _ off: UnsafeBufferPointer<Int>,
                                _ range: Range<Int>, into ids: inout [Int]) {
        var segmentStart = range.lowerBound
        var i = range.lowerBound
        let byteEnd = off[range.upperBound]
        while i < range.upperBound {
            if specials.canStart(u[off[i]]), let (id, length) = specials.match(u, from: off[i], end: byteEnd) {
                encodeOrdinary(s, u, off, segmentStart..<i, into: &ids)
                ids.append(id)
                let stop = off[i] + length
                var j = i + 1
                while off[j] < stop { j += 1 }
                i = j
                segmentStart = j
            } else {
                i += 1
            }
        }
        encodeOrdinary(s, u, off, segmentStart..<range.upperBound, into: &ids)
    }

    func encodeOrdinary(_ s: UnsafeBufferPointer<UInt32>, _ u: UnsafeBufferPointer<UInt8>, _ off: UnsafeBufferPointer<Int>,
                        _ range: Range<Int>, into ids: inout [Int]) {
        guard !range.isEmpty else { return }
        preTokenizer.pieces(s, range) { piece in
            let a = off[piece.lowerBound], b = off[piece.upperBound]
            BytePairEncoder.encode(UnsafeBufferPointer(rebasing: u[a..<b]), table, into: &ids)
        }
    }

    // MARK: decode

    /// The bytes of `ids` (special ids give their names). An id outside the vocabulary is refused.
    public func decodeBytes(_ ids: [Int]) throws(TokenizerError) -> [UInt8] {
        var out: [UInt8] = []
        for (position, id) in ids.enumerated() {
            if id >= 0 && id < table.count {
                out.append(contentsOf: table.bytes(of: id))
            } else if id >= table.count && id < vocabularySize {
                out.append(contentsOf: config.specialNames[id - table.count].utf8)
            } else {
                throw TokenizerError(.badID, "id \(id) at position \(position) is outside the vocabulary (0..<\(vocabularySize): \(table.count) ranks and \(config.specialNames.count) specials)")
            }
        }
        return out
    }

    /// The text of `ids`: bytes that are not UTF-8 become U+FFFD, one per maximal ill-formed subsequence, as
    /// Python's `bytes.decode("utf-8", errors="replace")` does (tiktoken's decode).
    public func decode(_ ids: [Int]) throws(TokenizerError) -> String {
        String(decoding: try decodeBytes(ids), as: UTF8.self)
    }

    /// Checks that a text file's bytes are UTF-8, naming the first bad byte's offset.
    public static func text(fromUTF8 bytes: [UInt8], file: String) throws(TokenizerError) -> String {
        if let offset = firstInvalidUTF8(bytes) {
            throw TokenizerError(.notUTF8, "\(file): not UTF-8 at byte offset \(offset) (byte 0x\(hex([bytes[offset]])))")
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The offset of the first byte that starts an ill-formed UTF-8 sequence (surrogates and overlongs included).
    public static func firstInvalidUTF8(_ b: [UInt8]) -> Int? {
        var i = 0
        while i < b.count {
            let c = b[i]
            if c < 0x80 { i += 1; continue }
            var need = 0
            var lo: UInt8 = 0x80, hi: UInt8 = 0xBF
            switch c {
            case 0xC2...0xDF: need = 1
            case 0xE0: need = 2; lo = 0xA0
            case 0xE1...0xEC, 0xEE...0xEF: need = 2
            case 0xED: need = 2; hi = 0x9F
            case 0xF0: need = 3; lo = 0x90
            case 0xF1...0xF3: need = 3
            case 0xF4: need = 3; hi = 0x8F
            default: return i
            }
            guard i + need < b.count else { return i }
            if b[i + 1] < lo || b[i + 1] > hi { return i }
            for k in 2...max(2, need) where k <= need {
                if b[i + k] < 0x80 || b[i + k] > 0xBF { return i }
            }
            i += need + 1
        }
        return nil
    }
}

/// Special tokens as a byte trie: at a position, the longest special that starts there.
struct SpecialMatcher: Sendable {
    private var children: [[UInt8: Int32]] = [[:]]
    private var terminal: [Int] = [-1]
    private var firstBytes = [Bool](repeating: false, count: 256)

    init(names: [String], firstID: Int) {
        for (i, name) in names.enumerated() {
            var node = 0
            let bytes = Array(name.utf8)
            guard let head = bytes.first else { continue }
            firstBytes[Int(head)] = true
            for b in bytes {
                if let next = children[node][b] {
                    node = Int(next)
                } else {
                    children.append([:])
                    terminal.append(-1)
                    children[node][b] = Int32(children.count - 1)
                    node = children.count - 1
                }
            }
            terminal[node] = firstID + i
        }
    }

    @inline(__always) func canStart(_ byte: UInt8) -> Bool { firstBytes[Int(byte)] }

    /// (id, byte length) of the longest special at `from`, not running past `end`.
    func match(_ u: UnsafeBufferPointer<UInt8>, from: Int, end: Int) -> (Int, Int)? {
        var node = 0
        var best: (Int, Int)?
        var i = from
        while i < end, let next = children[node][u[i]] {
            node = Int(next)
            i += 1
            if terminal[node] >= 0 { best = (terminal[node], i - from) }
        }
        return best
    }
}
