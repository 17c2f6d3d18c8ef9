/// Untrusted text made safe to print on a terminal: tensor names, shard and file names, config values, paths.
///
/// Every scalar that could move the cursor, clear the screen, start a new line or reorder what is shown is
/// replaced by a visible escape, so a name can neither forge a line of a report nor hide itself:
/// - C0 controls and DEL: `\n`, `\r`, `\t`, else `\xNN` (ESC is `\x1B`);
/// - C1 controls, bidi controls (U+202A–U+202E, U+2066–U+2069, U+200E/U+200F, U+061C), every other format
///   character (general category Cf: U+200B, U+FEFF, U+00AD, tag characters…), and the line and paragraph
///   separators U+2028/U+2029: `\u{XXXX}`;
/// - bytes that are not UTF-8 (with `displayed(utf8:)`): `\xNN` (always ≥ 0x80, so never mistaken for a C0 escape).
///
/// U+200C/U+200D (zero-width non-joiner / joiner) are kept between two non-ASCII letters, marks or symbols,
/// where Persian, Indic scripts and emoji sequences need them, and escaped anywhere else. Everything else,
/// CJK and emoji included, is shown as it is. Backslashes are not doubled, so applying the function twice
/// gives the same text as applying it once.
///
/// A name longer than `limit` characters (counted after escaping) keeps its head and tail around
/// `…[N characters left out]…`, where N counts the original characters dropped; `limit: nil` never shortens.
/// JSON output does not go through this: its escaping is already exact.
public func displayed(_ text: some StringProtocol, limit: Int? = displayLimit) -> String {
    // The common case, printable ASCII within the limit, is returned as it is without building pieces.
    let utf8 = text.utf8
    if utf8.count <= limit ?? Int.max, utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) { return String(text) }
    return render(text.unicodeScalars.lazy.map(Unit.scalar), limit: limit)
}

/// The same for raw bytes that may not be UTF-8 (a file name read from disk, a line of a list): each byte that
/// is not part of a valid UTF-8 sequence is shown as `\xNN`; the valid parts as `displayed(_:)` shows them.
public func displayed(utf8 bytes: some Sequence<UInt8>, limit: Int? = displayLimit) -> String {
    let bytes = Array(bytes)
    if let text = String(validating: bytes, as: UTF8.self) { return displayed(text, limit: limit) }
    var units: [Unit] = []
    units.reserveCapacity(bytes.count)
    var i = 0
    while i < bytes.count {
        if let (scalar, length) = decodeScalar(bytes, at: i) {
            units.append(.scalar(scalar))
            i += length
        } else {
            units.append(.byte(bytes[i]))
            i += 1
        }
    }
    return render(units, limit: limit)
}

/// Names longer than this (after escaping) are shortened in text reports and error messages.
public let displayLimit = 200

// MARK: - Implementation

/// One input character (a scalar or an undecodable byte) and how it is shown.
private struct Piece {
    var text: String
    var width: Int
}

private enum Unit {
    case scalar(Unicode.Scalar)
    case byte(UInt8)

    var scalar: Unicode.Scalar? {
        if case .scalar(let s) = self { s } else { nil }
    }
}

/// The well-formed UTF-8 scalar starting at `i` and its length in bytes (no overlong forms, no surrogates,
/// nothing above U+10FFFF), or nil.
private func decodeScalar(_ bytes: [UInt8], at i: Int) -> (Unicode.Scalar, Int)? {
    let lead = bytes[i]
    let length: Int
    var value: UInt32
    var lower: UInt8 = 0x80
    var upper: UInt8 = 0xBF
    switch lead {
    case 0x00...0x7F: return (Unicode.Scalar(lead), 1)
    case 0xC2...0xDF: length = 2; value = UInt32(lead & 0x1F)
    case 0xE0: length = 3; value = 0; lower = 0xA0
    case 0xE1...0xEC, 0xEE...0xEF: length = 3; value = UInt32(lead & 0x0F)
    case 0xED: length = 3; value = 0x0D; upper = 0x9F
    case 0xF0: length = 4; value = 0; lower = 0x90
    case 0xF1...0xF3: length = 4; value = UInt32(lead & 0x07)
    case 0xF4: length = 4; value = 4; upper = 0x8F
    default: return nil
    }
    guard i + length <= bytes.count else { return nil }
    for k in 1..<length {
        let byte = bytes[i + k]
        let (lo, hi) = k == 1 ? (lower, upper) : (UInt8(0x80), UInt8(0xBF))
        guard byte >= lo, byte <= hi else { return nil }
        value = value << 6 | UInt32(byte & 0x3F)
    }
    guard let scalar = Unicode.Scalar(value) else { return nil }
    return (scalar, length)
}

