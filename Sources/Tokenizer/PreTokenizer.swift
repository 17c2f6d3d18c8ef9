/// The Kimi pre-tokenizer, written as a scanner over Unicode scalars (no regex engine). It finds the same
/// pieces tiktoken's fancy-regex `find_iter` finds with Kimi's pattern: at each position the eight
/// alternatives are tried in order and the first that matches wins (leftmost-first), each with the
/// backtracking a Perl-style engine gives its greedy quantifiers:
///
///     1 [\p{Han}]+
///     2 [^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]*[\p{Ll}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?
///     3 [^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]+[\p{Ll}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?
///     4 \p{N}{1,3}
///     5 ␠?[^\s\p{L}\p{N}]+[\r\n]*
///     6 \s*[\r\n]+
///     7 \s+(?!\S)
///     8 \s+
///
/// The text the scanner sees is one segment between special tokens, as in tiktoken: `(?!\S)` succeeds at the
/// segment's end.
public struct PreTokenizer: Sendable {
    let classes: CharacterClasses

    public init() { classes = CharacterClasses.shared }

    private static let cr: UInt32 = 0x0D, lf: UInt32 = 0x0A, apostrophe: UInt32 = 0x27, blank: UInt32 = 0x20

    /// The pieces of `scalars[range]` as ranges of scalar positions, in order. A scalar no alternative matches
    /// (impossible with consistent tables: every scalar is Han, a letter, a mark, a number, white space or
    /// something else) is skipped, as `find_iter` would skip it.
    public func pieces(_ scalars: UnsafeBufferPointer<UInt32>, _ range: Range<Int>, _ body: (Range<Int>) -> Void) {
        var pos = range.lowerBound
        let end = range.upperBound
        while pos < end {
            if let e = match(scalars, pos, end) {
                body(pos..<e)
                pos = e
            } else {
                pos += 1
            }
        }
    }

    /// Convenience for tests and tools: the pieces of a string.
    public func pieces(of text: String) -> [String] {
        let scalars = text.unicodeScalars.map(\.value)
        var out: [String] = []
        scalars.withUnsafeBufferPointer { buf in
            pieces(buf, 0..<buf.count) { r in
                var s = String.UnicodeScalarView()
                for v in buf[r] { s.append(Unicode.Scalar(v)!) }
                out.append(String(s))
            }
        }
        return out
    }

    @inline(__always) private func f(_ s: UnsafeBufferPointer<UInt32>, _ i: Int) -> UInt8 { classes.of(s[i]) }

    /// [^\r\n\p{L}\p{N}]
    @inline(__always) private func isPrefix(_ s: UnsafeBufferPointer<UInt32>, _ i: Int) -> Bool {
        let c = s[i]
        return c != Self.cr && c != Self.lf && f(s, i) & (CharacterClasses.letter | CharacterClasses.number) == 0
    }

    /// [^\s\p{L}\p{N}]
    @inline(__always) private func isOther(_ s: UnsafeBufferPointer<UInt32>, _ i: Int) -> Bool {
        f(s, i) & (CharacterClasses.space | CharacterClasses.letter | CharacterClasses.number) == 0
    }

