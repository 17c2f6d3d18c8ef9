import TensorCore

/// A strict, allocation-light JSON reader over bytes (RFC 8259): no trailing commas, no comments,
/// no NaN, no leading zeros, strings must be valid UTF-8, nesting is bounded.
///
/// Callers that know the document's shape (the safetensors header) drive the scanner directly;
/// `parseValue` builds a `JSONValue` tree for small documents (config.json, index.json).
/// The buffer must outlive the scanner.
public struct JSONScanner {
    public let bytes: UnsafeRawBufferPointer
    public private(set) var position: Int
    public let maxDepth: Int

    public init(bytes: UnsafeRawBufferPointer, maxDepth: Int = JSONDepth.standard) {
        self.bytes = bytes
        self.position = 0
        self.maxDepth = maxDepth
    }

    public var isAtEnd: Bool { position >= bytes.count }

    public func error(_ reason: String) -> JSONError {
        JSONError(offset: position, reason: reason)
    }

    @inline(__always)
    public mutating func skipWhitespace() {
        while position < bytes.count {
            switch bytes[position] {
            case 0x20, 0x0A, 0x0D, 0x09: position += 1
            default: return
            }
        }
    }

    /// The next non-whitespace byte, without consuming it.
    public mutating func peek() -> UInt8? {
        skipWhitespace()
        return position < bytes.count ? bytes[position] : nil
    }

    public mutating func expect(_ byte: UInt8, _ what: String) throws(JSONError) {
        skipWhitespace()
        guard position < bytes.count else { throw error("unexpected end of input, expected \(what)") }
        guard bytes[position] == byte else { throw error("expected \(what), found \(describe(bytes[position]))") }
        position += 1
    }

    /// Steps over the byte `peek()` just returned.
    public mutating func skipOne() { position += 1 }

    /// Consumes `byte` if it is next; returns whether it was.
    public mutating func consume(_ byte: UInt8) -> Bool {
        skipWhitespace()
        if position < bytes.count, bytes[position] == byte {
            position += 1
            return true
        }
        return false
    }

    /// After the last value: only whitespace may follow.
    public mutating func expectEnd() throws(JSONError) {
        skipWhitespace()
        if position < bytes.count { throw error("unexpected \(describe(bytes[position])) after the end of the document") }
    }

    // MARK: strings

    public mutating func parseString() throws(JSONError) -> String {
        var decoded: [UInt8] = []
        guard let span = try parseStringBytes(decoded: &decoded) else { return String(decoding: decoded, as: UTF8.self) }
        let slice = UnsafeRawBufferPointer(rebasing: bytes[span])
        return String(unsafeUninitializedCapacity: slice.count) { out in
            _ = out.initialize(from: slice)
            return slice.count
        }
    }

    /// Reads a string as `parseString` does (the same checks, errors and offsets) without building a `String`:
    /// returns the range of its bytes in `bytes` when it holds no escape, else nil with its decoded UTF-8 in
    /// `decoded` (replaced). Either way the bytes are valid UTF-8.
    public mutating func parseStringBytes(decoded: inout [UInt8]) throws(JSONError) -> Range<Int>? {
        try expect(UInt8(ascii: "\""), "a string")
        let start = position
        // Fast path: no escapes. Eight bytes at a time while none of them is a quote, a backslash or a control
        // byte (then byte by byte from the word that holds one), noting whether any is non-ASCII.
        var ascii = true
        var highBits: UInt64 = 0
        while bytes.count - position >= 8 {
            let word = bytes.loadUnaligned(fromByteOffset: position, as: UInt64.self)
            if Self.hasSpecialByte(word) { break }
            highBits |= word
            position += 8
        }
        ascii = highBits & Self.highBitsMask == 0
        while position < bytes.count {
            let b = bytes[position]
            if b == UInt8(ascii: "\"") {
                if !ascii, String(validating: UnsafeRawBufferPointer(rebasing: bytes[start..<position]), as: UTF8.self) == nil {
                    position = start
                    throw error("string is not valid UTF-8")
                }
                position += 1
                return start..<(position - 1)
            }
            if b == UInt8(ascii: "\\") { break }
            if b < 0x20 { throw error("unescaped control character in string") }
            ascii = ascii && b < 0x80
            position += 1
        }
        guard position < bytes.count else { throw error("unterminated string") }
        // Slow path with escapes.
        decoded = [UInt8](UnsafeRawBufferPointer(rebasing: bytes[start..<position]))
        while position < bytes.count {
            let b = bytes[position]
            position += 1
            switch b {
            case UInt8(ascii: "\""):
                guard String(validating: decoded, as: UTF8.self) != nil else {
                    throw JSONError(offset: start, reason: "string is not valid UTF-8")
                }
                return nil
            case UInt8(ascii: "\\"):
                try parseEscape(into: &decoded)
            case 0..<0x20:
                position -= 1
                throw error("unescaped control character in string")
            default:
                decoded.append(b)
            }
        }
        throw error("unterminated string")
    }

