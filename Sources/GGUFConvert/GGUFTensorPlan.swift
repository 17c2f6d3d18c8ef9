import Checkpoint
import Foundation
import GGUF
import JSONCore
import LoadedModel
import Manifests
import ModelConfig
import TensorCore

/// The type of the dense matrices (`--outtype`). Vectors, norms and the router are F32 and INT4 groups of 32 are
/// Q4_0 whatever this is.
public enum GGUFOutType: String, Sendable, CaseIterable, Codable {
    /// Lossless for BF16 checkpoints (the default).
    case bf16
    /// numpy's float16 rounding of each value.
    case f16
    /// gguf-py's `quantize(…, Q8_0)`, bit for bit; a row that is not a whole number of 32-blocks falls back to
    /// F16, as llama.cpp's converter does.
    case q8_0

    /// `general.file_type` (llama.cpp's `LlamaFileType`): MOSTLY_BF16 32, MOSTLY_F16 1, MOSTLY_Q8_0 7.
    public var fileType: UInt32 {
        switch self {
        case .bf16: 32
        case .f16: 1
        case .q8_0: 7
        }
    }

    /// The ggml type of a dense matrix whose rows hold `ne0` elements.
    func matrixType(ne0: Int) -> GGMLType {
        switch self {
        case .bf16: .bf16
        case .f16: .f16
        case .q8_0: ne0 % GGMLType.q8_0.blockSize == 0 ? .q8_0 : .f16
        }
    }

    /// ggml's spelling, for file names.
    public var label: String {
        switch self {
        case .bf16: "BF16"
        case .f16: "F16"
        case .q8_0: "Q8_0"
        }
    }
}

/// The GGUF tensor table (`Manifests/json/gguf_deepseek2.json`) as the writer reads it: each GGUF tensor, the slot
/// it serves, how often it repeats, its layout and ggml dimensions. The same file the GGUF reader maps names
/// to slots with.
struct GGUFTensorTable: Decodable {
    struct Entry: Decodable {
        var gguf: String
        var slot: String
        var `repeat`: String
        var layout: String
        var ne: [String]
        var optional: Bool?
        var ggufType: String?

        enum CodingKeys: String, CodingKey {
            case gguf, slot, `repeat`, layout, ne, optional
            case ggufType = "gguf_type"
        }
    }

    var architecture: String
    var tensors: [Entry]

    static let manifestName = "gguf_deepseek2"

    static func load() throws(GGUFConvertError) -> GGUFTensorTable {
        guard let data = ManifestResources.data(named: manifestName) else {
            throw .sourceInvalid(reason: "the manifest \(manifestName).json is missing from this build")
        }
        do {
            return try JSONDecoder().decode(GGUFTensorTable.self, from: data)
        } catch {
            throw .sourceInvalid(reason: "the manifest \(manifestName).json cannot be read: \(error)")
        }
    }
}

/// A tensor of the checkpoint: its shard and header entry.
struct SourceTensor {
    let shard: SafetensorsFile
    let entry: TensorEntry

    var file: String { shard.name }
    var name: String { entry.name }

    func bytes() throws(GGUFConvertError) -> UnsafeRawBufferPointer {
        do {
            return try shard.bytes(of: entry)
        } catch {
            throw .io(path: shard.file.path, operation: "map", reason: error.description)
        }
    }

    func willRead() { shard.file.adviseSequential(entry.rangeInFile) }
    func done() { shard.file.adviseDone(entry.rangeInFile) }
}

/// One compressed-tensors INT4 Linear (`weight_packed` I32 `[rows, columns/8]`, `weight_scale` `[rows, columns/32]`).
struct PackedModule {
    let packed: SourceTensor
    let scale: SourceTensor
    let rows: Int
    let columns: Int
    /// The expert index within a stack, for error messages.
    let expert: Int?
}

/// `kv_b_proj` `[heads·(nope+v), kvLora]` viewed per head.
struct MLASplit {
    let heads: Int
    let nope: Int
    let v: Int
    let kvLora: Int
}

