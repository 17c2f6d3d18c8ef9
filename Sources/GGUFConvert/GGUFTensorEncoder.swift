import Checkpoint
import FileIO
import GGUF
import Quantization
import TensorCore

/// Writes each planned tensor's bytes into a `GGUFStreamWriter`, piece by piece: a mapped source is read in
/// pieces that are dropped from the process once written, converted pieces are built directly in the writer's
/// buffer, and nothing is ever held whole but `kv_b_proj` (one layer's, a few tens of MB) for the per-head split.
struct GGUFTensorEncoder {
    let writer: GGUFStreamWriter
    let allowInexactScales: Bool
    /// Scales rounded to F16 under `allowInexactScales`.
    private(set) var inexactScales = 0

    init(writer: GGUFStreamWriter, allowInexactScales: Bool) {
        self.writer = writer
        self.allowInexactScales = allowInexactScales
    }

    mutating func write(_ tensor: GGUFPlannedTensor) throws(GGUFConvertError) {
        let type = tensor.descriptor.type
        switch tensor.source {
        case let .converted(source):
            try writeConverted(source, type: type, name: tensor.descriptor.name)
        case let .keyHalf(source, split):
            // attn_k_b[h][c][d] = kv_b[h·(nope+v) + d][c]: ne {nope, kv_lora, heads}.
            let kv = try floats(of: source)
            var out = [Float](repeating: 0, count: split.heads * split.kvLora * split.nope)
            for h in 0..<split.heads {
                for c in 0..<split.kvLora {
                    for d in 0..<split.nope {
                        out[(h * split.kvLora + c) * split.nope + d] = kv[(h * (split.nope + split.v) + d) * split.kvLora + c]
                    }
                }
            }
            try writeFloats(out, type: type)
        case let .valueHalf(source, split):
            // attn_v_b[h][d][c] = kv_b[h·(nope+v) + nope + d][c]: ne {kv_lora, v, heads}.
            let kv = try floats(of: source)
            var out: [Float] = []
            out.reserveCapacity(split.heads * split.v * split.kvLora)
            for h in 0..<split.heads {
                let start = (h * (split.nope + split.v) + split.nope) * split.kvLora
                out += kv[start..<(start + split.v * split.kvLora)]
            }
            try writeFloats(out, type: type)
        case let .ropeSplitQK(source, heads):
            let shape = source.entry.shape
            let columns = shape.count == 2 ? shape[1] : 1
            let values = try floats(of: source)
            try writeFloats(GGUFMmproj.ropeSplitQK(values, rows: shape[0], columns: columns, heads: heads), type: type)
        case let .int4(modules):
            for (i, module) in modules.enumerated() {
                // The next expert is read ahead while this one is moved.
                if i + 1 < modules.count {
                    modules[i + 1].packed.willRead()
                    modules[i + 1].scale.willRead()
                }
                try writeQ4_0(module, name: tensor.descriptor.name)
            }
        }
    }

    // MARK: - Plain tensors

    /// Elements converted at once: the writer's buffer holds them at 4 bytes each, a whole number of 32-blocks.
    private var chunkElements: Int { writer.capacity / 4 / 32 * 32 }

    private func writeConverted(_ source: SourceTensor, type: GGMLType, name: String) throws(GGUFConvertError) {
        let dtype = source.entry.dtype
        let width = dtype.byteWidth
        let sameBits = (dtype == .bf16 && type == .bf16) || (dtype == .f16 && type == .f16) || (dtype == .f32 && type == .f32)
        let pieceBytes = sameBits ? ChunkedCopy.pieceBytes : chunkElements * width
        let scratch = UnsafeMutableBufferPointer<Float>.allocate(capacity: sameBits ? 0 : chunkElements)
        defer { scratch.deallocate() }
        var failure: GGUFConvertError?
        do {
            try source.shard.file.copyPieces(of: source.entry.rangeInFile, pieceBytes: pieceBytes) { piece in
                do throws(GGUFConvertError) {
                    if sameBits {
                        try writer.append(piece)
                    } else {
                        let count = piece.count / width
                        GGUFFloats.decode(piece, dtype: dtype, count: count, into: scratch.baseAddress!)
                        try encode(UnsafeBufferPointer(rebasing: scratch[0..<count]), type: type)
                    }
                } catch {
                    failure = error
                    throw error
                }
            }
        } catch {
            if let failure { throw failure }
            throw .io(path: source.shard.file.path, operation: "read tensor \(source.name)", reason: "\(error)")
        }
    }