    static let highBitsMask: UInt64 = 0x8080_8080_8080_8080
    static let lowBitsMask: UInt64 = 0x0101_0101_0101_0101

    /// Whether one of the word's eight bytes is a quote, a backslash or below 0x20 (exact: the borrow tricks
    /// below can misplace which byte, never whether one is). Bytes ≥ 0x80 are not special.
    @inline(__always)
    static func hasSpecialByte(_ word: UInt64) -> Bool {
        // A zero byte of w ^ c.repeated is a byte equal to c; `(x - 0x01…) & ~x & 0x80…` is non-zero exactly when
        // some byte of x is zero (when x < 0x20 per byte for the control test, with 0x20 in place of 0x01).
        let quote = word ^ (lowBitsMask &* 0x22)
        let backslash = word ^ (lowBitsMask &* 0x5C)
        let zeroInQuote = (quote &- lowBitsMask) & ~quote
        let zeroInBackslash = (backslash &- lowBitsMask) & ~backslash
        let control = (word &- lowBitsMask &* 0x20) & ~word
        return (zeroInQuote | zeroInBackslash | control) & highBitsMask != 0
    }

    private mutating func parseEscape(into utf8: inout [UInt8]) throws(JSONError) {
        guard position < bytes.count else { throw error("unterminated escape") }
        let c = bytes[position]
        position += 1
        switch c {
        case UInt8(ascii: "\""): utf8.append(0x22)
        case UInt8(ascii: "\\"): utf8.append(0x5C)
        case UInt8(ascii: "/"): utf8.append(0x2F)
        case UInt8(ascii: "b"): utf8.append(0x08)
        case UInt8(ascii: "f"): utf8.append(0x0C)
        case UInt8(ascii: "n"): utf8.append(0x0A)
        case UInt8(ascii: "r"): utf8.append(0x0D)
        case UInt8(ascii: "t"): utf8.append(0x09)
        case UInt8(ascii: "u"):
            var scalar = try parseHex4()
            if (0xD800..<0xDC00).contains(scalar) {
                guard position + 1 < bytes.count, bytes[position] == UInt8(ascii: "\\"),
                    bytes[position + 1] == UInt8(ascii: "u")
                else { throw error("unpaired UTF-16 surrogate in \\u escape") }
                position += 2
                let low = try parseHex4()
                guard (0xDC00..<0xE000).contains(low) else { throw error("unpaired UTF-16 surrogate in \\u escape") }
                scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
            } else if (0xDC00..<0xE000).contains(scalar) {
                throw error("unpaired UTF-16 surrogate in \\u escape")
            }
            guard let u = Unicode.Scalar(scalar) else { throw error("invalid \\u escape") }
            utf8.append(contentsOf: Array(String(Character(u)).utf8))
        default:
            position -= 1
            throw error("invalid escape \\\(describe(c))")
        }
    }

