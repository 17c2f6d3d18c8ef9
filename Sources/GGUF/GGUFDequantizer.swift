import Dispatch

/// ggml's block types to float32, bit for bit as gguf-py 0.19's `gguf.quants.dequantize` (which mirrors ggml's C
/// dequantizers): the same operations in the same order, each rounded to float32 (no fused multiply-add).
///
/// Layouts follow ggml-common.h's block structs; every byte pattern of a block is valid input (NaN or infinite
/// scales give NaN or infinite outputs, as in ggml).
public enum GGUFDequantizer {
    /// IEEE half bits to float, exactly as numpy converts float16 (NaN payloads kept, signalling NaNs not quieted).
    @inlinable
    public static func halfToFloat(_ h: UInt16) -> Float {
        let sign = UInt32(h & 0x8000) << 16
        let exponent = h & 0x7C00
        let mantissa = UInt32(h & 0x03FF)
        if exponent == 0x7C00 { return Float(bitPattern: sign | 0x7F80_0000 | mantissa << 13) }
        if exponent != 0 { return Float(bitPattern: sign | (UInt32(h & 0x7FFF) + 0x1_C000) << 13) }
        if mantissa == 0 { return Float(bitPattern: sign) }
        // Subnormal: normalize.
        var m = mantissa << 1
        var e: UInt32 = 0
        while m & 0x0400 == 0 {
            m <<= 1
            e += 1
        }
        return Float(bitPattern: sign | (127 - 15 - e) << 23 | (m & 0x03FF) << 13)
    }

    /// Dequantizes whole blocks of `type` from `blocks` into `output` (`blocks.count / typeSize · blockSize`
    /// floats), on up to `threads` threads.
    public static func dequantize(
        _ type: GGMLType, blocks: UnsafeRawBufferPointer, into output: UnsafeMutableBufferPointer<Float>, threads: Int = 1
    ) {
        precondition(type.canDequantize, "\(type.name) cannot be dequantized")
        precondition(blocks.count % type.typeSize == 0, "not a whole number of \(type.name) blocks")
        let count = blocks.count / type.typeSize
        precondition(output.count == count * type.blockSize, "output holds \(output.count) floats, \(count * type.blockSize) needed")
        guard count > 0, let src = blocks.baseAddress, let dst = output.baseAddress else { return }
        // Chunks of at least 64 KiB of input per thread.
        let chunk = max(1, 65_536 / type.typeSize)
        let chunks = (count + chunk - 1) / chunk
        let width = min(max(1, threads), chunks)
        if width == 1 {
            run(type, src, 0..<count, dst)
            return
        }
        let srcAddress = UInt(bitPattern: src)
        let dstAddress = UInt(bitPattern: dst)
        DispatchQueue.concurrentPerform(iterations: width) { worker in
            var c = worker
            while c < chunks {
                let range = (c * chunk)..<min(count, (c + 1) * chunk)
                run(type, UnsafeRawPointer(bitPattern: srcAddress)!, range, UnsafeMutablePointer<Float>(bitPattern: dstAddress)!)
                c += width
            }
        }
    }

