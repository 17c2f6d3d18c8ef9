/// A strict reader of `tiktoken.model`: one `<base64 token bytes> <decimal rank>` per line, LF line ends. The
/// file is untrusted: its size and line count are bounded before anything is allocated for it, every line must
/// be canonical (standard alphabet, padded, no stray bits, one space, a rank without sign or leading zeros),
/// the ranks must be exactly 0 ..< number of lines, no two lines may hold the same bytes, and every single byte
/// must be a token (tiktoken's byte-level BPE cannot encode a byte that is not).
public enum TiktokenModelReader {
    public static let maxFileBytes = 64 << 20
    public static let maxLines = 1 << 21
    public static let maxTokenBytes = 1024

    public static func read(_ bytes: [UInt8], file: String) throws(TokenizerError) -> TokenTable {
        guard bytes.count <= maxFileBytes else {
            throw TokenizerError(.tooLarge, "\(file): \(bytes.count) bytes, over the \(maxFileBytes)-byte limit for a tiktoken.model")
        }
        // Count lines before allocating per-line storage.
        var lineCount = 0
        for b in bytes where b == 0x0A { lineCount += 1 }
        if let last = bytes.last, last != 0x0A { lineCount += 1 }
        guard lineCount <= maxLines else {
            throw TokenizerError(.tooLarge, "\(file): \(lineCount) lines, over the \(maxLines)-line limit for a tiktoken.model")
        }
        guard lineCount > 0 else { throw TokenizerError(.badLine, "\(file): empty; expected one '<base64 token> <rank>' line per token") }

        var lineOfRank = [Int32](repeating: -1, count: lineCount)
        var tokens = [[UInt8]](repeating: [], count: lineCount)
        var start = 0
        var line = 0
        while start < bytes.count {
            line += 1
            var end = start
            while end < bytes.count && bytes[end] != 0x0A { end += 1 }
            let (token, rank) = try parseLine(bytes[start..<end], file: file, line: line)
            guard rank < lineCount else {
                throw TokenizerError(.rankGap, "\(file):\(line): rank \(rank) leaves a gap: the file has \(lineCount) tokens, so the ranks must be exactly 0..<\(lineCount)")
            }
            if lineOfRank[rank] >= 0 {
                throw TokenizerError(.duplicateRank, "\(file):\(line): rank \(rank) is already given on line \(lineOfRank[rank])")
            }
            lineOfRank[rank] = Int32(line)
            tokens[rank] = token
            start = end + 1
        }
        // lineCount lines, each rank < lineCount, none repeated: the ranks are a permutation of 0..<lineCount.
        var storage: [UInt8] = []
        storage.reserveCapacity(bytes.count)
        var offsets = [0]
        offsets.reserveCapacity(lineCount + 1)
        for t in tokens {
            storage.append(contentsOf: t)
            offsets.append(storage.count)
        }
        let table = TokenTable(storage: storage, offsets: offsets)
        if let (a, b) = table.firstDuplicate() {
            let token = table.bytes(of: b)
            throw TokenizerError(.duplicateToken, "\(file):\(lineOfRank[b]): token \(Base64.encode(Array(token))) (bytes \(hex(token))) is already rank \(a) on line \(lineOfRank[a])")
        }
        for byte in 0..<256 {
            let one = [UInt8(byte)]
            if one.withUnsafeBufferPointer({ table.rank($0.baseAddress!, 1) }) == nil {
                throw TokenizerError(.missingByte, "\(file): byte 0x\(hex([UInt8(byte)])) has no token of its own; byte-level BPE needs all 256 single bytes")
            }
        }
        return table
    }

