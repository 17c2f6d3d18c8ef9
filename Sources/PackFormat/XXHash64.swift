/// Streaming xxHash64: the per-tensor checksum of the k2pack format (fast enough to run at memory speed).
public struct XXHash64 {
    static let p1: UInt64 = 11_400_714_785_074_694_791
    static let p2: UInt64 = 14_029_467_366_897_019_727
    static let p3: UInt64 = 1_609_587_929_392_839_161
    static let p4: UInt64 = 9_650_029_242_287_828_579
    static let p5: UInt64 = 2_870_177_450_012_600_261

    private var v1, v2, v3, v4: UInt64
    private let seed: UInt64
    private var total = 0
    private var buffer: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
    private var buffered = 0

    public init(seed: UInt64 = 0) {
        self.seed = seed
        v1 = seed &+ Self.p1 &+ Self.p2
        v2 = seed &+ Self.p2
        v3 = seed
        v4 = seed &- Self.p1
    }

    @inline(__always) static func rotl(_ x: UInt64, _ r: UInt64) -> UInt64 { (x << r) | (x >> (64 - r)) }
    @inline(__always) static func round(_ acc: UInt64, _ input: UInt64) -> UInt64 {
        rotl(acc &+ input &* p2, 31) &* p1
    }
    @inline(__always) static func merge(_ acc: UInt64, _ value: UInt64) -> UInt64 {
        (acc ^ round(0, value)) &* p1 &+ p4
    }

    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        total += bytes.count
        var offset = 0
        // Top up a partial 32-byte stripe first.
        if buffered > 0 {
            withUnsafeMutableBytes(of: &buffer) { stripe in
                let take = min(32 - buffered, bytes.count)
                stripe.baseAddress!.advanced(by: buffered).copyMemory(from: bytes.baseAddress!, byteCount: take)
                buffered += take
                offset = take
            }
            guard buffered == 32 else { return }
            withUnsafeBytes(of: buffer) { consume($0, count: 32) }
            buffered = 0
        }
        let whole = (bytes.count - offset) / 32 * 32
        if whole > 0 { consume(UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + whole)]), count: whole) }
        offset += whole
        if offset < bytes.count {
            withUnsafeMutableBytes(of: &buffer) { stripe in
                stripe.baseAddress!.copyMemory(from: bytes.baseAddress! + offset, byteCount: bytes.count - offset)
            }
            buffered = bytes.count - offset
        }
    }

    private mutating func consume(_ bytes: UnsafeRawBufferPointer, count: Int) {
        var a = v1, b = v2, c = v3, d = v4
        var p = 0
        while p < count {
            a = Self.round(a, UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: p, as: UInt64.self)))
            b = Self.round(b, UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: p + 8, as: UInt64.self)))
            c = Self.round(c, UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: p + 16, as: UInt64.self)))
            d = Self.round(d, UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: p + 24, as: UInt64.self)))
            p += 32
        }
        v1 = a; v2 = b; v3 = c; v4 = d
    }

    public func finalize() -> UInt64 {
        var h: UInt64
        if total >= 32 {
            h = Self.rotl(v1, 1) &+ Self.rotl(v2, 7) &+ Self.rotl(v3, 12) &+ Self.rotl(v4, 18)
            h = Self.merge(h, v1)
            h = Self.merge(h, v2)
            h = Self.merge(h, v3)
            h = Self.merge(h, v4)
        } else {
            h = seed &+ Self.p5
        }
        h &+= UInt64(total)
        withUnsafeBytes(of: buffer) { tail in
            var p = 0
            while p + 8 <= buffered {
                h ^= Self.round(0, UInt64(littleEndian: tail.loadUnaligned(fromByteOffset: p, as: UInt64.self)))
                h = Self.rotl(h, 27) &* Self.p1 &+ Self.p4
                p += 8
            }
            if p + 4 <= buffered {
                h ^= UInt64(UInt32(littleEndian: tail.loadUnaligned(fromByteOffset: p, as: UInt32.self))) &* Self.p1
                h = Self.rotl(h, 23) &* Self.p2 &+ Self.p3
                p += 4
            }
            while p < buffered {
                h ^= UInt64(tail[p]) &* Self.p5
                h = Self.rotl(h, 11) &* Self.p1
                p += 1
            }
        }
        h ^= h >> 33
        h &*= Self.p2
        h ^= h >> 29
        h &*= Self.p3
        h ^= h >> 32
        return h
    }

    public static func hash(_ bytes: UnsafeRawBufferPointer, seed: UInt64 = 0) -> UInt64 {
        var h = XXHash64(seed: seed)
        h.update(bytes)
        return h.finalize()
    }

    /// 16 lowercase hex digits.
    public static func hex(_ value: UInt64) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }
}