    static func run(_ type: GGMLType, _ src: UnsafeRawPointer, _ blocks: Range<Int>, _ dst: UnsafeMutablePointer<Float>) {
        let ts = type.typeSize
        let bs = type.blockSize
        @inline(__always) func each(_ body: (UnsafeRawPointer, UnsafeMutablePointer<Float>) -> Void) {
            for i in blocks { body(src + i * ts, dst + i * bs) }
        }
        let t = IQTableStore.shared
        switch type {
        case .f32:
            UnsafeMutableRawPointer(dst + blocks.lowerBound).copyMemory(from: src + blocks.lowerBound * 4, byteCount: blocks.count * 4)
        case .f16:
            let table = t.halves
            let h = (src + blocks.lowerBound &* 2).assumingMemoryBound(to: UInt16.self)
            let out = dst + blocks.lowerBound
            for i in 0..<blocks.count { out[i] = table[Int(UInt16(littleEndian: h[i]))] }
        case .bf16:
            let h = (src + blocks.lowerBound &* 2).assumingMemoryBound(to: UInt16.self)
            let out = UnsafeMutableRawPointer(dst + blocks.lowerBound).assumingMemoryBound(to: UInt32.self)
            for i in 0..<blocks.count { out[i] = UInt32(UInt16(littleEndian: h[i])) &<< 16 }
        case .q4_0: each(q4_0)
        case .q4_1: each(q4_1)
        case .q5_0: each(q5_0)
        case .q5_1: each(q5_1)
        case .q8_0: each(q8_0)
        case .q2_K: each(q2_K)
        case .q3_K: each(q3_K)
        case .q4_K: each(q4_K)
        case .q5_K: each(q5_K)
        case .q6_K: each(q6_K)
        case .tq1_0: each(tq1_0)
        case .tq2_0: each(tq2_0)
        case .iq2_XXS: each { b, y in iq2_xxs(b, y, t) }
        case .iq2_XS: each { b, y in iq2_xs(b, y, t) }
        case .iq2_S: each { b, y in iq2_s(b, y, t) }
        case .iq3_XXS: each { b, y in iq3_xxs(b, y, t) }
        case .iq3_S: each { b, y in iq3_s(b, y, t) }
        case .iq1_S: each { b, y in iq1_s(b, y, t) }
        case .iq1_M: each { b, y in iq1_m(b, y, t) }
        case .iq4_NL: each { b, y in iq4_nl(b, y, t) }
        case .iq4_XS: each { b, y in iq4_xs(b, y, t) }
        case .mxfp4: each { b, y in mxfp4(b, y, t) }
        case .q8_1, .q8_K, .i8, .i16, .i32, .i64, .f64:
            preconditionFailure("\(type.name) cannot be dequantized")
        }
    }

    // MARK: - Byte access
    // Hot loops use wrapping arithmetic (`&+`, `&>>`, `truncatingIfNeeded`): every index is in range by
    // construction, and checked arithmetic would keep the compiler from vectorizing.

    @inline(__always) static func u8(_ p: UnsafeRawPointer, _ i: Int) -> UInt8 { p.load(fromByteOffset: i, as: UInt8.self) }
    @inline(__always) static func u16(_ p: UnsafeRawPointer, _ i: Int) -> UInt16 {
        UInt16(littleEndian: p.loadUnaligned(fromByteOffset: i, as: UInt16.self))
    }
    @inline(__always) static func u32(_ p: UnsafeRawPointer, _ i: Int) -> UInt32 {
        UInt32(littleEndian: p.loadUnaligned(fromByteOffset: i, as: UInt32.self))
    }
    @inline(__always) static func f16(_ p: UnsafeRawPointer, _ i: Int) -> Float { halfToFloat(u16(p, i)) }
    @inline(__always) static func bytes(_ p: UnsafeRawPointer, _ at: Int) -> UnsafePointer<UInt8> {
        (p + at).assumingMemoryBound(to: UInt8.self)
    }

    // MARK: - 32-element blocks

    // block_q4_0: d, qs[16]; element j low nibble of qs[j], j+16 high nibble.
    static func q4_0(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = f16(b, 0)
        let qs = bytes(b, 2)
        for j in 0..<16 {
            y[j] = d * Float(Int32(qs[j] & 0xF) &- 8)
            y[j &+ 16] = d * Float(Int32(qs[j] &>> 4) &- 8)
        }
    }

    // block_q4_1: d, m, qs[16]; x = d·q + m.
    static func q4_1(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = f16(b, 0)
        let m = f16(b, 2)
        let qs = bytes(b, 4)
        for j in 0..<16 {
            y[j] = d * Float(qs[j] & 0xF) + m
            y[j &+ 16] = d * Float(qs[j] &>> 4) + m
        }
    }