/// Where a GGUF tensor's bytes come from.
enum GGUFTensorSource {
    /// One plain tensor (BF16, F16 or F32) written at the planned type, element order unchanged.
    case converted(SourceTensor)
    /// `attn_k_b`: the first `nope` rows of each head of `kv_b_proj`, transposed.
    case keyHalf(SourceTensor, MLASplit)
    /// `attn_v_b`: the next `v` rows of each head of `kv_b_proj`.
    case valueHalf(SourceTensor, MLASplit)
    /// INT4 modules moved into Q4_0 nibble for nibble: one, or the routed experts stacked expert-major.
    case int4([PackedModule])
    /// An mmproj `attn_qkv` weight or bias: Q and K rows moved from interleaved to split RoPE pairs
    /// (`GGUFMmproj.ropeSplitQK`), V unchanged.
    case ropeSplitQK(SourceTensor, heads: Int)
}

extension GGUFTensorSource {
    /// The shards this tensor is read from.
    var files: [SafetensorsFile] {
        switch self {
        case let .converted(s), let .keyHalf(s, _), let .valueHalf(s, _), let .ropeSplitQK(s, _): [s.shard]
        case let .int4(modules): modules.flatMap { [$0.packed.shard, $0.scale.shard] }
        }
    }
}

/// One tensor of the output: its header description and its source.
struct GGUFPlannedTensor {
    var descriptor: GGUFTensorDescriptor
    var source: GGUFTensorSource
}

/// The checkpoint's tensors as llama.cpp's `deepseek2` loader expects them: every entry of the GGUF tensor table
/// matched to the checkpoint tensor serving the same slot at the same layer (so `language_model.` and every other
/// naming difference fall away), the vision tower, projector and multi-token-prediction layers left out, exactly
/// the tensors the loader creates.
enum GGUFTensorPlanner {
    struct Key: Hashable {
        var slot: String
        var layer: Int?
        var expert: Int?
    }

