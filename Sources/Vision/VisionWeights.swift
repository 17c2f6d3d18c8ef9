import Forward
import ModelConfig
import TensorCore

/// A stored weight matrix `[rows = out, cols = in]` (a 4-D patch-embedding kernel is viewed as
/// `[D, 3·P·P]`), decoded to float32 a block of rows at a time.
public struct VisionMatrix: @unchecked Sendable {
    public var name: String
    public var rows: Int
    public var cols: Int
    let view: TensorView

    /// Rows `range`, row-major, into `out`.
    func decodeRows(_ range: Range<Int>, into out: UnsafeMutablePointer<Float>) {
        VisionWeights.decode(view, from: range.lowerBound * cols, count: range.count * cols, into: out)
    }
}

/// The vision tower's and projector's tensors, found by the `slot` the architecture manifest gives each spec
/// (`Manifests/json/moonvit.json`), never by spelling names here: the name is the spec's template with the
/// part's prefix and the block number filled in, and every tensor is checked against the shape and dtype the
/// config implies (`ExpectedTensorList`) before it is used.
public final class VisionWeights: @unchecked Sendable {
    public let store: any TensorStore
    private let expected: ExpectedTensorList
    /// Slot → (name template with `{B}`, whether it is a Linear module, whether that module has a bias).
    private var templates: [String: (template: String, linear: Bool, bias: Bool)] = [:]

    public init(model: ModelConfig, store: any TensorStore) throws(VisionError) {
        self.store = store
        guard let part = model.visionPart else { throw .config("\(model.architecture.displayName) has no vision tower") }
        do throws(ConfigError) {
            expected = try ExpectedTensorList(config: model)
            for spec in try ManifestLibrary.specs(named: part.specs) {
                guard let slot = spec.slot, let template = spec.tensor ?? spec.linear else { continue }
                templates[slot] = (part.prefix + template, spec.linear != nil, spec.bias ?? false)
            }
        } catch {
            throw .config(error.description)
        }
    }

    /// The stored name of a slot's tensor (`suffix` `.weight` / `.bias` for a Linear module).
    func name(_ slot: String, block: Int?, suffix: String = "") throws(VisionError) -> String {
        guard let t = templates[slot] else { throw .config("the vision manifest has no tensor with slot \(slot)") }
        let filled = block.map { t.template.replacingOccurrences(of: "{B}", with: String($0)) } ?? t.template
        return filled + (t.linear ? suffix : "")
    }

    /// A tensor viewed in the store and checked against the manifest's expectation.
    func view(_ name: String) throws(VisionError) -> TensorView {
        guard let want = expected[name] else { throw .config("tensor \(name) is not among the tensors the config implies") }
        let view: TensorView
        do throws(ForwardError) { view = try store.view(name) } catch {
            if case .missingTensor = error { throw .tensor(name: name, reason: "missing from the checkpoint") }
            throw .tensor(name: name, reason: error.description)
        }
        guard view.shape == want.shape else {
            throw .tensor(name: name, reason: "shape \(formatShape(view.shape)), expected \(formatShape(want.shape))")
        }
        // Linear weights may also be stored as float32 (a lossless superset).
        guard want.dtypes.contains(view.dtype) || view.dtype == .f32, Self.isFloat(view.dtype) else {
            throw .tensor(name: name, reason: "dtype \(view.dtype.rawValue), expected \(want.dtypes.map(\.rawValue).joined(separator: " or "))")
        }
        guard CheckedMath.byteCount(shape: view.shape, dtype: view.dtype) == view.bytes.count else {
            throw .tensor(name: name, reason: "\(view.bytes.count) bytes do not match its shape \(formatShape(view.shape))")
        }
        return view
    }

    /// A tensor slot's values, whole (norms, biases, the position table).
    public func vector(_ slot: String, block: Int? = nil) throws(VisionError) -> [Float] {
        try floats(view(name(slot, block: block)))
    }

    /// A Linear module's bias.
    public func bias(_ slot: String, block: Int? = nil) throws(VisionError) -> [Float] {
        try floats(view(name(slot, block: block, suffix: ".bias")))
    }

    /// A Linear module's weight, or a tensor slot viewed as `[dim 0, product of the rest]`.
    public func matrix(_ slot: String, block: Int? = nil) throws(VisionError) -> VisionMatrix {
        let n = try name(slot, block: block, suffix: ".weight")
        let v = try view(n)
        guard let rows = v.shape.first, rows > 0 else { throw .tensor(name: n, reason: "shape \(formatShape(v.shape)) is not a matrix") }
        let cols = v.shape.dropFirst().reduce(1, *)
        return VisionMatrix(name: n, rows: rows, cols: cols, view: v)
    }

    /// Drops the pages viewed so far from the resident set (after every block: memory stays one block's).
    public func release() { store.releaseViewed() }

    func floats(_ view: TensorView) -> [Float] {
        let count = view.shape.reduce(1, *)
        return [Float](unsafeUninitializedCapacity: count) { buffer, n in
            if count > 0 { Self.decode(view, from: 0, count: count, into: buffer.baseAddress!) }
            n = count
        }
    }

    static func isFloat(_ dtype: DType) -> Bool { dtype == .bf16 || dtype == .f16 || dtype == .f32 }

    /// Elements `[from, from + count)` of a float tensor (checked by `view`: BF16, F16 or F32, little-endian),
    /// decoded as the text model decodes its plain tensors.
    static func decode(_ view: TensorView, from: Int, count: Int, into out: UnsafeMutablePointer<Float>) {
        Decode.plain(view, from: from, count: count, into: out)
    }
}