    /// The whole tensor as float32 (for the kv_b split and the mmproj's fused QKV only).
    private func floats(of source: SourceTensor) throws(GGUFConvertError) -> [Float] {
        let bytes = try source.bytes()
        let count = source.entry.elementCount
        let values = [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            GGUFFloats.decode(bytes, dtype: source.entry.dtype, count: count, into: buffer.baseAddress!)
            initialized = count
        }
        source.done()
        return values
    }

    private func writeFloats(_ values: [Float], type: GGMLType) throws(GGUFConvertError) {
        var failure: GGUFConvertError?
        values.withUnsafeBufferPointer { all in
            var at = 0
            while at < all.count {
                let n = min(chunkElements, all.count - at)
                do throws(GGUFConvertError) {
                    try encode(UnsafeBufferPointer(rebasing: all[at..<(at + n)]), type: type)
                } catch {
                    failure = error
                    return
                }
                at += n
            }
        }
        if let failure { throw failure }
    }

    /// `values` (a whole number of blocks for the block types) encoded as `type` into the writer.
    private func encode(_ values: UnsafeBufferPointer<Float>, type: GGMLType) throws(GGUFConvertError) {
        let count = values.count
        guard count > 0 else { return }
        let bytes = count / type.blockSize * type.typeSize
        try writer.withSpace(bytes) { out throws(GGUFConvertError) in
            GGUFFloats.encode(values, type: type, into: out)
        }
    }

    // MARK: - INT4 → Q4_0

    /// One INT4 module's rows as Q4_0 blocks: per group, `d = f16(scale)` (checked exact) and the 16 bytes of
    /// codes permuted into Q4_0's order (`Q4_0Nibbles`). Rows go out in batches that fill the writer's buffer.
    private mutating func writeQ4_0(_ m: PackedModule, name: String) throws(GGUFConvertError) {
        let packed = try m.packed.bytes(), scales = try m.scale.bytes()
        m.packed.willRead()
        m.scale.willRead()
        let groups = m.columns / Q4_0Group.size
        let rowOut = groups * GGMLType.q4_0.typeSize
        let packedRow = groups * Q4_0Nibbles.packedBytes
        let scaleDType = m.scale.entry.dtype
        let scaleWidth = scaleDType.byteWidth
        let batch = max(1, writer.capacity / rowOut)
        let allow = allowInexactScales
        var rounded = 0
        var row = 0
        while row < m.rows {
            let rows = min(batch, m.rows - row)
            let first = row
            try writer.withSpace(rows * rowOut) { out throws(GGUFConvertError) in
                let dst = out.baseAddress!
                let src = packed.baseAddress!
                let sc = scales.baseAddress!
                for r in first..<(first + rows) {
                    let p = src + r * packedRow
                    let s = sc + r * groups * scaleWidth
                    let o = dst + (r - first) * rowOut
                    for g in 0..<groups {
                        // d = f16(scale), exact: BF16 by bit operations, F16 as it is, F32 through Float16.
                        var d: UInt16
                        var exact: UInt16?
                        switch scaleDType {
                        case .bf16:
                            let bits = UInt16(littleEndian: s.loadUnaligned(fromByteOffset: 2 * g, as: UInt16.self))
                            exact = Q4_0Nibbles.f16Exact(bf16: bits)
                            d = exact ?? Float16(BFloat16Bits.toFloat(bits)).bitPattern
                        case .f16:
                            d = UInt16(littleEndian: s.loadUnaligned(fromByteOffset: 2 * g, as: UInt16.self))
                            exact = d
                        default:
                            let scale = Float(bitPattern: UInt32(littleEndian: s.loadUnaligned(fromByteOffset: 4 * g, as: UInt32.self)))
                            d = Float16(scale).bitPattern
                            exact = Q4_0Nibbles.isExactInF16(scale) ? d : nil
                        }
                        if exact == nil {
                            guard allow else {
                                let scale = Self.scaleValue(s, group: g, dtype: scaleDType)
                                throw .inexactScale(file: m.scale.file, tensor: m.scale.name, expert: m.expert, row: r, group: g, scale: scale, f16: Float(Float16(scale)))
                            }
                            rounded += 1
                        }
                        let block = o + g * GGMLType.q4_0.typeSize
                        block.storeBytes(of: d.littleEndian, as: UInt16.self)
                        let lo = UInt64(littleEndian: p.loadUnaligned(fromByteOffset: g * 16, as: UInt64.self))
                        let hi = UInt64(littleEndian: p.loadUnaligned(fromByteOffset: g * 16 + 8, as: UInt64.self))
                        let (a, b) = Q4_0Nibbles.q4_0(fromPacked: lo, hi)
                        block.storeBytes(of: a.littleEndian, toByteOffset: 2, as: UInt64.self)
                        block.storeBytes(of: b.littleEndian, toByteOffset: 10, as: UInt64.self)
                    }
                }
            }
            row += rows
        }
        inexactScales += rounded
        m.packed.done()
        m.scale.done()
    }