    // block_q5_0: d, qh (u32: bit j is element j's fifth bit), qs[16] (element j low nibble of qs[j], j+16 high
    // nibble). The fifth bit is qh tested against a constant one-bit mask per element (no per-element shift, so
    // the loop vectorizes); the integer (q − 16) times d is one float32 rounding, as the reference's
    // `d * (q - 16)`.
    static func q5_0(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = f16(b, 0)
        let qh = u32(b, 2)
        let qs = bytes(b, 6)
        for j in 0..<16 {
            // q − 16 is the nibble when the fifth bit is set, the nibble − 16 when it is clear.
            let low = Int32(qs[j] & 0xF) &- (qh & (1 &<< UInt32(truncatingIfNeeded: j)) == 0 ? 16 : 0)
            let high = Int32(qs[j] &>> 4) &- (qh & (0x1_0000 &<< UInt32(truncatingIfNeeded: j)) == 0 ? 16 : 0)
            y[j] = d * Float(low)
            y[j &+ 16] = d * Float(high)
        }
    }

    // block_q5_1: d, m, qh, qs[16]; x = d·q + m (two roundings, no fused multiply-add, as the reference).
    static func q5_1(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = f16(b, 0)
        let m = f16(b, 2)
        let qh = u32(b, 4)
        let qs = bytes(b, 8)
        for j in 0..<16 {
            let low = Int32(qs[j] & 0xF) | (qh & (1 &<< UInt32(truncatingIfNeeded: j)) == 0 ? 0 : 16)
            let high = Int32(qs[j] &>> 4) | (qh & (0x1_0000 &<< UInt32(truncatingIfNeeded: j)) == 0 ? 0 : 16)
            y[j] = d * Float(low) + m
            y[j &+ 16] = d * Float(high) + m
        }
    }

    // block_q8_0: d, qs[32] int8.
    static func q8_0(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = f16(b, 0)
        let qs = (b + 2).assumingMemoryBound(to: Int8.self)
        for j in 0..<32 { y[j] = Float(qs[j]) * d }
    }

    // MARK: - K blocks (256 elements)

    // block_q2_K: scales[16] (low nibble scale, high nibble min), qs[64], d, dmin.
    // Element e = 128·half + 32·shift + l takes bits 2·shift of qs[32·half + l]; sub-block e / 16.
    static func q2_K(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = f16(b, 80)
        let dmin = f16(b, 82)
        let scales = bytes(b, 0)
        let qs = bytes(b, 16)
        for half in 0..<2 {
            for shift in 0..<4 {
                let base = half &* 128 &+ shift &* 32
                let bits = UInt8(truncatingIfNeeded: 2 &* shift)
                for part in 0..<2 {
                    let sc = scales[(base &+ part &* 16) &>> 4]
                    let dl = d * Float(sc & 0xF)
                    let ml = dmin * Float(sc &>> 4)
                    for l in (part &* 16)..<(part &* 16 &+ 16) {
                        let q = (qs[half &* 32 &+ l] &>> bits) & 3
                        y[base &+ l] = dl * Float(q) - ml
                    }
                }
            }
        }
    }

    // block_q3_K: hmask[32], qs[64], scales[12] (6-bit, packed), d.
    static func q3_K(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = f16(b, 108)
        let hmask = bytes(b, 0)
        let qs = bytes(b, 32)
        let sc = bytes(b, 96)
        for half in 0..<2 {
            for shift in 0..<4 {
                let base = half &* 128 &+ shift &* 32
                let bits = UInt8(truncatingIfNeeded: 2 &* shift)
                let hbit = UInt8(truncatingIfNeeded: base &>> 5)
                for part in 0..<2 {
                    let s = (base &+ part &* 16) &>> 4
                    let low = s < 8 ? sc[s] & 0xF : sc[s &- 8] &>> 4
                    let high = (sc[8 &+ (s & 3)] &>> UInt8(truncatingIfNeeded: 2 &* (s &>> 2))) & 3
                    let dl = d * Float(Int32(low | high &<< 4) &- 32)
                    for l in (part &* 16)..<(part &* 16 &+ 16) {
                        let ql = Int32((qs[half &* 32 &+ l] &>> bits) & 3)
                        let h = (hmask[l] &>> hbit) & 1
                        y[base &+ l] = dl * Float(h == 0 ? ql &- 4 : ql)
                    }
                }
            }
        }
    }

