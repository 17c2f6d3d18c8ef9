import JSONCore
import Testing

/// `ByteName` equality and hashing compare the UTF-8 bytes (eight at a time); every length and every position
/// of a difference must count, and canonically equivalent spellings stay two names.
@Suite("ByteName equality on the bytes")
struct ByteNameEqualityTests {
    @Test("names of every length from 0 to 40 equal themselves and differ from a copy changed at any one byte")
    func everyPosition() {
        for n in 0...40 {
            let base = (0..<n).map { Character(UnicodeScalar(UInt8(ascii: "a") + UInt8($0 % 26))) }
            let name = ByteName(String(base))
            #expect(name == ByteName(String(base)))
            #expect(name.hashValue == ByteName(String(base)).hashValue)
            for i in 0..<n {
                var changed = base
                changed[i] = "#"
                #expect(name != ByteName(String(changed)), "length \(n), byte \(i)")
            }
            #expect(name != ByteName(String(base) + "x"))
        }
    }

    @Test("NFC and NFD spellings are two names; in a set and as dictionary keys too")
    func normalization() {
        let nfc = ByteName("caf\u{E9}.weight"), nfd = ByteName("cafe\u{301}.weight")
        #expect(nfc != nfd)
        #expect(Set([nfc, nfd]).count == 2)
        let table = [nfc: 1, nfd: 2]
        #expect(table[ByteName("caf\u{E9}.weight")] == 1 && table[ByteName("cafe\u{301}.weight")] == 2)
    }

    @Test("a name from a substring (shared storage) compares and hashes like the same name built alone")
    func substrings() {
        let long = "language_model.model.layers.7.mlp.experts.12.down_proj.weight_packed"
        let cut = ByteName(String(long.dropFirst(15)))
        let alone = ByteName("model.layers.7.mlp.experts.12.down_proj.weight_packed")
        #expect(cut == alone && cut.hashValue == alone.hashValue)
    }
}