/// The units shown, keeping head and tail within `limit` when they are longer. Two passes over the units and
/// no copy of them: a 100 MB name costs time, not memory.
private func render<Units: BidirectionalCollection>(_ units: Units, limit: Int?) -> String where Units.Element == Unit {
    func pieceAt(_ i: Units.Index) -> Piece {
        switch units[i] {
        case .byte(let b):
            return Piece(text: "\\x" + hex(UInt32(b), digits: 2), width: 4)
        case .scalar(let s):
            let previous = i == units.startIndex ? nil : units[units.index(before: i)].scalar
            let after = units.index(after: i)
            let next = after == units.endIndex ? nil : units[after].scalar
            return piece(s, previous: previous, next: next)
        }
    }
    var total = 0
    var count = 0
    var i = units.startIndex
    while i != units.endIndex {
        if case .scalar(let s) = units[i], s.value >= 0x20, s.value < 0x7F { total += 1 } else { total += pieceAt(i).width }
        count += 1
        i = units.index(after: i)
    }
    guard let limit, total > limit else {
        var out = ""
        var i = units.startIndex
        while i != units.endIndex {
            out += pieceAt(i).text
            i = units.index(after: i)
        }
        return out
    }
    // The marker's length depends on the count left out; size it for the largest possible count.
    let budget = max(2, limit - marker(count).unicodeScalars.count)
    let headBudget = (budget + 1) / 2
    let tailBudget = budget - headBudget
    var front = ""
    var head = 0
    var width = 0
    var at = units.startIndex
    while at != units.endIndex {
        let p = pieceAt(at)
        guard width + p.width <= headBudget else { break }
        front += p.text
        width += p.width
        head += 1
        at = units.index(after: at)
    }
    var back: [String] = []
    var tail = 0
    width = 0
    var end = units.endIndex
    while tail < count - head {
        let before = units.index(before: end)
        let p = pieceAt(before)
        guard width + p.width <= tailBudget else { break }
        back.append(p.text)
        width += p.width
        tail += 1
        end = before
    }
    return front + marker(count - head - tail) + back.reversed().joined()
}

private func piece(_ s: Unicode.Scalar, previous: Unicode.Scalar?, next: Unicode.Scalar?) -> Piece {
    switch s.value {
    case 0x0A: return Piece(text: "\\n", width: 2)
    case 0x0D: return Piece(text: "\\r", width: 2)
    case 0x09: return Piece(text: "\\t", width: 2)
    case 0x00..<0x20, 0x7F: return Piece(text: "\\x" + hex(s.value, digits: 2), width: 4)
    case 0x20..<0x7F: return Piece(text: String(Character(s)), width: 1)
    default: break
    }
    if needsEscape(s, previous: previous, next: next) {
        let text = "\\u{" + hex(s.value, digits: 4) + "}"
        return Piece(text: text, width: text.unicodeScalars.count)
    }
    return Piece(text: String(Character(s)), width: 1)
}

/// Non-ASCII scalars that are shown escaped.
private func needsEscape(_ s: Unicode.Scalar, previous: Unicode.Scalar?, next: Unicode.Scalar?) -> Bool {
    switch s.properties.generalCategory {
    case .control, .lineSeparator, .paragraphSeparator, .surrogate:
        return true
    case .format:
        if s.value == 0x200C || s.value == 0x200D, let previous, let next {
            return !(joinable(previous) && joinable(next))
        }
        return true
    default:
        return false
    }
}

/// Whether a zero-width (non-)joiner next to this scalar is doing its job (joining script or emoji), not hiding.
private func joinable(_ s: Unicode.Scalar) -> Bool {
    guard s.value > 0x7F else { return false }
    switch s.properties.generalCategory {
    case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter,
        .nonspacingMark, .spacingMark, .enclosingMark, .otherSymbol:
        return true
    default:
        return s.properties.isEmoji
    }
}

private func hex(_ value: UInt32, digits: Int) -> String {
    let text = String(value, radix: 16, uppercase: true)
    return String(repeating: "0", count: max(0, digits - text.count)) + text
}

private func marker(_ dropped: Int) -> String { "…[\(dropped) characters left out]…" }
