import Foundation

/// A Python `re.match` pattern (anchored at the start, not the end), as compressed-tensors uses in `ignore` and
/// `targets`. Patterns made only of literals, `\`-escaped punctuation, one group of literal alternatives and
/// `.*` at the ends are matched exactly as substring or prefix tests; anything else goes to NSRegularExpression.
final class PythonPattern: Sendable {
    private enum Kind {
        /// `.*` + alternatives (+ optional `.*`): the name contains one of the literals.
        case contains([String])
        /// alternatives (+ optional `.*`): the name starts with one of the literals.
        case prefix([String])
        case regex(NSRegularExpression)
        case invalid
    }

    private let kind: Kind

    init(_ pattern: String) {
        if let literal = Self.literalForm(pattern) {
            kind = literal
        } else if Self.hasNestedQuantifier(pattern) {
            // `(a*)*` and the like backtrack exponentially; ICU offers no time limit through Foundation.
            kind = .invalid
        } else if let regex = try? NSRegularExpression(pattern: pattern) {
            kind = .regex(regex)
        } else {
            kind = .invalid
        }
    }

    var isValid: Bool {
        if case .invalid = kind { return false }
        return true
    }

    /// Whether the pattern answers alike for texts that differ only in their runs of ASCII digits (each run
    /// replaced by another non-empty run): true for a substring or prefix test of literals holding no digit (such a
    /// literal, found in a text, lies within one digit-free run, and those runs are the texts' common part), and
    /// for an invalid pattern (it matches nothing); false for a regular expression.
    var ignoresDigitRuns: Bool {
        func digitFree(_ literals: [String]) -> Bool {
            literals.allSatisfy { !$0.utf8.contains { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") } }
        }
        switch kind {
        case .contains(let literals), .prefix(let literals): return digitFree(literals)
        case .regex: return false
        case .invalid: return true
        }
    }

    func matches(_ text: String) -> Bool {
        switch kind {
        case .contains(let literals): return literals.contains { Self.bytes(of: text, contain: $0) }
        case .prefix(let literals): return literals.contains { text.utf8.starts(with: $0.utf8) }
        case .regex(let regex):
            return regex.firstMatch(in: text, options: [.anchored], range: NSRange(text.startIndex..., in: text)) != nil
        case .invalid: return false
        }
    }

    /// Whether a quantified group contains a quantifier: the shape of catastrophic backtracking.
    static func hasNestedQuantifier(_ pattern: String) -> Bool {
        var groupHasQuantifier: [Bool] = []
        var closedWithQuantifier = false
        var chars = Array(pattern)[...]
        while let c = chars.popFirst() {
            switch c {
            case "\\": _ = chars.popFirst()
            case "(": groupHasQuantifier.append(false)
            case ")":
                closedWithQuantifier = groupHasQuantifier.popLast() ?? false
                if closedWithQuantifier, let next = chars.first, "*+{".contains(next) { return true }
                if closedWithQuantifier, !groupHasQuantifier.isEmpty { groupHasQuantifier[groupHasQuantifier.count - 1] = true }
            case "*", "+", "{":
                if !groupHasQuantifier.isEmpty { groupHasQuantifier[groupHasQuantifier.count - 1] = true }
            default: break
            }
        }
        return false
    }

    /// Substring test on UTF-8 bytes (Foundation's `contains` goes through locale-aware search).
    private static func bytes(of text: String, contain literal: String) -> Bool {
        var text = text
        var literal = literal
        return text.withUTF8 { t in
            literal.withUTF8 { l in
                guard !l.isEmpty else { return true }
                guard t.count >= l.count, let tb = t.baseAddress, let lb = l.baseAddress else { return false }
                // The first byte found by the C library's (vectorized) `memchr`, the rest compared by `memcmp`: a K2.5
                // config runs its ignore patterns over 69,120 expert modules.
                var start = 0
                let last = t.count - l.count
                while start <= last, let hit = memchr(tb + start, Int32(l[0]), last - start + 1) {
                    let at = UnsafeRawPointer(hit) - UnsafeRawPointer(tb)
                    if memcmp(tb + at, lb, l.count) == 0 { return true }
                    start = at + 1
                }
                return false
            }
        }
    }

    private static func literalForm(_ pattern: String) -> Kind? {
        var body = Substring(pattern)
        let leadingAny = body.hasPrefix(".*")
        if leadingAny { body = body.dropFirst(2) }
        // re.match needs only a prefix to match, so a trailing `.*` changes nothing.
        if body.hasSuffix(".*"), !body.hasSuffix("\\.*") { body = body.dropLast(2) }
        guard let literals = expand(body) else { return nil }
        return leadingAny ? .contains(literals) : .prefix(literals)
    }

    /// Expands literal text with at most one `(a|b|c)` group of literals; nil if anything else appears.
    private static func expand(_ body: Substring) -> [String]? {
        var prefix = ""
        var alternatives: [String]?
        var suffix = ""
        var current = ""
        var inGroup = false
        var groupItems: [String] = []
        var i = body.startIndex
        while i < body.endIndex {
            let c = body[i]
            switch c {
            case "\\":
                let next = body.index(after: i)
                guard next < body.endIndex, body[next].isPunctuation || body[next].isSymbol else { return nil }
                current.append(body[next])
                i = body.index(after: next)
                continue
            case "(":
                guard !inGroup, alternatives == nil else { return nil }
                prefix = current
                current = ""
                inGroup = true
            case "|":
                guard inGroup else { return nil }
                groupItems.append(current)
                current = ""
            case ")":
                guard inGroup else { return nil }
                groupItems.append(current)
                alternatives = groupItems
                current = ""
                inGroup = false
            case ".", "*", "+", "?", "[", "]", "{", "}", "^", "$":
                return nil
            default:
                current.append(c)
            }
            i = body.index(after: i)
        }
        guard !inGroup else { return nil }
        guard let alternatives else { return [current] }
        suffix = current
        return alternatives.map { prefix + $0 + suffix }
    }
}
