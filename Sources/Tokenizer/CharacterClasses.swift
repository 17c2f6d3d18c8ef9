/// Per-scalar classes of the Kimi pre-tokenizer, from the generated tables (`UnicodeTables`, probed from
/// tiktoken's own regex engine), folded into the few sets the scanner asks about.
struct CharacterClasses: Sendable {
    /// [\p{Han}]
    static let han: UInt8 = 1 << 0
    /// [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]
    static let upper: UInt8 = 1 << 1
    /// [\p{Ll}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]
    static let lower: UInt8 = 1 << 2
    /// \p{L}
    static let letter: UInt8 = 1 << 3
    /// \p{N}
    static let number: UInt8 = 1 << 4
    /// \s (White_Space, as the regex engine has it)
    static let space: UInt8 = 1 << 5
    /// Python's str.isspace (the 25,000-character run split)
    static let pythonSpace: UInt8 = 1 << 6

    /// One byte of flags per scalar value 0...0x10FFFF (surrogates: none).
    let flags: [UInt8]
    /// For each scalar a contraction letter matches case-insensitively, the bit of that letter in `foldLetters`.
    let folds: [UInt32: UInt8]
    static let foldLetters: [Character] = ["s", "t", "r", "e", "v", "m", "l", "d"]

    static let shared = CharacterClasses()

    private init() {
        let text = Array(UnicodeTables.runs.utf8.filter { $0 != UInt8(ascii: "\n") })
        var starts: [Int] = []
        var values: [UInt16] = []
        var i = 0
        while i + 10 <= text.count {
            starts.append(Self.hex(text[i..<i + 6]))
            values.append(UInt16(Self.hex(text[i + 6..<i + 10])))
            i += 10
        }
        var flags = [UInt8](repeating: 0, count: 0x110000)
        for (n, start) in starts.enumerated() {
            let end = n + 1 < starts.count ? starts[n + 1] : 0x110000
            let f = Self.derived(values[n])
            if f != 0 && start < end && end <= 0x110000 { for c in start..<end { flags[c] = f } }
        }
        self.flags = flags
        var folds: [UInt32: UInt8] = [:]
        for entry in UnicodeTables.folds.split(separator: ";") {
            let parts = entry.split(separator: ":")
            guard parts.count == 2, let letter = parts[0].first,
                  let bit = Self.foldLetters.firstIndex(of: letter) else { continue }
            for h in parts[1].split(separator: ",") {
                if let v = UInt32(h, radix: 16) { folds[v, default: 0] |= UInt8(1) << UInt8(bit) }
            }
        }
        self.folds = folds
    }

    /// The scanner's flags from one generated entry (bit order: han, lu, ll, lt, lm, lo, m, n, space, pyspace).
    private static func derived(_ r: UInt16) -> UInt8 {
        let han = r & 1 != 0
        let lu = r & 2 != 0, ll = r & 4 != 0, lt = r & 8 != 0, lm = r & 16 != 0, lo = r & 32 != 0
        let mark = r & 64 != 0
        var f: UInt8 = 0
        if han { f |= Self.han }
        if !han && (lu || lt || lm || lo || mark) { f |= Self.upper }
        if !han && (ll || lm || lo || mark) { f |= Self.lower }
        if lu || ll || lt || lm || lo { f |= Self.letter }
        if r & 128 != 0 { f |= Self.number }
        if r & 256 != 0 { f |= Self.space }
        if r & 512 != 0 { f |= Self.pythonSpace }
        return f
    }

    private static func hex(_ digits: ArraySlice<UInt8>) -> Int {
        var v = 0
        for d in digits {
            let x: Int
            switch d {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): x = Int(d) - 48
            case UInt8(ascii: "A")...UInt8(ascii: "F"): x = Int(d) - 55
            default: x = 0
            }
            v = v * 16 + x
        }
        return v
    }

    @inline(__always) func of(_ scalar: UInt32) -> UInt8 {
        scalar < 0x110000 ? flags[Int(scalar)] : 0
    }

    /// Whether `scalar` matches contraction letter `letter` (an index into `foldLetters`) under (?i).
    @inline(__always) func folds(_ scalar: UInt32, to letter: Int) -> Bool {
        guard let bits = folds[scalar] else { return false }
        return bits & (UInt8(1) << UInt8(letter)) != 0
    }
}