    /// Q4_K / Q5_K's 6-bit scale and min of sub-block `s` (0..<8) from the 12 packed bytes at `p`.
    @inline(__always) static func scaleMin(_ p: UnsafePointer<UInt8>, _ s: Int) -> (UInt8, UInt8) {
        if s < 4 { return (p[s] & 63, p[s &+ 4] & 63) }
        let md = p[s &+ 4]
        return ((md & 0xF) | ((p[s &- 4] &>> 2) & 0x30), (md &>> 4) | ((p[s] &>> 2) & 0x30))
    }

    // block_q4_K: d, dmin, scales[12], qs[128].
    static func q4_K(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = f16(b, 0)
        let dmin = f16(b, 2)
        let scales = bytes(b, 4)
        let qs = bytes(b, 16)
        for s in 0..<8 {
            let (sc, m) = scaleMin(scales, s)
            let ds = d * Float(sc)
            let ms = dmin * Float(m)
            let shift = UInt8(truncatingIfNeeded: (s & 1) &* 4)
            let q = qs + ((s &>> 1) &* 32)
            let out = y + (s &* 32)
            for l in 0..<32 { out[l] = ds * Float((q[l] &>> shift) & 0xF) - ms }
        }
    }

    // block_q5_K: d, dmin, scales[12], qh[32], qs[128].
    static func q5_K(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = f16(b, 0)
        let dmin = f16(b, 2)
        let scales = bytes(b, 4)
        let qh = bytes(b, 16)
        let qs = bytes(b, 48)
        for s in 0..<8 {
            let (sc, m) = scaleMin(scales, s)
            let ds = d * Float(sc)
            let ms = dmin * Float(m)
            let shift = UInt8(truncatingIfNeeded: (s & 1) &* 4)
            let hbit = UInt8(truncatingIfNeeded: s)
            let q = qs + ((s &>> 1) &* 32)
            let out = y + (s &* 32)
            for l in 0..<32 {
                let ql = (q[l] &>> shift) & 0xF
                let h = (qh[l] &>> hbit) & 1
                out[l] = ds * Float(ql | h &<< 4) - ms
            }
        }
    }

    // block_q6_K: ql[128], qh[64], scales[16] int8, d. Element 128·half + r: low 4 bits from nibble r / 64 of
    // ql[64·half + r % 64], high 2 bits from bits 2·(r / 32) of qh[32·half + r % 32]; sub-block e / 16.
    static func q6_K(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = f16(b, 208)
        let scales = (b + 192).assumingMemoryBound(to: Int8.self)
        for half in 0..<2 {
            let ql = bytes(b, half &* 64)
            let qh = bytes(b, 128 &+ half &* 32)
            let out = y + (half &* 128)
            for part in 0..<2 {
                let s = half &* 8 &+ part
                let d0 = d * Float(scales[s])
                let d1 = d * Float(scales[s &+ 2])
                let d2 = d * Float(scales[s &+ 4])
                let d3 = d * Float(scales[s &+ 6])
                for l in (part &* 16)..<(part &* 16 &+ 16) {
                    let h = qh[l]
                    let a = ql[l]
                    let c = ql[l &+ 32]
                    out[l] = d0 * Float(Int32((a & 0xF) | (h & 3) &<< 4) &- 32)
                    out[l &+ 32] = d1 * Float(Int32((c & 0xF) | ((h &>> 2) & 3) &<< 4) &- 32)
                    out[l &+ 64] = d2 * Float(Int32((a &>> 4) | ((h &>> 4) & 3) &<< 4) &- 32)
                    out[l &+ 96] = d3 * Float(Int32((c &>> 4) | ((h &>> 6) & 3) &<< 4) &- 32)
                }
            }
        }
    }