    private mutating func parseHex4() throws(JSONError) -> UInt32 {
        guard position + 4 <= bytes.count else { throw error("truncated \\u escape") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let c = bytes[position]
            let digit: UInt32
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt32(c - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt32(c - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt32(c - UInt8(ascii: "A") + 10)
            default: throw error("invalid hex digit in \\u escape")
            }
            value = value << 4 | digit
            position += 1
        }
        return value
    }

    // MARK: numbers

    /// Scans a JSON number and returns its source text.
    public mutating func parseNumberText() throws(JSONError) -> String {
        skipWhitespace()
        let start = position
        if position < bytes.count, bytes[position] == UInt8(ascii: "-") { position += 1 }
        guard position < bytes.count, isDigit(bytes[position]) else { throw error("expected a number") }
        if bytes[position] == UInt8(ascii: "0") {
            position += 1
            if position < bytes.count, isDigit(bytes[position]) { throw error("number has a leading zero") }
        } else {
            while position < bytes.count, isDigit(bytes[position]) { position += 1 }
        }
        if position < bytes.count, bytes[position] == UInt8(ascii: ".") {
            position += 1
            guard position < bytes.count, isDigit(bytes[position]) else { throw error("expected digits after '.'") }
            while position < bytes.count, isDigit(bytes[position]) { position += 1 }
        }
        if position < bytes.count, bytes[position] | 0x20 == UInt8(ascii: "e") {
            position += 1
            if position < bytes.count, bytes[position] == UInt8(ascii: "+") || bytes[position] == UInt8(ascii: "-") {
                position += 1
            }
            guard position < bytes.count, isDigit(bytes[position]) else { throw error("expected digits in exponent") }
            while position < bytes.count, isDigit(bytes[position]) { position += 1 }
        }
        return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<position]), as: UTF8.self)
    }

    /// A non-negative integer that fits in `Int`: what shapes and offsets must be.
    public mutating func parseNonNegativeInt(_ what: String) throws(JSONError) -> Int {
        skipWhitespace()
        let start = position
        var value = 0
        var digits = 0
        while position < bytes.count, isDigit(bytes[position]) {
            let (m, o1) = value.multipliedReportingOverflow(by: 10)
            let (a, o2) = m.addingReportingOverflow(Int(bytes[position] - UInt8(ascii: "0")))
            if o1 || o2 {
                position = start
                throw error("\(what) does not fit in a 64-bit integer")
            }
            value = a
            digits += 1
            position += 1
        }
        if digits == 0 || (digits > 1 && bytes[start] == UInt8(ascii: "0")) {
            position = start
            throw error("\(what) must be a non-negative integer")
        }
        if position < bytes.count, bytes[position] == UInt8(ascii: ".") || bytes[position] | 0x20 == UInt8(ascii: "e") {
            position = start
            throw error("\(what) must be a non-negative integer")
        }
        return value
    }

    // MARK: trees

    public mutating func parseValue(depth: Int = 0) throws(JSONError) -> JSONValue {
        guard let c = peek() else { throw error("unexpected end of input, expected a value") }
        switch c {
        case UInt8(ascii: "{"):
            guard depth < maxDepth else { throw error("nesting deeper than \(maxDepth) levels") }
            position += 1
            var object = JSONObject()
            if consume(UInt8(ascii: "}")) { return .object(object) }
            repeat {
                let keyOffset = position
                let key = try parseString()
                try expect(UInt8(ascii: ":"), "':' after an object key")
                let value = try parseValue(depth: depth + 1)
                if !object.append(key, value) {
                    throw JSONError(offset: keyOffset, reason: "duplicate key \"\(displayed(key))\"")
                }
            } while consume(UInt8(ascii: ","))
            try expect(UInt8(ascii: "}"), "',' or '}' in an object")
            return .object(object)
        case UInt8(ascii: "["):
            guard depth < maxDepth else { throw error("nesting deeper than \(maxDepth) levels") }
            position += 1
            var items: [JSONValue] = []
            if consume(UInt8(ascii: "]")) { return .array(items) }
            repeat {
                items.append(try parseValue(depth: depth + 1))
            } while consume(UInt8(ascii: ","))
            try expect(UInt8(ascii: "]"), "',' or ']' in an array")
            return .array(items)
        case UInt8(ascii: "\""):
            return .string(try parseString())
        case UInt8(ascii: "t"):
            try literal("true")
            return .bool(true)
        case UInt8(ascii: "f"):
            try literal("false")
            return .bool(false)
        case UInt8(ascii: "n"):
            try literal("null")
            return .null
        default:
            return .number(try parseNumberText())
        }
    }

    private mutating func literal(_ word: String) throws(JSONError) {
        let utf8 = Array(word.utf8)
        guard position + utf8.count <= bytes.count else { throw error("unexpected end of input") }
        for i in 0..<utf8.count where bytes[position + i] != utf8[i] {
            throw error("invalid literal, expected \(word)")
        }
        position += utf8.count
    }

    @inline(__always)
    private func isDigit(_ b: UInt8) -> Bool { b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9") }

    private func describe(_ b: UInt8) -> String {
        (0x21..<0x7F).contains(b) ? "'\(Character(Unicode.Scalar(b)))'" : "byte 0x\(String(b, radix: 16, uppercase: true))"
    }
}

