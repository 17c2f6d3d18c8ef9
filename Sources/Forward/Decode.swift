import Quantization
import TensorCore

/// Stored dtypes → float32, in place from the mapped bytes (little-endian, unaligned-safe).
public enum Decode {
    public static func isFloat(_ dtype: DType) -> Bool { [.bf16, .f16, .f32, .f8e4m3].contains(dtype) }

    /// Elements `[from, from + count)` of a plain float tensor.
    public static func plain(_ view: TensorView, from: Int, count: Int, into out: UnsafeMutablePointer<Float>) {
        let base = view.bytes.baseAddress!
        switch view.dtype {
        case .bf16:
            Kernels.bf16ToFloat(base + 2 * from, count: count, into: out)
        case .f16:
            for i in 0..<count {
                out[i] = Float(Float16(bitPattern: UInt16(littleEndian: base.loadUnaligned(fromByteOffset: 2 * (from + i), as: UInt16.self))))
            }
        case .f32:
            for i in 0..<count {
                out[i] = Float(bitPattern: UInt32(littleEndian: base.loadUnaligned(fromByteOffset: 4 * (from + i), as: UInt32.self)))
            }
        case .f8e4m3:
            for i in 0..<count { out[i] = e4m3[Int(base.load(fromByteOffset: from + i, as: UInt8.self))] }
        default:
            preconditionFailure("Decode.plain: \(view.dtype) was not checked to be a float type")
        }
    }

    /// Scale element `i` of a float scale tensor.
    @inline(__always)
    static func scalar(_ view: TensorView, _ i: Int) -> Float {
        let base = view.bytes.baseAddress!
        switch view.dtype {
        case .bf16: return BFloat16Bits.toFloat(UInt16(littleEndian: base.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))
        case .f16: return Float(Float16(bitPattern: UInt16(littleEndian: base.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))))
        case .f32: return Float(bitPattern: UInt32(littleEndian: base.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)))
        case .f8e4m3: return e4m3[Int(base.load(fromByteOffset: i, as: UInt8.self))]
        default: preconditionFailure("Decode.scalar: \(view.dtype) was not checked to be a float type")
        }
    }

    /// pack-quantized rows: code `c` of a row sits in word `c / (32/bits)` at bits `bits·(c % (32/bits))`
    /// (`highFirst` reverses that order: a deliberate bug), stored as `q + 2^(bits-1)`; `w = q · scale[r, c / group]`.
    static func packed(
        codes: TensorView, scales: TensorView, rows: Range<Int>, cols: Int, group: Int, bits: Int,
        dequant: Dequantization, highFirst: Bool, into out: UnsafeMutablePointer<Float>
    ) {
        let perWord = 32 / bits
        let wordsPerRow = (cols + perWord - 1) / perWord
        let groupsPerRow = (cols + group - 1) / group
        let mask = UInt32((1 << bits) - 1)
        let offset = Float(1 << (bits - 1))
        let words = codes.bytes.baseAddress!
        // The common case (INT4, BF16 scales, whole words and groups) is the shared row dequantizer.
        let shared = bits == 4 && group % 8 == 0 && cols % 8 == 0 && !highFirst && scales.dtype == .bf16
        // Exact INT4 in whole groups: the C kernel (the same single rounding per value, chosen by CPU features).
        if shared && dequant == .exact && cols % group == 0 {
            Kernels.int4DequantRows(
                words: words, scales: scales.bytes.baseAddress!, rows: rows, cols: cols, group: group, into: out)
            return
        }
        for r in rows {
            let dst = out + (r - rows.lowerBound) * cols
            let rowWords = words + 4 * r * wordsPerRow
            if shared {
                Int4Quantizer.dequantizeRow(
                    words: UnsafeRawBufferPointer(start: rowWords, count: 4 * wordsPerRow),
                    scales: UnsafeRawBufferPointer(start: scales.bytes.baseAddress! + 2 * r * groupsPerRow, count: 2 * groupsPerRow),
                    groupSize: group, exact: dequant == .exact, into: UnsafeMutableBufferPointer(start: dst, count: cols))
                continue
            }
            for c in 0..<cols {
                let word = UInt32(littleEndian: rowWords.loadUnaligned(fromByteOffset: 4 * (c / perWord), as: UInt32.self))
                let slot = highFirst ? perWord - 1 - c % perWord : c % perWord
                let q = Float((word >> UInt32(bits * slot)) & mask) - offset
                let s = scalar(scales, r * groupsPerRow + c / group)
                let exact = q * s
                dst[c] = dequant == .exact ? exact : BFloat16Bits.toFloat(BFloat16Bits.fromFloat(exact))
            }
        }
    }

    /// FP8 E4M3 weights times their float32 block scale.
    static func fp8Block(
        weight: TensorView, scales: TensorView, rows: Range<Int>, cols: Int, blockRows: Int, blockCols: Int,
        into out: UnsafeMutablePointer<Float>
    ) {
        let base = weight.bytes.baseAddress!
        let blocksPerRow = (cols + blockCols - 1) / blockCols
        for r in rows {
            let dst = out + (r - rows.lowerBound) * cols
            for c in 0..<cols {
                let s = scalar(scales, (r / blockRows) * blocksPerRow + c / blockCols)
                dst[c] = e4m3[Int(base.load(fromByteOffset: r * cols + c, as: UInt8.self))] * s
            }
        }
    }

    /// All 256 FP8 E4M3 (fn) values: 1 sign, 4 exponent (bias 7), 3 mantissa bits; 0x7F/0xFF are NaN, no infinities.
    static let e4m3: [Float] = (0..<256).map { b in
        let sign: Float = b & 0x80 != 0 ? -1 : 1
        let exponent = (b >> 3) & 0xF, mantissa = b & 0x7
        if exponent == 0xF && mantissa == 0x7 { return .nan }
        if exponent == 0 { return sign * Float(mantissa) / 8 * Float.pow(2, -6) }
        return sign * (1 + Float(mantissa) / 8) * Float.pow(2, Float(exponent - 7))
    }
}
