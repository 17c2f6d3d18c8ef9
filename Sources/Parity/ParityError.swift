import TensorCore

/// Why a parity run or a logit comparison cannot start: the layer range, or a dump that does not fit the other
/// side. (A dump that cannot be read is an `HDF5File.HDF5Error`; logits that cannot be compared, a `LogitError`.)
public enum ParityError: Error, Equatable, Sendable, CustomStringConvertible {
    /// `--layers first..last` reaches past the model's `layers` layers.
    case layersOutside(first: Int, last: Int, layers: Int)
    /// A run starting at `layer` > 0 needs the dump's `layers/<layer>/layer_in`.
    case missingLayerInput(dump: String, layer: Int)
    /// `compare`: the reference dump has no `logits`.
    case noLogits(dump: String)
    /// `compare`: the model's vocabulary (`found`) is not the reference logits' (`expected`).
    case vocabularyMismatch(model: String, found: Int, expected: Int)
    /// `compare`: the test dump's `input_ids` shape is not the reference's.
    case inputShapeMismatch(test: String, found: [Int], reference: String, expected: [Int])
    /// `compare`: same shape, other token ids.
    case otherInputIDs(test: String, reference: String)
    /// `compare`: the test dump has no `logits` of the reference's shape.
    case noMatchingLogits(dump: String, expected: [Int])

    public var description: String {
        switch self {
        case let .layersOutside(first, last, layers): "--layers \(first)..\(last) is outside the model's layers 0..\(layers - 1)"
        case let .missingLayerInput(dump, layer): "\(displayed(dump)): starting at layer \(layer) needs layers/\(layer)/layer_in in the reference"
        case .noLogits(let dump): "\(displayed(dump)) has no logits dataset"
        case let .vocabularyMismatch(model, found, expected): "\(displayed(model)) has a vocabulary of \(found), the reference logits \(expected)"
        case let .inputShapeMismatch(test, found, reference, expected): "\(displayed(test)) has input_ids of shape \(found), \(displayed(reference)) \(expected)"
        case let .otherInputIDs(test, reference): "\(displayed(test)) was made from other input_ids than \(displayed(reference))"
        case let .noMatchingLogits(dump, expected): "\(displayed(dump)) has no logits dataset of shape \(expected)"
        }
    }
}
