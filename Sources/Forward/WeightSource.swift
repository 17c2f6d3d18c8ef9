import ModelConfig

/// Where the forward pass's weights come from: one conforming type per stored form of a model. The pass asks
/// for *slots* (`WeightSlot`, with a layer and for routed experts an expert), never for tensor names, so a new
/// file format plugs in as one new type and nothing in the forward pass changes.
///
/// Implementations: `ModelStore.ManifestWeightSource`, which finds each slot's tensors through the architecture
/// manifest in a Hugging Face folder, a k2pack folder or one rank of a shard set. A GGUF reader will be another.
///
/// Contract:
/// - `matrix` returns a Linear weight (or an embedding table) `[out, in]` in its stored form (plain float, INT4
///   packed with its scales, FP8 blocks); the pass decodes rows as it needs them. For a routed expert, `expert`
///   is its index, and the pass asks only for experts in `experts`. Shapes and dtypes are checked by the source.
/// - `vector` returns a 1-D float tensor (norm weights, the router bias) decoded to float32.
/// - `has` says whether an optional slot is present (the router bias exists only under `noaux_tc`).
/// - A source holding one rank of a sharded model returns that rank's blocks: `partition` says which, and
///   `firstRow` where a row-split matrix's block (vocabulary rows) starts in the whole matrix.
/// - Views stay valid while the source lives; `releaseViewed` drops the pages viewed so far from the resident
///   set (the pass calls it after every layer, so memory stays bounded by one layer).
public protocol WeightSource: AnyObject, Sendable {
    /// The text model's dimensions and settings.
    var forward: ForwardConfig { get }
    /// How INT4 weights are decoded (reported by `parity`).
    var dequant: Dequantization { get }
    /// Set for one rank of a sharded model.
    var partition: WeightPartition? { get }
    func matrix(_ slot: WeightSlot, layer: Int?, expert: Int?) throws(ForwardError) -> WeightMatrix
    func vector(_ slot: WeightSlot, layer: Int?) throws(ForwardError) -> [Float]
    func has(_ slot: WeightSlot, layer: Int?) -> Bool
    func firstRow(_ slot: WeightSlot, layer: Int?) throws(ForwardError) -> Int
    func releaseViewed()
}

/// Stored tensors by their checkpoint names (a Hugging Face folder, a k2pack folder, one rank of a shard set):
/// the storage under `ModelStore.ManifestWeightSource`, and what the vision tower reads. The language model's
/// forward pass never calls it; it asks its `WeightSource` for slots.
public protocol TensorStore: AnyObject, Sendable {
    /// The tensor stored under its checkpoint name.
    func view(_ name: String) throws(ForwardError) -> TensorView
    /// Drops the pages viewed so far from this process's resident set (the page cache keeps them):
    /// called after every layer so memory stays bounded by one layer.
    func releaseViewed()
}

extension WeightSource {
    public func matrix(_ slot: WeightSlot, layer: Int?) throws(ForwardError) -> WeightMatrix { try matrix(slot, layer: layer, expert: nil) }

    /// The routed experts this source holds.
    public var experts: Range<Int> { partition?.experts ?? 0..<forward.routing.experts }
}