    // MARK: - Ternary

    // block_tq1_0: qs[48] (5 trits per byte), qh[4] (4 trits per byte), d. Trit p of byte v:
    // ((v · 3^p mod 256) · 3) >> 8, minus 1.
    static func tq1_0(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = f16(b, 52)
        let qs = bytes(b, 0)
        @inline(__always) func trit(_ byte: UInt8, _ power: UInt8) -> Float {
            let v = byte &* power
            return Float(Int32((UInt16(v) &* 3) &>> 8) &- 1)
        }
        let powers: [UInt8] = [1, 3, 9, 27, 81]
        for p in 0..<5 {
            let power = powers[p]
            for l in 0..<32 { y[p &* 32 &+ l] = d * trit(qs[l], power) }
            for l in 0..<16 { y[160 &+ p &* 16 &+ l] = d * trit(qs[32 &+ l], power) }
            if p < 4 {
                for l in 0..<4 { y[240 &+ p &* 4 &+ l] = d * trit(qs[48 &+ l], power) }
            }
        }
    }

    // block_tq2_0: qs[64] (2 bits each), d.
    static func tq2_0(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = f16(b, 64)
        let qs = bytes(b, 0)
        for half in 0..<2 {
            for shift in 0..<4 {
                let bits = UInt8(truncatingIfNeeded: 2 &* shift)
                let out = y + (half &* 128 &+ shift &* 32)
                for l in 0..<32 { out[l] = d * Float(Int32((qs[half &* 32 &+ l] &>> bits) & 3) &- 1) }
            }
        }
    }

    // MARK: - IQ types (lattice grids). `t.signs` holds ±1 for each bit of each byte value: the reference
    // multiplies by ±1 (a NaN keeps its sign), so the products here do too.

    // block_iq2_xxs: d, qs[32] u16 read as 8 pairs of u32 (grid bytes, then signs and a 4-bit scale).
    static func iq2_xxs(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>, _ t: IQTableStore) {
        let d = f16(b, 0)
        let gridBase = t.iq2xxs
        let signBase = t.signs
        let ksigns = t.ksigns
        for g in 0..<8 {
            let aux0 = u32(b, 2 &+ 8 &* g)
            let aux1 = u32(b, 6 &+ 8 &* g)
            let db = d * (0.5 + Float(aux1 &>> 28)) * 0.25
            for k in 0..<4 {
                let grid = gridBase + (Int((aux0 &>> UInt32(truncatingIfNeeded: 8 &* k)) & 0xFF) &* 8)
                let sign = signBase + (Int(ksigns[Int((aux1 &>> UInt32(truncatingIfNeeded: 7 &* k)) & 127)]) &* 8)
                let out = y + (g &* 32 &+ k &* 8)
                for j in 0..<8 { out[j] = db * grid[j] * sign[j] }
            }
        }
    }

    /// IQ2_XS / IQ2_S scale of 16-element group `s` (nibbles of the scales bytes at `at`).
    @inline(__always) static func iq2Scale(_ b: UnsafeRawPointer, _ at: Int, _ d: Float, _ s: Int) -> Float {
        let nibble = (u8(b, at &+ s &>> 1) &>> UInt8(truncatingIfNeeded: (s & 1) &* 4)) & 0xF
        return d * (0.5 + Float(nibble)) * 0.25
    }

    // block_iq2_xs: d, qs[32] u16 (9-bit grid index, 7-bit sign index), scales[8].
    static func iq2_xs(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>, _ t: IQTableStore) {
        let d = f16(b, 0)
        let gridBase = t.iq2xs
        let signBase = t.signs
        let ksigns = t.ksigns
        for i in 0..<32 {
            let q = u16(b, 2 &+ 2 &* i)
            let db = iq2Scale(b, 66, d, i &>> 1)
            let grid = gridBase + (Int(q & 511) &* 8)
            let sign = signBase + (Int(ksigns[Int(q &>> 9)]) &* 8)
            let out = y + (i &* 8)
            for j in 0..<8 { out[j] = db * grid[j] * sign[j] }
        }
    }

