import FileIO
import Checkpoint
import Forward
import Foundation
import GGUF
import ModelConfig
import TensorCore

/// The forward pass's weights from a GGUF model (one file or a split set): the architecture's metadata becomes
/// the forward config, its tensors are found through the tensor map manifest (`Manifests/json/gguf_*.json`),
/// and every matrix is dequantized a block of rows at a time by ggml's own rules (`GGUFDequantizer`), through
/// `WeightMatrix.Storage.rows`. `attn_k_b` and `attn_v_b` together serve `attn_kv_b` exactly as `kv_b_proj`.
///
/// Everything is checked when the source is made: the architecture, the metadata's consistency, and every tensor
/// the config implies (present, its `ne` as the metadata says, a type k2pack decodes). The weights are the
/// file's own values in float32; llama.cpp's int8 rounding of activations in quantized products is not modelled.
public final class GGUFWeightSource: WeightSource {
    public let model: GGUFModel
    public let config: ModelConfig
    public let forward: ForwardConfig
    public let metadata: GGUFDeepseek2Config
    public var dequant: Dequantization { .exact }
    public var partition: WeightPartition? { nil }
    /// What is missing in the file, inconsistent, or read differently by llama.cpp than by the reference model.
    public let notes: [String]
    private let tensors: [SlotKey: [Bound]]

    struct SlotKey: Hashable {
        var slot: WeightSlot
        var layer: Int?
    }

    /// A mapped tensor and how it serves its slot.
    struct Bound: @unchecked Sendable {
        var info: GGUFTensorInfo
        var layout: GGUFTensorMap.Layout
        var bytes: UnsafeRawBufferPointer
        var file: ReadOnlyFile
        var fileOffset: Int
    }

    /// Opens `path` (one GGUF file, or any part of a split set).
    public convenience init(path: String) throws(GGUFModelError) {
        let model: GGUFModel
        do { model = try GGUFModel(path: path) } catch { throw .file(error) }
        try self.init(model: model)
    }

    public init(model: GGUFModel) throws(GGUFModelError) {
        self.model = model
        let file = model.first.path
        let (map, meta) = try GGUFTensorMap.opened(model)
        metadata = meta

        // What the metadata cannot say (the vocabulary when vocab_size is absent, a tied head, the router bias)
        // comes from the tensors.
        config = try map.textConfig(of: model, metadata: meta)
        let tied = config.text.tieWordEmbeddings
        let routerBias = config.text.resolved["topk_method"]?.stringValue == "noaux_tc"
        do {
            forward = try ForwardConfig(config.text, section: "metadata")
        } catch {
            throw .config(file: file, reason: error.description)
        }

        var notes = meta.notes
        var bound: [SlotKey: [Bound]] = [:]
        let expected = try map.expected(for: config.text)
        let known = Set(expected.map(\.name))
        let surplus = model.tensorNames.filter { !known.contains($0) }
        if let first = surplus.first {
            notes.append("\(surplus.count) tensor(s) the deepseek2 map does not read (first: \(displayed(first))); llama.cpp's loader refuses a file with tensors it does not create")
        }
        for t in expected {
            guard let (part, info) = model.tensor(named: t.name) else {
                if t.optional { continue }
                throw .missingTensor(file: file, tensor: t.name, slot: t.slot.rawValue)
            }
            guard info.ne == t.ne else { throw .wrongShape(file: part.path, tensor: t.name, found: info.ne, expected: t.ne) }
            guard info.type.canDequantize else { throw .cannotDecode(file: part.path, tensor: t.name, type: info.type.name) }
            let bytes: UnsafeRawBufferPointer
            do { bytes = try part.bytes(of: info) } catch { throw .file(error) }
            bound[SlotKey(slot: t.slot, layer: t.layer), default: []].append(
                Bound(info: info, layout: t.layout, bytes: bytes, file: part.file, fileOffset: part.dataStart + info.offset))
        }
        if tied { notes.append("output.weight absent: the output head is the token embedding (tied)") }
        if !routerBias, meta.expertCount > 0 { notes.append("exp_probs_b.bias absent: routing without a correction bias (topk_method greedy)") }
        notes.append("attn_q_a_norm / attn_kv_a_norm use epsilon 1e-6 here, as transformers and DeepSeek's code do; llama.cpp uses the model's rms epsilon \(meta.rmsNormEpsilon)")
        self.notes = notes
        tensors = bound
    }