    /// The end of the piece starting at `pos`, or nil when no alternative matches there.
    func match(_ s: UnsafeBufferPointer<UInt32>, _ pos: Int, _ end: Int) -> Int? {
        let first = f(s, pos)
        // 1: [\p{Han}]+
        if first & CharacterClasses.han != 0 {
            var e = pos + 1
            while e < end && f(s, e) & CharacterClasses.han != 0 { e += 1 }
            return e
        }
        // 2 and 3: the optional prefix is tried taken first, then not taken.
        let prefixed = isPrefix(s, pos)
        if prefixed, let e = upperThenLower(s, pos + 1, end) { return contraction(s, e, end) }
        if let e = upperThenLower(s, pos, end) { return contraction(s, e, end) }
        if prefixed, let e = upperRunThenLower(s, pos + 1, end) { return contraction(s, e, end) }
        if let e = upperRunThenLower(s, pos, end) { return contraction(s, e, end) }
        // 4: \p{N}{1,3}
        if first & CharacterClasses.number != 0 {
            var e = pos + 1
            while e < end && e < pos + 3 && f(s, e) & CharacterClasses.number != 0 { e += 1 }
            return e
        }
        // 5: ␠?[^\s\p{L}\p{N}]+[\r\n]*
        var st = -1
        if s[pos] == Self.blank && pos + 1 < end && isOther(s, pos + 1) {
            st = pos + 1
        } else if isOther(s, pos) {
            st = pos
        }
        if st >= 0 {
            var e = st + 1
            while e < end && isOther(s, e) { e += 1 }
            while e < end && (s[e] == Self.cr || s[e] == Self.lf) { e += 1 }
            return e
        }
        guard first & CharacterClasses.space != 0 else { return nil }
        var w = pos + 1
        while w < end && f(s, w) & CharacterClasses.space != 0 { w += 1 }
        // 6: \s*[\r\n]+ — \s* gives back until a CR or LF follows; [\r\n]+ then ends at the run's next non-CR/LF.
        var j = w - 1
        while j >= pos {
            if s[j] == Self.cr || s[j] == Self.lf { return j + 1 }
            j -= 1
        }
        // 7: \s+(?!\S) — the whole run at the segment's end, else the run less its last scalar.
        if w == end { return w }
        if w - pos >= 2 { return w - 1 }
        // 8: \s+
        return w
    }

    /// U*W+ from `st` (U = upper class, W = lower class): the U run greedy, giving back scalars until one in W
    /// stands at the boundary; W+ then runs on (only when nothing was given back can it run past one scalar).
    private func upperThenLower(_ s: UnsafeBufferPointer<UInt32>, _ st: Int, _ end: Int) -> Int? {
        var u = st
        while u < end && f(s, u) & CharacterClasses.upper != 0 { u += 1 }
        if u < end && f(s, u) & CharacterClasses.lower != 0 {
            var e = u + 1
            while e < end && f(s, e) & CharacterClasses.lower != 0 { e += 1 }
            return e
        }
        var k = u - 1
        while k >= st {
            if f(s, k) & CharacterClasses.lower != 0 { return k + 1 }
            k -= 1
        }
        return nil
    }

    /// U+W* from `st`.
    private func upperRunThenLower(_ s: UnsafeBufferPointer<UInt32>, _ st: Int, _ end: Int) -> Int? {
        var u = st
        while u < end && f(s, u) & CharacterClasses.upper != 0 { u += 1 }
        guard u > st else { return nil }
        while u < end && f(s, u) & CharacterClasses.lower != 0 { u += 1 }
        return u
    }

    /// (?i:'s|'t|'re|'ve|'m|'ll|'d)? after `e`.
    private func contraction(_ s: UnsafeBufferPointer<UInt32>, _ e: Int, _ end: Int) -> Int {
        guard e + 1 < end, s[e] == Self.apostrophe else { return e }
        let a = s[e + 1]
        // Letter indices in CharacterClasses.foldLetters: s t r e v m l d.
        if classes.folds(a, to: 0) || classes.folds(a, to: 1) { return e + 2 }
        if e + 2 < end {
            let b = s[e + 2]
            if classes.folds(a, to: 2) && classes.folds(b, to: 3) { return e + 3 }
            if classes.folds(a, to: 4) && classes.folds(b, to: 3) { return e + 3 }
        }
        if classes.folds(a, to: 5) { return e + 2 }
        if e + 2 < end && classes.folds(a, to: 6) && classes.folds(s[e + 2], to: 6) { return e + 3 }
        if classes.folds(a, to: 7) { return e + 2 }
        return e
    }
}
