import Dispatch
import ModelConfig
import TensorCore

/// Why the forward pass could not run.
public enum ForwardError: Error, Equatable, Sendable, CustomStringConvertible {
    case missingTensor(String)
    case wrongTensor(name: String, reason: String)
    case config(key: String, reason: String)
    case unsupported(String)
    case input(String)
    case io(String)

    public var description: String {
        switch self {
        case .missingTensor(let name): "tensor \(displayed(name)) is missing from the checkpoint"
        case .wrongTensor(let name, let reason): "tensor \(displayed(name)): \(displayed(reason, limit: nil))"
        case .config(let key, let reason): "config.json \(displayed(key)): \(displayed(reason, limit: nil))"
        case .unsupported(let what): "not supported by the reference forward pass: \(displayed(what, limit: nil))"
        case .input(let reason): displayed(reason, limit: nil)
        case .io(let reason): displayed(reason, limit: nil)
        }
    }
}

/// A stored tensor's bytes, viewed in place (a mapping owned by the store; valid while the store lives).
public struct TensorView: @unchecked Sendable {
    public var name: String
    public var dtype: DType
    public var shape: [Int]
    public var bytes: UnsafeRawBufferPointer
    /// Drops a byte range of this view (relative to its start) from the resident set once it has been used.
    public var release: (@Sendable (Range<Int>) -> Void)?
    public init(name: String, dtype: DType, shape: [Int], bytes: UnsafeRawBufferPointer, release: (@Sendable (Range<Int>) -> Void)? = nil) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.bytes = bytes
        self.release = release
    }

    /// Releases the bytes of rows `rows` of a row-major view whose rows are `rowBytes` long.
    func releaseRows(_ rows: Range<Int>, rowBytes: Int) {
        release?((rows.lowerBound * rowBytes)..<min(bytes.count, rows.upperBound * rowBytes))
    }
}

/// Where tensors come from: a Hugging Face folder or a k2pack folder.
public protocol TensorStore: AnyObject, Sendable {
    /// The tensor stored under its checkpoint name.
    func view(_ name: String) throws(ForwardError) -> TensorView
    /// Drops the pages viewed so far from this process's resident set (the page cache keeps them):
    /// called after every layer so memory stays bounded by one layer.
    func releaseViewed()
}

/// How INT4 weights become float32.
public enum Dequantization: String, Sendable, CaseIterable {
    /// `q · scale` in float32 (exact).
    case exact
    /// `bf16(q · scale)`, as compressed-tensors' decompressor and transformers' loader compute it.
    case bf16
}

/// Deliberate departures from the reference, for emulating other runtimes and for proving that `parity`
/// catches each class of bug. All off by default.
public struct ForwardVariant: Sendable, Equatable {
    /// Layers the variant applies to (nil: every layer).
    public var layers: Set<Int>?
    /// Read INT4 nibbles high-first (the classic packing bug).
    public var nibblesHighFirst = false
    /// Latent-norm epsilon instead of transformers' 1e-6 (vLLM and SGLang pass rms_norm_eps).
    public var latentNormEps: Float?
    /// Override of the YaRN beta_fast (K2.5 uses 32, K2-Thinking 1).
    public var betaFast: Double?
    /// Use the router's correction bias in the expert weights too, not for selection only.
    public var routerBiasInWeights = false
    /// Ignore the router's correction bias altogether.
    public var routerBiasIgnored = false

    public init(layers: Set<Int>? = nil, nibblesHighFirst: Bool = false, latentNormEps: Float? = nil, betaFast: Double? = nil,
                routerBiasInWeights: Bool = false, routerBiasIgnored: Bool = false) {
        self.layers = layers
        self.nibblesHighFirst = nibblesHighFirst
        self.latentNormEps = latentNormEps
        self.betaFast = betaFast
        self.routerBiasInWeights = routerBiasInWeights
        self.routerBiasIgnored = routerBiasIgnored
    }

    public static let none = ForwardVariant()
    public func applies(to layer: Int) -> Bool { layers?.contains(layer) ?? true }
}

/// A weight matrix `[rows = out, cols = in]` decoded to float32 a block of rows at a time.
public struct WeightMatrix: @unchecked Sendable {
    public enum Storage: @unchecked Sendable {
        case plain(TensorView)
        /// pack-quantized: I32 words of `bits`-wide offset-binary codes, first element in the lowest bits.
        case packed(codes: TensorView, scales: TensorView, groupSize: Int, bits: Int, dequant: Dequantization, highFirst: Bool)
        /// FP8 E4M3 with float32 block scales (`weight_scale_inv`).
        case fp8Block(weight: TensorView, scales: TensorView, blockRows: Int, blockCols: Int)
    }