    // block_iq2_s: d, qs[32] (grid low bits), signs[32], qh[8] (2 high bits each), scales[8].
    static func iq2_s(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>, _ t: IQTableStore) {
        let d = f16(b, 0)
        let gridBase = t.iq2s
        let signBase = t.signs
        for i in 0..<32 {
            let high = Int((u8(b, 66 &+ i &>> 2) &>> UInt8(truncatingIfNeeded: (i & 3) &* 2)) & 3)
            let index = Int(u8(b, 2 &+ i)) | high &<< 8
            let db = iq2Scale(b, 74, d, i &>> 1)
            let grid = gridBase + (index &* 8)
            let sign = signBase + (Int(u8(b, 34 &+ i)) &* 8)
            let out = y + (i &* 8)
            for j in 0..<8 { out[j] = db * grid[j] * sign[j] }
        }
    }

    // block_iq3_xxs: d, qs[64] (grid indices, 4 values each), then 8 u32 (signs and a 4-bit scale).
    static func iq3_xxs(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>, _ t: IQTableStore) {
        let d = f16(b, 0)
        let gridBase = t.iq3xxs
        let signBase = t.signs
        let ksigns = t.ksigns
        let qs = bytes(b, 2)
        for g in 0..<8 {
            let aux = u32(b, 66 &+ 4 &* g)
            let db = d * (0.5 + Float(aux &>> 28)) * 0.5
            for k in 0..<4 {
                let sign = signBase + (Int(ksigns[Int((aux &>> UInt32(truncatingIfNeeded: 7 &* k)) & 127)]) &* 8)
                let g0 = gridBase + (Int(qs[g &* 8 &+ k &* 2]) &* 4)
                let g1 = gridBase + (Int(qs[g &* 8 &+ k &* 2 &+ 1]) &* 4)
                let out = y + (g &* 32 &+ k &* 8)
                for j in 0..<4 { out[j] = db * g0[j] * sign[j] }
                for j in 0..<4 { out[4 &+ j] = db * g1[j] * sign[4 &+ j] }
            }
        }
    }

    // block_iq3_s: d, qs[64], qh[8] (ninth index bit), signs[32], scales[4].
    static func iq3_s(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>, _ t: IQTableStore) {
        let d = f16(b, 0)
        let gridBase = t.iq3s
        let signBase = t.signs
        let qs = bytes(b, 2)
        let qh = bytes(b, 66)
        let signs = bytes(b, 74)
        for g in 0..<8 {
            let nibble = (u8(b, 106 &+ g &>> 1) &>> UInt8(truncatingIfNeeded: (g & 1) &* 4)) & 0xF
            let db = d * Float(1 &+ 2 &* nibble)
            for k in 0..<4 {
                let sign = signBase + (Int(signs[g &* 4 &+ k]) &* 8)
                let out = y + (g &* 32 &+ k &* 8)
                for half in 0..<2 {
                    let i = g &* 8 &+ k &* 2 &+ half
                    let index = Int(qs[i]) | Int((qh[i &>> 3] &>> UInt8(truncatingIfNeeded: i & 7)) & 1) &<< 8
                    let grid = gridBase + (index &* 4)
                    for j in 0..<4 { out[half &* 4 &+ j] = db * grid[j] * sign[half &* 4 &+ j] }
                }
            }
        }
    }

    // block_iq1_s: d, qs[32] (grid low bits), qh[8] u16 (3 high bits per index, 3-bit scale, delta sign).
    static func iq1_s(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>, _ t: IQTableStore) {
        let d = f16(b, 0)
        let gridBase = t.iq1s
        for g in 0..<8 {
            let qh = u16(b, 34 &+ 2 &* g)
            let dl = d * Float(2 &* ((qh &>> 12) & 7) &+ 1)
            let delta: Float = qh & 0x8000 == 0 ? 0.125 : -0.125
            for k in 0..<4 {
                let index = Int(u8(b, 2 &+ 4 &* g &+ k)) | Int((qh &>> UInt16(truncatingIfNeeded: 3 &* k)) & 7) &<< 8
                let grid = gridBase + (index &* 8)
                let out = y + (g &* 32 &+ k &* 8)
                for j in 0..<8 { out[j] = dl * (grid[j] + delta) }
            }
        }
    }