extension JSONScanner {
    /// When the next value is a string spelled exactly `utf8` (no escapes), consumes it and returns true;
    /// otherwise consumes nothing but whitespace and returns false. Recognizes a known key or a repeated value
    /// without building a String; a `utf8` holding a quote, a backslash or a control byte never matches, so
    /// anything that is not plainly that string goes through `parseString` and its checks.
    public mutating func consumeString(equalTo utf8: UnsafeRawBufferPointer) -> Bool {
        skipWhitespace()
        let n = utf8.count
        guard n <= bytes.count - position - 2, bytes[position] == UInt8(ascii: "\""), bytes[position + n + 1] == UInt8(ascii: "\"")
        else { return false }
        // The same bytes (eight at a time), and none of them a quote, a backslash or a control byte.
        guard ByteName.equalBytes(UnsafeRawBufferPointer(rebasing: bytes[(position + 1)..<(position + 1 + n)]), utf8) else { return false }
        var i = 0
        while i + 8 <= n {
            if Self.hasSpecialByte(utf8.loadUnaligned(fromByteOffset: i, as: UInt64.self)) { return false }
            i += 8
        }
        while i < n {
            let b = utf8[i]
            if b == UInt8(ascii: "\"") || b == UInt8(ascii: "\\") || b < 0x20 { return false }
            i += 1
        }
        position += n + 2
        return true
    }

    /// `consumeString(equalTo:)` for a literal.
    public mutating func consumeString(_ literal: StaticString) -> Bool {
        consumeString(equalTo: UnsafeRawBufferPointer(start: literal.utf8Start, count: literal.utf8CodeUnitCount))
    }
}

public enum JSONDocument {
    /// Parses a whole document (whitespace may surround it).
    public static func parse(_ bytes: UnsafeRawBufferPointer, maxDepth: Int = JSONDepth.standard) throws(JSONError) -> JSONValue {
        var scanner = JSONScanner(bytes: bytes, maxDepth: maxDepth)
        let value = try scanner.parseValue()
        try scanner.expectEnd()
        return value
    }

    public static func parse(_ bytes: [UInt8], maxDepth: Int = JSONDepth.standard) throws(JSONError) -> JSONValue {
        let result = bytes.withUnsafeBytes { raw in Result { () throws(JSONError) -> JSONValue in try parse(raw, maxDepth: maxDepth) } }
        return try result.get()
    }
}
