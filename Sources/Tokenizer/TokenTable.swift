/// The mergeable ranks: every token's bytes in one buffer (rank order) and an open-addressing hash table from
/// bytes to rank, so a lookup of a slice of a piece allocates nothing.
public struct TokenTable: Sendable {
    /// Token bytes, concatenated in rank order.
    let storage: [UInt8]
    /// `offsets[r] ..< offsets[r + 1]` are rank r's bytes.
    let offsets: [Int]
    /// Ranks by hash slot; -1 marks an empty slot. The count is a power of two at least twice the tokens.
    let slots: [Int32]
    let mask: Int

    public var count: Int { offsets.count - 1 }

    /// Builds the table from bytes and offsets already validated (no duplicates) by the reader.
    init(storage: [UInt8], offsets: [Int]) {
        self.storage = storage
        self.offsets = offsets
        let n = offsets.count - 1
        var size = 16
        while size < 2 * n { size <<= 1 }
        var slots = [Int32](repeating: -1, count: size)
        let mask = size - 1
        storage.withUnsafeBufferPointer { buf in
            for r in 0..<n {
                var h = Self.hash(buf.baseAddress! + offsets[r], offsets[r + 1] - offsets[r]) & mask
                while slots[h] >= 0 { h = (h + 1) & mask }
                slots[h] = Int32(r)
            }
        }
        self.slots = slots
        self.mask = mask
    }

    /// A per-process key for the hash: `tiktoken.model` is untrusted, and with a fixed hash a file of colliding
    /// tokens would make building (and every lookup) quadratic. Only slot order depends on it, never a result.
    static let key = UInt64.random(in: 0 ... .max)

    @inline(__always) static func hash(_ p: UnsafePointer<UInt8>, _ count: Int) -> Int {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325 ^ key
        for i in 0..<count {
            h = (h ^ UInt64(p[i])) &* 0x0000_0100_0000_01b3
        }
        h ^= key &* 0x9E37_79B9_7F4A_7C15
        h = (h ^ (h >> 31)) &* 0xBF58_476D_1CE4_E5B9
        return Int(truncatingIfNeeded: h ^ (h >> 29))
    }

    /// The rank of `count` bytes at `p`, or nil when they are not a token.
    @inline(__always) func rank(_ p: UnsafePointer<UInt8>, _ count: Int) -> Int? {
        storage.withUnsafeBufferPointer { buf in
            var h = Self.hash(p, count) & mask
            while true {
                let r = Int(slots[h])
                if r < 0 { return nil }
                let a = offsets[r], b = offsets[r + 1]
                if b - a == count && (count == 0 || memcmpEqual(buf.baseAddress! + a, p, count)) { return r }
                h = (h + 1) & mask
            }
        }
    }

    /// The bytes of rank `r`.
    func bytes(of r: Int) -> ArraySlice<UInt8> { storage[offsets[r]..<offsets[r + 1]] }
}

@inline(__always) private func memcmpEqual(_ a: UnsafePointer<UInt8>, _ b: UnsafePointer<UInt8>, _ n: Int) -> Bool {
    for i in 0..<n where a[i] != b[i] { return false }
    return true
}

extension TokenTable {
    /// The first pair of ranks (lower, higher) holding the same bytes, if any.
    func firstDuplicate() -> (Int, Int)? {
        storage.withUnsafeBufferPointer { buf -> (Int, Int)? in
            var found: (Int, Int)?
            for r in 0..<count {
                let a = offsets[r], len = offsets[r + 1] - a
                if let other = rank(buf.baseAddress! + a, len), other != r {
                    let pair = (min(other, r), max(other, r))
                    if found == nil || pair.1 < found!.1 { found = pair }
                }
            }
            return found
        }
    }
}