    public func has(_ slot: WeightSlot, layer: Int?) -> Bool { tensors[SlotKey(slot: slot, layer: layer)] != nil }

    public func firstRow(_ slot: WeightSlot, layer: Int?) throws(ForwardError) -> Int { 0 }

    private func bound(_ slot: WeightSlot, layer: Int?) throws(ForwardError) -> [Bound] {
        guard let list = tensors[SlotKey(slot: slot, layer: layer)] else {
            throw .unsupported("\(displayed(model.first.path)) has no \(slot.rawValue) tensor\(layer.map { " for layer \($0)" } ?? "")")
        }
        return list
    }

    public func vector(_ slot: WeightSlot, layer: Int?) throws(ForwardError) -> [Float] {
        guard let t = try bound(slot, layer: layer).first else { throw .missingTensor(slot.rawValue) }
        return [Float](unsafeUninitializedCapacity: t.info.elementCount) { buffer, n in
            GGUFDequantizer.dequantize(t.info.type, blocks: t.bytes, into: buffer)
            n = t.info.elementCount
        }
    }

    public func matrix(_ slot: WeightSlot, layer: Int?, expert: Int?) throws(ForwardError) -> WeightMatrix {
        let parts = try bound(slot, layer: layer)
        if let k = parts.first(where: { $0.layout == .mlaKB }), let v = parts.first(where: { $0.layout == .mlaVB }) {
            let rows = MLAKVBRows(k: GGUFRows(k, rows: k.info.ne[1] * k.info.ne[2]), v: GGUFRows(v, rows: v.info.ne[1] * v.info.ne[2]),
                                  nope: k.info.ne[0], vDim: v.info.ne[1], latent: v.info.ne[0])
            return WeightMatrix(name: "\(k.info.name) + \(v.info.name)", rows: rows.rows, cols: rows.latent, storage: .rows(rows))
        }
        guard let t = parts.first else { throw .missingTensor(slot.rawValue) }
        switch t.layout {
        case .matrix:
            let rows = GGUFRows(t, rows: t.info.ne[1])
            return WeightMatrix(name: t.info.name, rows: rows.rows, cols: rows.cols, storage: rows.storage(name: t.info.name))
        case .experts:
            guard let expert, expert >= 0, expert < t.info.ne[2] else {
                throw .wrongTensor(name: t.info.name, reason: "expert \(expert.map(String.init) ?? "none") asked for, the tensor holds \(t.info.ne[2])")
            }
            let rows = t.info.ne[1]
            let slab = GGUFRows(t, rows: rows * t.info.ne[2]).slab(expert * rows, rows)
            let name = "\(t.info.name)[\(expert)]"
            return WeightMatrix(name: name, rows: rows, cols: slab.cols, storage: slab.storage(name: name))
        case .vector, .mlaKB, .mlaVB:
            throw .wrongTensor(name: t.info.name, reason: "a \(t.layout.rawValue) tensor cannot serve the matrix slot \(slot.rawValue)")
        }
    }

    /// Drops every part's data pages from the resident set (the page cache keeps them).
    public func releaseViewed() {
        for part in model.parts where part.fileLength > part.dataStart {
            part.file.adviseDone(part.dataStart..<part.fileLength)
        }
    }
}

/// Rows of a GGUF tensor whose `ne[0]` is the row: each row a whole number of blocks, decoded by ggml's rules.
struct GGUFRows: MatrixRows, @unchecked Sendable {
    let type: GGMLType
    let base: UnsafeRawPointer?
    let rowBytes: Int
    let cols: Int
    let rows: Int
    let file: ReadOnlyFile
    let fileOffset: Int

    init(_ t: GGUFWeightSource.Bound, rows: Int) {
        type = t.info.type
        base = t.bytes.baseAddress
        cols = t.info.ne[0]
        rowBytes = cols / t.info.type.blockSize * t.info.type.typeSize
        self.rows = rows
        file = t.file
        fileOffset = t.fileOffset
    }

