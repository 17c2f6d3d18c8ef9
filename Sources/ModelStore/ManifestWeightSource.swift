import Forward
import ModelConfig
import TensorCore

/// The forward pass's weights from a store of named tensors, each slot's tensors found through the
/// architecture manifest (the expected tensor list of the opened checkpoint), never by spelling names. Every
/// manifest slot of the language model is checked to be a `WeightSlot` when the source is made.
public final class ManifestWeightSource: WeightSource {
    public let config: ModelConfig
    public let forward: ForwardConfig
    public let store: any TensorStore
    public let dequant: Dequantization
    /// Set for one rank of a sharded model.
    public let partition: WeightPartition?
    /// A rank's stored blocks: for each split tensor (by name), the block `[start, end)` of one dimension.
    public let blocks: [String: Block]
    /// The whole model's expected tensors, as the caller opened them (not localized to a partition).
    public let expected: ExpectedTensorList
    /// The tensors as this source stores them (a rank's: its blocks).
    private let local: [ExpectedTensor]
    private let slots: [SlotKey: [Int]]

    /// The block of one dimension a rank stores of a split tensor.
    public struct Block: Sendable, Equatable {
        public var dimension: Int
        public var start: Int
        public var end: Int
        public init(dimension: Int, start: Int, end: Int) {
            self.dimension = dimension
            self.start = start
            self.end = end
        }
    }

    struct SlotKey: Hashable {
        var slot: WeightSlot
        var layer: Int?
        var expert: Int?
    }

    /// `expected`: the tensors `config` implies (`LoadedCheckpoint.expected`, or built once by the caller).
    /// `partition` and `blocks`: one rank of a sharded model, and the blocks its store holds.
    public init(
        config: ModelConfig, expected: ExpectedTensorList, store: any TensorStore, dequant: Dequantization = .exact,
        partition: WeightPartition? = nil, blocks: [String: Block] = [:]
    ) throws(ForwardError) {
        self.config = config
        forward = try ForwardConfig(config.text, section: config.architecture.textConfigKey ?? "config")
        self.store = store
        self.dequant = dequant
        self.partition = partition
        self.blocks = blocks
        self.expected = expected
        local = blocks.isEmpty ? expected.tensors : expected.tensors.map { Self.localize($0, blocks: blocks) }
        var slots: [SlotKey: [Int]] = [:]
        for (i, t) in local.enumerated() where !t.vision {
            let slot = try WeightSlot(manifestSlot: t.slot, tensor: t.name)
            slots[SlotKey(slot: slot, layer: t.layer, expert: t.expert), default: []].append(i)
        }
        self.slots = slots
    }

    public func has(_ slot: WeightSlot, layer: Int?) -> Bool {
        slots[SlotKey(slot: slot, layer: layer, expert: nil)] != nil
    }

    private func tensors(_ slot: WeightSlot, layer: Int?, expert: Int?) throws(ForwardError) -> [ExpectedTensor] {
        guard let list = slots[SlotKey(slot: slot, layer: layer, expert: expert)] else {
            let where_ = [layer.map { "layer \($0)" }, expert.map { "expert \($0)" }].compactMap { $0 }.joined(separator: ", ")
            throw .unsupported("the architecture manifest has no \(slot.rawValue) tensor\(where_.isEmpty ? "" : " for " + where_)")
        }
        return list.map { local[$0] }
    }

    private func checkedView(_ t: ExpectedTensor) throws(ForwardError) -> TensorView {
        let view = try store.view(t.name)
        guard view.shape == t.shape else {
            throw .wrongTensor(name: t.name, reason: "shape \(formatShape(view.shape)), expected \(formatShape(t.shape))")
        }
        guard t.dtypes.contains(view.dtype) else {
            throw .wrongTensor(name: t.name, reason: "dtype \(view.dtype.rawValue), expected \(t.dtypes.map(\.rawValue).joined(separator: " or "))")
        }
        guard CheckedMath.byteCount(shape: view.shape, dtype: view.dtype) == view.bytes.count else {
            throw .wrongTensor(name: t.name, reason: "\(view.bytes.count) bytes do not match its shape")
        }
        return view
    }

