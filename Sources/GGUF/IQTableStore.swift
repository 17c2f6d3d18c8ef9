/// The IQ tables of `IQTables.swift` (generated hex text), decoded once into float lookup tables.
/// The grids hold small integers, so the float values are exact.
final class IQTableStore: @unchecked Sendable {
    static let shared = IQTableStore()

    /// Names in the generator's order: the order `tableBytes` concatenates (and its SHA-256 covers).
    static let names = ["iq2xxsGrid", "iq2xsGrid", "iq2sGrid", "iq3xxsGrid", "iq3sGrid", "iq1sGrid", "ksigns", "iq4nlValues", "mxfp4Values"]

    let iq2xxs: UnsafePointer<Float>
    let iq2xs: UnsafePointer<Float>
    let iq2s: UnsafePointer<Float>
    let iq3xxs: UnsafePointer<Float>
    let iq3s: UnsafePointer<Float>
    let iq1s: UnsafePointer<Float>
    let ksigns: UnsafePointer<UInt8>
    let iq4nl: UnsafePointer<Float>
    let mxfp4: UnsafePointer<Float>
    /// ±1 for bit j of byte value v at `v · 8 + j` (−1 where the bit is set).
    let signs: UnsafePointer<Float>
    /// Every f16 bit pattern's float value (`GGUFDequantizer.halfToFloat`), 65,536 entries.
    let halves: UnsafePointer<Float>

    private init() {
        func floats(_ text: String) -> UnsafePointer<Float> {
            let bytes = Self.decode(text)
            let p = UnsafeMutablePointer<Float>.allocate(capacity: bytes.count)
            for (i, b) in bytes.enumerated() { p[i] = Float(Int8(bitPattern: b)) }
            return UnsafePointer(p)  // lives for the process
        }
        iq2xxs = floats(IQTableText.iq2xxsGrid)
        iq2xs = floats(IQTableText.iq2xsGrid)
        iq2s = floats(IQTableText.iq2sGrid)
        iq3xxs = floats(IQTableText.iq3xxsGrid)
        iq3s = floats(IQTableText.iq3sGrid)
        iq1s = floats(IQTableText.iq1sGrid)
        iq4nl = floats(IQTableText.iq4nlValues)
        mxfp4 = floats(IQTableText.mxfp4Values)
        let ksignBytes = Self.decode(IQTableText.ksigns)
        let s = UnsafeMutablePointer<UInt8>.allocate(capacity: ksignBytes.count)
        s.initialize(from: ksignBytes, count: ksignBytes.count)
        ksigns = UnsafePointer(s)
        let sign = UnsafeMutablePointer<Float>.allocate(capacity: 256 * 8)
        for v in 0..<256 {
            for j in 0..<8 { sign[v * 8 + j] = (v >> j) & 1 == 0 ? 1 : -1 }
        }
        signs = UnsafePointer(sign)
        let half = UnsafeMutablePointer<Float>.allocate(capacity: 65_536)
        for h in 0..<65_536 { half[h] = GGUFDequantizer.halfToFloat(UInt16(h)) }
        halves = UnsafePointer(half)
    }

    /// Hex text (whitespace ignored) → bytes. The text is generated; a bad digit is a programming error.
    static func decode(_ text: String) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(text.utf8.count / 2)
        var high: UInt8?
        for c in text.utf8 {
            let v: UInt8
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): v = c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): v = c - UInt8(ascii: "a") + 10
            case UInt8(ascii: " "), UInt8(ascii: "\n"): continue
            default: preconditionFailure("IQTables.swift holds a non-hex character")
            }
            if let h = high {
                out.append(h << 4 | v)
                high = nil
            } else {
                high = v
            }
        }
        return out
    }

    /// Every table's bytes in the generator's order (what `Fixtures/gguf/dequant.gguf` records the SHA-256 of).
    static func tableBytes() -> [UInt8] {
        [IQTableText.iq2xxsGrid, IQTableText.iq2xsGrid, IQTableText.iq2sGrid, IQTableText.iq3xxsGrid, IQTableText.iq3sGrid,
         IQTableText.iq1sGrid, IQTableText.ksigns, IQTableText.iq4nlValues, IQTableText.mxfp4Values].flatMap(decode)
    }
}

extension GGUFDequantizer {
    /// The bytes of the generated IQ tables, in the generator's order (for the table hash test).
    public static var iqTableBytes: [UInt8] { IQTableStore.tableBytes() }
}
