import GGUF
import GGUFModel
import TensorCore

/// Why a GGUF cannot be written back as a Hugging Face checkpoint. Each case names the file and, where there is
/// one, the tensor, with what was found against what was expected.
public enum GGUFUnpackError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The GGUF could not serve as a model (reader refusal, unknown architecture, a missing or misshapen tensor,
    /// inconsistent metadata): the weight source's own error.
    case source(GGUFModelError)
    /// `--to hf` with Q4_0 experts: a block whose scale `d` compressed-tensors cannot hold as it is (not a finite,
    /// positive value that BF16 represents exactly).
    case inexactScale(file: String, tensor: String, expert: Int, row: Int, group: Int, value: Float)
    /// A `--layout` k2pack cannot write.
    case layout(file: String, reason: String)
    /// `--vision-from`: the folder cannot supply K2.5's vision tower and config.
    case visionSource(folder: String, reason: String)
    /// The config.json written from the metadata was refused by k2pack's own config rules (a k2pack bug).
    case config(file: String, reason: String)

    public var description: String {
        switch self {
        case .source(let error): error.description
        case let .inexactScale(file, tensor, expert, row, group, value):
            "\(displayed(file)): tensor \(displayed(tensor)), expert \(expert), row \(row), group \(group): Q4_0 scale d = \(value) "
                + "is not a finite positive value that BF16 holds exactly, so the block cannot be written as compressed-tensors INT4 "
                + "without changing the weights; use `k2pack dequantize` for a BF16/F32 checkpoint of this file"
        case let .layout(file, reason):
            "\(displayed(file)): \(displayed(reason, limit: nil))"
        case let .visionSource(folder, reason):
            "\(displayed(folder)) (--vision-from): \(displayed(reason, limit: nil))"
        case let .config(file, reason):
            "\(displayed(file)): the config.json made from its metadata was refused: \(displayed(reason, limit: nil))"
        }
    }
}