    public var name: String
    public var rows: Int
    public var cols: Int
    public var storage: Storage

    /// Decodes rows `range` into `out` (row-major, `cols` floats per row).
    public func decodeRows(_ range: Range<Int>, into out: UnsafeMutablePointer<Float>) {
        switch storage {
        case .plain(let view):
            Decode.plain(view, from: range.lowerBound * cols, count: range.count * cols, into: out)
        case let .packed(codes, scales, group, bits, dequant, highFirst):
            Decode.packed(codes: codes, scales: scales, rows: range, cols: cols, group: group, bits: bits,
                          dequant: dequant, highFirst: highFirst, into: out)
        case let .fp8Block(weight, scales, br, bc):
            Decode.fp8Block(weight: weight, scales: scales, rows: range, cols: cols, blockRows: br, blockCols: bc, into: out)
        }
    }

    /// Drops the stored bytes behind rows `range` from the resident set (the page cache keeps them): a large
    /// matrix (lm_head, 2.3 GB in K2.5) never sits in this process's memory whole.
    public func releaseRows(_ range: Range<Int>) {
        switch storage {
        case .plain(let view):
            view.releaseRows(range, rowBytes: cols * view.dtype.bitWidth / 8)
        case let .packed(codes, scales, _, _, _, _):
            codes.releaseRows(range, rowBytes: codes.bytes.count / max(rows, 1))
            scales.releaseRows(range, rowBytes: scales.bytes.count / max(rows, 1))
        case let .fp8Block(weight, _, _, _):
            weight.releaseRows(range, rowBytes: cols)
        }
    }

    /// One row as an array (embedding lookups).
    public func row(_ r: Int) -> [Float] {
        [Float](unsafeUninitializedCapacity: cols) { buffer, count in
            decodeRows(r..<(r + 1), into: buffer.baseAddress!)
            count = cols
        }
    }

    /// The whole matrix (small matrices only: norms, routers).
    public func all() -> [Float] {
        [Float](unsafeUninitializedCapacity: rows * cols) { buffer, count in
            if rows * cols > 0 { decodeRows(0..<rows, into: buffer.baseAddress!) }
            count = rows * cols
        }
    }
}

/// What one rank of a sharded model holds: its place in the layout, the routed experts it has, and for each
/// split tensor the block `[start, end)` of one dimension it stores.
public struct WeightPartition: Sendable {
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

    public var tp: Int
    public var ep: Int
    public var tpRank: Int
    public var epRank: Int
    public var experts: Range<Int>
    public var blocks: [String: Block]

    public init(tp: Int, ep: Int, tpRank: Int, epRank: Int, experts: Range<Int>, blocks: [String: Block]) {
        self.tp = tp
        self.ep = ep
        self.tpRank = tpRank
        self.epRank = epRank
        self.experts = experts
        self.blocks = blocks
    }

