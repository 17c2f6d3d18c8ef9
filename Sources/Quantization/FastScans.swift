import TensorCore

/// Word-at-a-time scans of raw tensor bytes. Loads are unaligned: a hostile header can place data anywhere.
public enum FastScan {
    /// Occurrences of each byte value (four interleaved tables break the increment dependency chain).
    public static func byteHistogram(_ bytes: UnsafeRawBufferPointer, into counts: inout [Int]) {
        precondition(counts.count == 256, "byteHistogram needs 256 counters")
        var t0 = [UInt32](repeating: 0, count: 256), t1 = t0, t2 = t0, t3 = t0
        let n = bytes.count
        var i = 0
        // Flush the 32-bit tables before they can overflow.
        while i < n {
            let end = min(n, i + (1 << 30))
            let words = (end - i) / 8
            t0.withUnsafeMutableBufferPointer { a in
                t1.withUnsafeMutableBufferPointer { b in
                    t2.withUnsafeMutableBufferPointer { c in
                        t3.withUnsafeMutableBufferPointer { d in
                            var p = i
                            for _ in 0..<words {
                                let w = bytes.loadUnaligned(fromByteOffset: p, as: UInt64.self)
                                a[Int(w & 0xFF)] &+= 1
                                b[Int((w >> 8) & 0xFF)] &+= 1
                                c[Int((w >> 16) & 0xFF)] &+= 1
                                d[Int((w >> 24) & 0xFF)] &+= 1
                                a[Int((w >> 32) & 0xFF)] &+= 1
                                b[Int((w >> 40) & 0xFF)] &+= 1
                                c[Int((w >> 48) & 0xFF)] &+= 1
                                d[Int(w >> 56)] &+= 1
                                p += 8
                            }
                            while p < end {
                                a[Int(bytes[p])] &+= 1
                                p += 1
                            }
                        }
                    }
                }
            }
            for v in 0..<256 {
                counts[v] += Int(t0[v]) + Int(t1[v]) + Int(t2[v]) + Int(t3[v])
                t0[v] = 0; t1[v] = 0; t2[v] = 0; t3[v] = 0
            }
            i = end
        }
    }

    /// Counts 16-bit lanes whose bits under `mask` are all set (BF16/F16 NaN or Inf), and the first one.
    public static func countAllOnes16(_ bytes: UnsafeRawBufferPointer, mask: UInt16) -> (count: Int, first: Int?) {
        let lanes = bytes.count / 2
        let m = UInt64(mask) * 0x0001_0001_0001_0001
        let ones: UInt64 = 0x0001_0001_0001_0001
        let highs: UInt64 = 0x8000_8000_8000_8000
        var count = 0
        var first: Int?
        var lane = 0
        while lane + 4 <= lanes {
            let w = bytes.loadUnaligned(fromByteOffset: lane * 2, as: UInt64.self)
            // A lane of y is zero exactly when all its `mask` bits are set; mask never has bit 15.
            let y = (w & m) ^ m
            if (y &- ones) & ~y & highs != 0 {
                for k in 0..<4 where (w >> UInt64(16 * k)) & UInt64(mask) == UInt64(mask) {
                    count += 1
                    if first == nil { first = lane + k }
                }
            }
            lane += 4
        }
        while lane < lanes {
            if bytes.loadUnaligned(fromByteOffset: lane * 2, as: UInt16.self) & mask == mask {
                count += 1
                if first == nil { first = lane }
            }
            lane += 1
        }
        return (count, first)
    }
}