    public func firstRow(_ slot: WeightSlot, layer: Int?) throws(ForwardError) -> Int {
        let parts = try tensors(slot, layer: layer, expert: nil)
        guard let block = parts.lazy.compactMap({ self.blocks[$0.name] }).first, block.dimension == 0 else { return 0 }
        return block.start
    }

    public func vector(_ slot: WeightSlot, layer: Int?) throws(ForwardError) -> [Float] {
        guard let t = try tensors(slot, layer: layer, expert: nil).first else { throw .missingTensor(slot.rawValue) }
        let view = try checkedView(t)
        guard Decode.isFloat(view.dtype) else { throw .wrongTensor(name: t.name, reason: "dtype \(view.dtype.rawValue) is not a float type") }
        let count = view.shape.reduce(1, *)
        return [Float](unsafeUninitializedCapacity: count) { buffer, n in
            Decode.plain(view, from: 0, count: count, into: buffer.baseAddress!)
            n = count
        }
    }

    public func matrix(_ slot: WeightSlot, layer: Int?, expert: Int?) throws(ForwardError) -> WeightMatrix {
        let parts = try tensors(slot, layer: layer, expert: expert)
        if let codes = parts.first(where: { $0.form == .packed }), let scales = parts.first(where: { $0.form == .scale }),
            let logical = codes.logicalShape, case let .packQuantized(bits, group, _)? = codes.method {
            let c = try checkedView(codes), s = try checkedView(scales)
            guard bits == 4 || bits == 8, 32 % bits == 0 else { throw .unsupported("\(bits)-bit pack-quantized weights (\(displayed(codes.name)))") }
            guard Decode.isFloat(s.dtype) else { throw .wrongTensor(name: scales.name, reason: "scales must be a float dtype, found \(s.dtype.rawValue)") }
            return WeightMatrix(
                name: codes.module ?? codes.name, rows: logical[0], cols: logical[1],
                storage: .packed(codes: c, scales: s, groupSize: group, bits: bits, dequant: dequant, highFirst: false))
        }
        if let blocks = parts.first(where: { $0.form == .blockScale }), let weight = parts.first(where: { $0.form == .plain }),
            case let .fp8Block(br, bc)? = blocks.method {
            let w = try checkedView(weight), s = try checkedView(blocks)
            guard w.dtype == .f8e4m3 else { throw .unsupported("FP8 block weights of dtype \(w.dtype.rawValue) (\(displayed(weight.name)))") }
            guard Decode.isFloat(s.dtype) else { throw .wrongTensor(name: blocks.name, reason: "block scales must be a float dtype") }
            return WeightMatrix(name: weight.name, rows: w.shape[0], cols: w.shape[1], storage: .fp8Block(weight: w, scales: s, blockRows: br, blockCols: bc))
        }
        guard let plain = parts.first(where: { $0.form == .plain }) else { throw .missingTensor("\(slot.rawValue) weight") }
        let view = try checkedView(plain)
        guard view.shape.count == 2, Decode.isFloat(view.dtype), view.dtype != .f8e4m3 else {
            throw .wrongTensor(name: plain.name, reason: "expected a 2-D float matrix, found \(formatShape(view.shape)) \(view.dtype.rawValue)")
        }
        return WeightMatrix(name: plain.name, rows: view.shape[0], cols: view.shape[1], storage: .plain(view))
    }

    public func releaseViewed() { store.releaseViewed() }
}

extension ManifestWeightSource {
    /// The tensor as a rank stores it: the split dimension cut to its block (and the logical `[out, in]` of a
    /// quantized module in proportion).
    static func localize(_ t: ExpectedTensor, blocks: [String: Block]) -> ExpectedTensor {
        guard let b = blocks[t.name], b.dimension < t.shape.count, t.shape[b.dimension] > 0 else { return t }
        var local = t
        let whole = t.shape[b.dimension]
        local.shape[b.dimension] = b.end - b.start
        if var logical = local.logicalShape, b.dimension < logical.count {
            logical[b.dimension] = logical[b.dimension] / whole * (b.end - b.start)
            local.logicalShape = logical
        }
        return local
    }
}