    /// The tensor as this rank stores it: the split dimension cut to its block (and the logical `[out, in]` of
    /// a quantized module in proportion).
    func localize(_ t: ExpectedTensor) -> ExpectedTensor {
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

/// Finds each forward-pass slot's tensors through the architecture manifest (never by spelling names here).
public final class ModelWeights: @unchecked Sendable {
    public let config: ModelConfig
    public let forward: ForwardConfig
    public let store: any TensorStore
    public let dequant: Dequantization
    public let variant: ForwardVariant
    /// Set for one rank of a sharded model.
    public let partition: WeightPartition?
    private let expected: ExpectedTensorList
    private var slots: [SlotKey: [Int]] = [:]

    struct SlotKey: Hashable {
        var slot: String
        var layer: Int?
        var expert: Int?
    }

    public init(
        config: ModelConfig, store: any TensorStore, dequant: Dequantization = .exact, variant: ForwardVariant = .none,
        partition: WeightPartition? = nil
    ) throws(ForwardError) {
        self.config = config
        var forward = try ForwardConfig(config.text, section: config.architecture.textConfigKey ?? "config")
        if let beta = variant.betaFast { forward.rope.betaFast = beta }
        self.forward = forward
        self.store = store
        self.dequant = dequant
        self.variant = variant
        self.partition = partition
        do {
            var list = try ExpectedTensorList(config: config)
            if let partition { list.tensors = list.tensors.map(partition.localize) }
            expected = list
        } catch {
            throw .config(key: "config", reason: error.description)
        }
        for (i, t) in expected.tensors.enumerated() {
            slots[SlotKey(slot: t.slot, layer: t.layer, expert: t.expert), default: []].append(i)
        }
    }

    /// Whether the manifest has this slot for the layer (optional tensors such as the router bias).
    public func has(_ slot: String, layer: Int?, expert: Int? = nil) -> Bool {
        slots[SlotKey(slot: slot, layer: layer, expert: expert)] != nil
    }

    private func tensors(_ slot: String, layer: Int?, expert: Int?) throws(ForwardError) -> [ExpectedTensor] {
        guard let list = slots[SlotKey(slot: slot, layer: layer, expert: expert)] else {
            let where_ = [layer.map { "layer \($0)" }, expert.map { "expert \($0)" }].compactMap { $0 }.joined(separator: ", ")
            throw .unsupported("the architecture manifest has no \(slot) tensor\(where_.isEmpty ? "" : " for " + where_)")
        }
        return list.map { expected.tensors[$0] }
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

    /// The routed experts this model (or rank) holds.
    public var experts: Range<Int> { partition?.experts ?? 0..<forward.routing.experts }

    /// The first row a rank's block of the slot's matrix starts at in the whole matrix (0 when it is whole).
    public func firstRow(_ slot: String, layer: Int?) throws(ForwardError) -> Int {
        let parts = try tensors(slot, layer: layer, expert: nil)
        guard let block = parts.lazy.compactMap({ self.partition?.blocks[$0.name] }).first, block.dimension == 0 else { return 0 }
        return block.start
    }

    /// A 1-D float tensor (norm weights, router bias).
    public func vector(_ slot: String, layer: Int?) throws(ForwardError) -> [Float] {
        guard let t = try tensors(slot, layer: layer, expert: nil).first else { throw .missingTensor(slot) }
        let view = try checkedView(t)
        guard Decode.isFloat(view.dtype) else { throw .wrongTensor(name: t.name, reason: "dtype \(view.dtype.rawValue) is not a float type") }
        let count = view.shape.reduce(1, *)
        return [Float](unsafeUninitializedCapacity: count) { buffer, n in
            Decode.plain(view, from: 0, count: count, into: buffer.baseAddress!)
            n = count
        }
    }

    /// A Linear weight (or an embedding table) in whatever form it is stored.
    public func matrix(_ slot: String, layer: Int?, expert: Int? = nil) throws(ForwardError) -> WeightMatrix {
        let parts = try tensors(slot, layer: layer, expert: expert)
        let applies = layer.map(variant.applies) ?? true
        if let codes = parts.first(where: { $0.form == .packed }), let scales = parts.first(where: { $0.form == .scale }),
            let logical = codes.logicalShape, case let .packQuantized(bits, group, _)? = codes.method {
            let c = try checkedView(codes), s = try checkedView(scales)
            guard bits == 4 || bits == 8, 32 % bits == 0 else { throw .unsupported("\(bits)-bit pack-quantized weights (\(displayed(codes.name)))") }
            guard Decode.isFloat(s.dtype) else { throw .wrongTensor(name: scales.name, reason: "scales must be a float dtype, found \(s.dtype.rawValue)") }
            return WeightMatrix(
                name: codes.module ?? codes.name, rows: logical[0], cols: logical[1],
                storage: .packed(codes: c, scales: s, groupSize: group, bits: bits, dequant: dequant,
                                 highFirst: variant.nibblesHighFirst && applies))
        }
        if let blocks = parts.first(where: { $0.form == .blockScale }), let weight = parts.first(where: { $0.form == .plain }),
            case let .fp8Block(br, bc)? = blocks.method {
            let w = try checkedView(weight), s = try checkedView(blocks)
            guard w.dtype == .f8e4m3 else { throw .unsupported("FP8 block weights of dtype \(w.dtype.rawValue) (\(displayed(weight.name)))") }
            guard Decode.isFloat(s.dtype) else { throw .wrongTensor(name: blocks.name, reason: "block scales must be a float dtype") }
            return WeightMatrix(name: weight.name, rows: w.shape[0], cols: w.shape[1], storage: .fp8Block(weight: w, scales: s, blockRows: br, blockCols: bc))
        }
        guard let plain = parts.first(where: { $0.form == .plain }) else { throw .missingTensor("\(slot) weight") }
        let view = try checkedView(plain)
        guard view.shape.count == 2, Decode.isFloat(view.dtype), view.dtype != .f8e4m3 else {
            throw .wrongTensor(name: plain.name, reason: "expected a 2-D float matrix, found \(formatShape(view.shape)) \(view.dtype.rawValue)")
        }
        return WeightMatrix(name: plain.name, rows: view.shape[0], cols: view.shape[1], storage: .plain(view))
    }
}