    // block_iq1_m: qs[32], qh[16] (3 high bits + delta sign per nibble), scales[8] (3-bit scales; the f16 scale
    // in the top nibbles of the four u16).
    static func iq1_m(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>, _ t: IQTableStore) {
        let d = halfToFloat(iq1mScale(b))
        let gridBase = t.iq1s
        for i in 0..<32 {
            let pair = i &>> 1  // 16 scales: (word, shift) = (pair / 4, 3 · (pair % 4))
            let word = u16(b, 48 &+ 2 &* (pair &>> 2))
            let dl = d * Float(2 &* ((word &>> UInt16(truncatingIfNeeded: 3 &* (pair & 3))) & 7) &+ 1)
            let nibble = (u8(b, 32 &+ i &>> 1) &>> UInt8(truncatingIfNeeded: (i & 1) &* 4)) & 0xF
            let index = Int(u8(b, i)) | Int(nibble & 7) &<< 8
            let delta: Float = nibble & 8 == 0 ? 0.125 : -0.125
            let grid = gridBase + (index &* 8)
            let out = y + (i &* 8)
            for j in 0..<8 { out[j] = dl * (grid[j] + delta) }
        }
    }

    /// IQ1_M's f16 scale bits: the top nibble of each of the four u16 scale words at byte 48, lowest word first.
    @inline(__always) static func iq1mScale(_ b: UnsafeRawPointer) -> UInt16 {
        (u16(b, 48) &>> 12) | ((u16(b, 50) &>> 8) & 0x00F0) | ((u16(b, 52) &>> 4) & 0x0F00) | (u16(b, 54) & 0xF000)
    }

    // block_iq4_nl: d, qs[16] (indices into the non-linear values).
    static func iq4_nl(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>, _ t: IQTableStore) {
        let d = f16(b, 0)
        let values = t.iq4nl
        let qs = bytes(b, 2)
        for j in 0..<16 {
            y[j] = d * values[Int(qs[j] & 0xF)]
            y[j &+ 16] = d * values[Int(qs[j] &>> 4)]
        }
    }

    // block_iq4_xs: d, scales_h (u16), scales_l[4], qs[128].
    static func iq4_xs(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>, _ t: IQTableStore) {
        let d = f16(b, 0)
        let sh = u16(b, 2)
        let values = t.iq4nl
        for g in 0..<8 {
            let low = (u8(b, 4 &+ g &>> 1) &>> UInt8(truncatingIfNeeded: (g & 1) &* 4)) & 0xF
            let high = UInt8(truncatingIfNeeded: (sh &>> UInt16(truncatingIfNeeded: 2 &* g)) & 3)
            let dl = d * Float(Int32(low | high &<< 4) &- 32)
            let qs = bytes(b, 8 &+ g &* 16)
            let out = y + (g &* 32)
            for l in 0..<16 {
                out[l] = dl * values[Int(qs[l] & 0xF)]
                out[16 &+ l] = dl * values[Int(qs[l] &>> 4)]
            }
        }
    }

    // block_mxfp4: e (E8M0 exponent), qs[16] (E2M1 codes; the table holds doubled values, the scale is halved).
    static func mxfp4(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>, _ t: IQTableStore) {
        let e = UInt32(u8(b, 0))
        let d = Float(bitPattern: e < 2 ? 0x0020_0000 &<< e : (e &- 1) &<< 23)
        let values = t.mxfp4
        let qs = bytes(b, 1)
        for j in 0..<16 {
            y[j] = d * values[Int(qs[j] & 0xF)]
            y[j &+ 16] = d * values[Int(qs[j] &>> 4)]
        }
    }
}