    static func parseLine(_ line: ArraySlice<UInt8>, file: String, line number: Int) throws(TokenizerError) -> ([UInt8], Int) {
        func bad(_ why: String) -> TokenizerError {
            TokenizerError(.badLine, "\(file):\(number): \(why); expected '<base64 token> <rank>', found \(quote(line))")
        }
        guard !line.isEmpty else { throw bad("empty line") }
        if line.last == 0x0D { throw bad("CR before the line end (CRLF line ends are not accepted)") }
        guard let space = line.firstIndex(of: 0x20) else { throw bad("no space between token and rank") }
        let b64 = line[line.startIndex..<space]
        let digits = line[(space + 1)...]
        guard !b64.isEmpty else { throw bad("empty token") }
        guard !digits.isEmpty else { throw bad("no rank") }
        guard digits.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { throw bad("the rank is not a decimal number") }
        guard digits.count == 1 || digits.first != 0x30 else { throw bad("the rank has a leading zero") }
        guard digits.count <= 10 else { throw bad("the rank is too large") }
        var rank = 0
        for d in digits { rank = rank * 10 + Int(d - 0x30) }
        guard b64.count <= (maxTokenBytes + 2) / 3 * 4 else { throw bad("token longer than \(maxTokenBytes) bytes") }
        guard let token = Base64.decodeCanonical(b64) else { throw bad("the token is not canonical base64") }
        guard !token.isEmpty, token.count <= maxTokenBytes else { throw bad("token of \(token.count) bytes (1...\(maxTokenBytes))") }
        return (token, rank)
    }

    static func quote(_ bytes: ArraySlice<UInt8>) -> String {
        let shown = bytes.prefix(60)
        var s = String(decoding: shown, as: UTF8.self).debugDescription
        if bytes.count > shown.count { s += "…" }
        return s
    }
}

func hex<C: Collection>(_ bytes: C) -> String where C.Element == UInt8 {
    let digits = Array("0123456789abcdef".utf8)
    var out: [UInt8] = []
    for b in bytes {
        out.append(digits[Int(b >> 4)])
        out.append(digits[Int(b & 15)])
    }
    return String(decoding: out, as: UTF8.self)
}

/// Standard base64 with padding; decoding accepts only the canonical form (what encoding gives back).
enum Base64 {
    static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
    static let values: [Int8] = {
        var v = [Int8](repeating: -1, count: 256)
        for (i, c) in alphabet.enumerated() { v[Int(c)] = Int8(i) }
        return v
    }()

    static func encode(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        var i = 0
        while i < bytes.count {
            let n = min(3, bytes.count - i)
            let b0 = UInt32(bytes[i]), b1 = n > 1 ? UInt32(bytes[i + 1]) : 0, b2 = n > 2 ? UInt32(bytes[i + 2]) : 0
            let v = b0 << 16 | b1 << 8 | b2
            out.append(alphabet[Int(v >> 18 & 63)])
            out.append(alphabet[Int(v >> 12 & 63)])
            out.append(n > 1 ? alphabet[Int(v >> 6 & 63)] : UInt8(ascii: "="))
            out.append(n > 2 ? alphabet[Int(v & 63)] : UInt8(ascii: "="))
            i += 3
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func decodeCanonical(_ text: ArraySlice<UInt8>) -> [UInt8]? {
        guard text.count % 4 == 0 else { return nil }
        let chars = Array(text)
        var out: [UInt8] = []
        out.reserveCapacity(chars.count / 4 * 3)
        var i = 0
        while i < chars.count {
            let last = i + 4 == chars.count
            var quad: [Int] = []
            var pad = 0
            for k in 0..<4 {
                let c = chars[i + k]
                if c == UInt8(ascii: "=") {
                    guard last, k >= 2 else { return nil }
                    pad += 1
                    quad.append(0)
                } else {
                    guard pad == 0 else { return nil }
                    let v = values[Int(c)]
                    guard v >= 0 else { return nil }
                    quad.append(Int(v))
                }
            }
            let v = quad[0] << 18 | quad[1] << 12 | quad[2] << 6 | quad[3]
            out.append(UInt8(v >> 16 & 255))
            if pad < 2 { out.append(UInt8(v >> 8 & 255)) }
            if pad < 1 { out.append(UInt8(v & 255)) }
            // Canonical: the bits padding leaves over must be zero.
            if pad == 2 && v & 0xFFFF != 0 { return nil }
            if pad == 1 && v & 0xFF != 0 { return nil }
            i += 4
        }
        return out
    }
}