    /// Scale `group` of a row of scales, as float32.
    static func scaleValue(_ row: UnsafeRawPointer, group g: Int, dtype: DType) -> Float {
        switch dtype {
        case .bf16: BFloat16Bits.toFloat(UInt16(littleEndian: row.loadUnaligned(fromByteOffset: 2 * g, as: UInt16.self)))
        case .f16: Float(Float16(bitPattern: UInt16(littleEndian: row.loadUnaligned(fromByteOffset: 2 * g, as: UInt16.self))))
        default: Float(bitPattern: UInt32(littleEndian: row.loadUnaligned(fromByteOffset: 4 * g, as: UInt32.self)))
        }
    }
}

/// float32 from the checkpoint's float dtypes, and float32 to ggml's F32, F16, BF16 and Q8_0.
enum GGUFFloats {
    static func decode(_ bytes: UnsafeRawBufferPointer, dtype: DType, count: Int, into out: UnsafeMutablePointer<Float>) {
        let base = bytes.baseAddress!
        switch dtype {
        case .bf16:
            for i in 0..<count { out[i] = BFloat16Bits.toFloat(UInt16(littleEndian: base.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) }
        case .f16:
            for i in 0..<count { out[i] = Float(Float16(bitPattern: UInt16(littleEndian: base.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))) }
        default:
            for i in 0..<count { out[i] = Float(bitPattern: UInt32(littleEndian: base.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))) }
        }
    }

    /// `values` as `type` into `out` (exactly `values.count / blockSize · typeSize` bytes).
    static func encode(_ values: UnsafeBufferPointer<Float>, type: GGMLType, into out: UnsafeMutableRawBufferPointer) {
        let o = out.baseAddress!
        switch type {
        case .f32:
            for (i, v) in values.enumerated() { o.storeBytes(of: v.bitPattern.littleEndian, toByteOffset: 4 * i, as: UInt32.self) }
        case .f16:
            // numpy's astype(float16): round to nearest even, overflow to ±inf.
            for (i, v) in values.enumerated() { o.storeBytes(of: Float16(v).bitPattern.littleEndian, toByteOffset: 2 * i, as: UInt16.self) }
        case .bf16:
            // gguf-py / ggml: round to nearest even, NaN kept quiet.
            for (i, v) in values.enumerated() { o.storeBytes(of: BFloat16Bits.fromFloat(v).littleEndian, toByteOffset: 2 * i, as: UInt16.self) }
        case .q8_0:
            for b in 0..<(values.count / 32) { q8_0Block(values.baseAddress! + 32 * b, into: o + 34 * b) }
        default:
            preconditionFailure("GGUFFloats.encode: \(type) is not an output type")
        }
    }

    /// gguf-py's `Q8_0.quantize_blocks` (ggml's `quantize_row_q8_0_ref`), in float32: d = amax / 127,
    /// q = round-half-away-from-zero(x · (1/d)), d stored as f16.
    @inline(__always)
    static func q8_0Block(_ x: UnsafePointer<Float>, into o: UnsafeMutableRawPointer) {
        var amax: Float = 0
        for i in 0..<32 { amax = max(amax, abs(x[i])) }
        let d = amax / 127
        let id: Float = d == 0 ? 0 : 1 / d
        o.storeBytes(of: Float16(d).bitPattern.littleEndian, as: UInt16.self)
        for i in 0..<32 {
            let q = (x[i] * id).rounded(.toNearestOrAwayFromZero)
            // |q| ≤ 127 for finite input; a NaN or infinity in the weights stores 0 rather than trapping.
            o.storeBytes(of: q.isFinite ? Int8(max(-128, min(127, q))) : 0, toByteOffset: 2 + i, as: Int8.self)
        }
    }
}