    static func plan(_ checkpoint: LoadedCheckpoint, outType: GGUFOutType, maxRowBytes: Int) throws(GGUFConvertError) -> [GGUFPlannedTensor] {
        guard let config = checkpoint.config, let expected = checkpoint.expected else {
            throw .sourceInvalid(reason: checkpoint.unusableReason ?? "\(displayed(checkpoint.directory.path)) has no usable config.json")
        }
        let table = try GGUFTensorTable.load()
        let text = config.text
        // The text model's tensors (not the vision tower, not MTP layers) by slot, layer and expert.
        var index: [Key: [Int]] = [:]
        for (i, t) in expected.tensors.enumerated() where !t.vision {
            if let layer = t.layer, layer >= text.numLayers { continue }
            index[Key(slot: t.slot, layer: t.layer, expert: t.expert), default: []].append(i)
        }
        let dir = checkpoint.directory

        func source(_ position: Int, gguf: String) throws(GGUFConvertError) -> SourceTensor {
            let name = expected.tensors[position].name
            guard let (shard, entry) = dir.entry(named: name) else {
                throw .sourceInvalid(reason: "\(displayed(dir.path)): tensor \(displayed(name)) (for GGUF \(gguf)) is missing")
            }
            return SourceTensor(shard: shard, entry: entry)
        }
        func unsupported(_ s: SourceTensor, _ gguf: String, _ reason: String) -> GGUFConvertError {
            .unsupportedSource(file: s.file, tensor: s.name, gguf: gguf, reason: reason)
        }
        func plainFloat(_ s: SourceTensor, gguf: String) throws(GGUFConvertError) {
            guard [.bf16, .f16, .f32].contains(s.entry.dtype) else {
                throw unsupported(s, gguf, "dtype \(s.entry.dtype.rawValue), expected BF16, F16 or F32")
            }
        }
        /// The INT4 module whose `weight_packed` is at `position` (its scale found through the same module).
        func packedModule(_ positions: [Int], gguf: String, expert: Int?) throws(GGUFConvertError) -> PackedModule? {
            guard let p = positions.first(where: { expected.tensors[$0].form == .packed }) else { return nil }
            let e = expected.tensors[p]
            guard let s = positions.first(where: { expected.tensors[$0].form == .scale && expected.tensors[$0].module == e.module }) else {
                throw .sourceInvalid(reason: "\(displayed(dir.path)): the scales of \(displayed(e.name)) are missing")
            }
            let packed = try source(p, gguf: gguf), scale = try source(s, gguf: gguf)
            guard case let .packQuantized(bits, groupSize, symmetric)? = e.method, bits == 4, groupSize == Q4_0Group.size, symmetric,
                let logical = e.logicalShape, logical.count == 2
            else {
                throw unsupported(packed, gguf, "quantized as \(e.method.map { "\($0)" } ?? "unknown"); Q4_0 holds symmetric INT4 in groups of \(Q4_0Group.size)")
            }
            let (rows, columns) = (logical[0], logical[1])
            guard columns % Q4_0Group.size == 0, packed.entry.dtype == .i32, packed.entry.shape == [rows, columns / 8],
                scale.entry.shape == [rows, columns / Q4_0Group.size], [.bf16, .f16, .f32].contains(scale.entry.dtype)
            else {
                throw unsupported(
                    packed, gguf,
                    "weight_packed \(packed.entry.dtype.rawValue) \(packed.entry.shape) with weight_scale \(scale.entry.dtype.rawValue) \(scale.entry.shape), expected I32 [\(rows), \(columns / 8)] and [\(rows), \(columns / Q4_0Group.size)] (in divisible by 32)")
            }
            guard columns / Q4_0Group.size * GGMLType.q4_0.typeSize <= maxRowBytes else {
                throw unsupported(packed, gguf, "rows of \(columns) are longer than the writer handles")
            }
            return PackedModule(packed: packed, scale: scale, rows: rows, columns: columns, expert: expert)
        }

        var planned: [GGUFPlannedTensor] = []
        func add(_ entry: GGUFTensorTable.Entry, layer: Int?) throws(GGUFConvertError) {
            var ne: [Int] = []
            for expression in entry.ne {
                do {
                    ne.append(try ShapeExpression.evaluate(expression, lookup: { text.resolved[$0] }))
                } catch {
                    throw .sourceInvalid(reason: "\(GGUFTensorTable.manifestName).json, \(entry.gguf): \(error.description)")
                }
            }
            // A dimension of 0 (no shared experts): the loader creates no such tensor.
            if ne.contains(0) { return }
            let name = layer.map { entry.gguf.replacingOccurrences(of: "{L}", with: String($0)) } ?? entry.gguf
            let forced = try entry.ggufType.map { t throws(GGUFConvertError) -> GGMLType in
                guard let type = GGMLType(name: t) else { throw .sourceInvalid(reason: "\(GGUFTensorTable.manifestName).json, \(entry.gguf): unknown gguf_type \(t)") }
                return type
            }
            if entry.layout == "experts" {
                var modules: [PackedModule] = []
                for e in 0..<text.numRoutedExperts {
                    let positions = index[Key(slot: entry.slot, layer: layer, expert: e)] ?? []
                    guard let first = positions.first else {
                        throw .sourceInvalid(reason: "\(displayed(dir.path)): no tensor serves \(entry.slot) of layer \(layer ?? -1) expert \(e) (GGUF \(name))")
                    }
                    guard let module = try packedModule(positions, gguf: name, expert: e) else {
                        let s = try source(first, gguf: name)
                        throw .bf16Experts(file: s.file, tensor: s.name, gguf: name)
                    }
                    guard [module.columns, module.rows] == Array(ne.prefix(2)) else {
                        throw unsupported(module.packed, name, "logical [out, in] [\(module.rows), \(module.columns)], expected \(Array(ne.prefix(2).reversed())) (ne \(ne))")
                    }
                    modules.append(module)
                }
                planned.append(GGUFPlannedTensor(descriptor: GGUFTensorDescriptor(name: name, type: .q4_0, ne: ne), source: .int4(modules)))
                return
            }
            let positions = index[Key(slot: entry.slot, layer: layer, expert: nil)] ?? []
            if positions.isEmpty {
                if entry.optional ?? false { return }
                throw .sourceInvalid(reason: "\(displayed(dir.path)): no tensor serves \(entry.slot)\(layer.map { " of layer \($0)" } ?? "") (GGUF \(name))")
            }
            if let module = try packedModule(positions, gguf: name, expert: nil) {
                guard entry.layout == "matrix", forced == nil else {
                    throw unsupported(module.packed, name, "is INT4; k2pack writes this tensor only from a plain BF16, F16 or F32 weight")
                }
                guard [module.columns, module.rows] == ne else {
                    throw unsupported(module.packed, name, "logical [out, in] [\(module.rows), \(module.columns)], expected \(Array(ne.reversed()))")
                }
                planned.append(GGUFPlannedTensor(descriptor: GGUFTensorDescriptor(name: name, type: .q4_0, ne: ne), source: .int4([module])))
                return
            }
            let plain = positions.filter { expected.tensors[$0].form == .plain }
            guard plain.count == 1 else {
                let s = try source(positions[0], gguf: name)
                throw unsupported(s, name, "\(plain.count) plain tensors serve this slot, expected exactly one")
            }
            let s = try source(plain[0], gguf: name)
            try plainFloat(s, gguf: name)
            switch entry.layout {
            case "vector", "matrix":
                guard s.entry.shape == Array(ne.reversed()) else {
                    throw unsupported(s, name, "shape \(s.entry.shape), expected \(Array(ne.reversed())) (ne \(ne))")
                }
                let type = forced ?? (entry.layout == "vector" ? .f32 : outType.matrixType(ne0: ne[0]))
                guard ne[0] * 4 <= maxRowBytes else { throw unsupported(s, name, "rows of \(ne[0]) are longer than the writer handles") }
                planned.append(GGUFPlannedTensor(descriptor: GGUFTensorDescriptor(name: name, type: type, ne: ne), source: .converted(s)))
            case "mla_k_b", "mla_v_b":
                let split = MLASplit(heads: text.numHeads, nope: text.qkNopeHeadDim, v: text.vHeadDim, kvLora: text.kvLoraRank)
                guard s.entry.shape == [split.heads * (split.nope + split.v), split.kvLora] else {
                    throw unsupported(s, name, "shape \(s.entry.shape), expected [\(split.heads * (split.nope + split.v)), \(split.kvLora)] (heads·(nope+v), kv_lora_rank)")
                }
                let isKey = entry.layout == "mla_k_b"
                let wanted = isKey ? [split.nope, split.kvLora, split.heads] : [split.kvLora, split.v, split.heads]
                guard ne == wanted else { throw .sourceInvalid(reason: "\(GGUFTensorTable.manifestName).json, \(entry.gguf): ne \(ne), expected \(wanted)") }
                let type = forced ?? outType.matrixType(ne0: ne[0])
                planned.append(GGUFPlannedTensor(descriptor: GGUFTensorDescriptor(name: name, type: type, ne: ne), source: isKey ? .keyHalf(s, split) : .valueHalf(s, split)))
            default:
                throw .sourceInvalid(reason: "\(GGUFTensorTable.manifestName).json, \(entry.gguf): unknown layout \(entry.layout)")
            }
        }

        // The tensors outside the layers first, then each layer's in table order.
        for entry in table.tensors where entry.repeat == "once" { try add(entry, layer: nil) }
        for layer in 0..<text.numLayers {
            for entry in table.tensors {
                switch entry.repeat {
                case "layers": try add(entry, layer: layer)
                case "dense_layers" where !text.isMoELayer(layer): try add(entry, layer: layer)
                case "moe_layers" where text.isMoELayer(layer): try add(entry, layer: layer)
                case "once", "dense_layers", "moe_layers": continue
                default: throw .sourceInvalid(reason: "\(GGUFTensorTable.manifestName).json, \(entry.gguf): unknown repeat \(entry.repeat)")
                }
            }
        }
        return planned
    }
}

/// Q4_0's group: 32 codes, as compressed-tensors' group of 32.
enum Q4_0Group {
    static let size = GGMLType.q4_0.blockSize
}