    private init(_ other: GGUFRows, start: Int, rows: Int) {
        type = other.type
        base = other.base.map { $0 + start * other.rowBytes }
        rowBytes = other.rowBytes
        cols = other.cols
        self.rows = rows
        file = other.file
        fileOffset = other.fileOffset + start * other.rowBytes
    }

    /// Rows `start ..< start + count` as a matrix of their own (one expert's slab).
    func slab(_ start: Int, _ count: Int) -> GGUFRows { GGUFRows(self, start: start, rows: count) }

    /// How the forward pass reads these rows: F32 and BF16 as plain float rows (the same values; the pass's own
    /// decoders and fused kernels), every other type through this decoder, with Q4_0 / Q8_0 / Q2_K also offered
    /// as `ggmlBlocks` to the fused few-token kernels.
    func storage(name: String) -> WeightMatrix.Storage {
        let dtype: DType? = type == .f32 ? .f32 : type == .bf16 ? .bf16 : nil
        guard let dtype, let base else { return .rows(self) }
        let file = file, fileOffset = fileOffset
        let view = TensorView(
            name: name, dtype: dtype, shape: [rows, cols], bytes: UnsafeRawBufferPointer(start: base, count: rows * rowBytes),
            release: { range in file.adviseDone((fileOffset + range.lowerBound)..<(fileOffset + range.upperBound)) })
        return .plain(view)
    }

    /// These rows as ggml blocks for the fused kernels, when their type has one (Q4_0, Q8_0, Q2_K).
    var ggmlBlocks: GGMLBlocks? {
        guard let base, let format = GGMLBlocks.Format(type) else { return nil }
        return GGMLBlocks(format: format, base: base, cols: cols)
    }

    func decodeRows(_ range: Range<Int>, into out: UnsafeMutablePointer<Float>) {
        precondition(range.lowerBound >= 0 && range.upperBound <= rows, "rows \(range) of \(rows)")
        guard !range.isEmpty, let base else { return }
        let blocks = UnsafeRawBufferPointer(start: base + range.lowerBound * rowBytes, count: range.count * rowBytes)
        GGUFDequantizer.dequantize(type, blocks: blocks, into: UnsafeMutableBufferPointer(start: out, count: range.count * cols))
    }

    func releaseRows(_ range: Range<Int>) {
        file.adviseDone((fileOffset + range.lowerBound * rowBytes)..<(fileOffset + range.upperBound * rowBytes))
    }
}

/// `kv_b_proj` `[heads · (nope + v), kv_lora]` rebuilt from `attn_k_b` (per head `[kv_lora, nope]`, the first
/// `nope` rows of the head transposed) and `attn_v_b` (per head `[v, kv_lora]`, the next `v` rows as they are).
struct MLAKVBRows: MatrixRows {
    let k: GGUFRows
    let v: GGUFRows
    let nope: Int
    let vDim: Int
    let latent: Int

    var rows: Int { (k.rows / latent) * (nope + vDim) }

    func decodeRows(_ range: Range<Int>, into out: UnsafeMutablePointer<Float>) {
        let perHead = nope + vDim
        var head = -1
        var kHead = [Float](repeating: 0, count: latent * nope)
        for r in range {
            let h = r / perHead, d = r % perHead
            let dst = out + (r - range.lowerBound) * latent
            if d < nope {
                if head != h {
                    kHead.withUnsafeMutableBufferPointer { k.decodeRows((h * latent)..<((h + 1) * latent), into: $0.baseAddress!) }
                    head = h
                }
                for c in 0..<latent { dst[c] = kHead[c * nope + d] }
            } else {
                let row = h * vDim + (d - nope)
                v.decodeRows(row..<(row + 1), into: dst)
            }
        }
    }

    func releaseRows(_ range: Range<Int>) {
        let perHead = nope + vDim
        guard !range.isEmpty else { return }
        let first = range.lowerBound / perHead, last = (range.upperBound - 1) / perHead
        k.releaseRows((first * latent)..<((last + 1) * latent))
        v.releaseRows((first * vDim)..<((last + 1) * vDim))
    }
}

extension GGMLBlocks.Format {
    /// The fused-kernel format of a GGUF tensor type (the same ggml type id), or nil when it has none.
    public init?(_ type: GGMLType) {
        self.init(rawValue: Int32(type.rawValue))
    }
}
