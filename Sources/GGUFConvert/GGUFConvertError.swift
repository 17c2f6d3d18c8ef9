import FileIO
import TensorCore

/// Why `convert --to gguf` refused or failed. Every message names the file or tensor and what was found against
/// what was expected.
public enum GGUFConvertError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The checkpoint cannot be converted (`convert`'s own refusals: structural problems, no config).
    case sourceInvalid(reason: String)
    /// A source tensor k2pack cannot write as the GGUF tensor (its form, dtype or shape).
    case unsupportedSource(file: String, tensor: String, gguf: String, reason: String)
    /// The routed experts are BF16 (no INT4 groups): nothing to move nibble for nibble.
    case bf16Experts(file: String, tensor: String, gguf: String)
    /// A group scale F16 cannot hold exactly (without `--allow-inexact-scales`).
    case inexactScale(file: String, tensor: String, expert: Int?, row: Int, group: Int, scale: Float, f16: Float)
    /// The same metadata key twice.
    case duplicateKey(key: String)
    /// The same tensor name twice.
    case duplicateTensor(tensor: String)
    /// A tensor the container cannot describe (name too long, too many dimensions, rows not whole blocks).
    case invalidTensor(tensor: String, reason: String)
    /// A metadata value the container cannot hold (`general.alignment` not a u32 power of two).
    case invalidMetadata(key: String, reason: String)
    /// The folder has no tokenizer files and `--no-tokenizer` was not given.
    case noTokenizer(folder: String)
    /// The tokenizer's metadata could not be made.
    case tokenizer(folder: String, reason: String)
    /// The output cannot be written there.
    case output(path: String, reason: String)
    /// `--split-max-size` text that is not a size.
    case badSize(text: String, reason: String)
    case io(path: String, operation: String, reason: String)
    /// `--mmproj`: the checkpoint cannot give the mmproj file (no vision tower, a preprocessor value or tensor
    /// missing, a value of the wrong kind).
    case mmproj(file: String, reason: String)

    public var description: String {
        switch self {
        case let .sourceInvalid(reason):
            return "cannot convert to GGUF: \(reason)"
        case let .unsupportedSource(file, tensor, gguf, reason):
            return "\(displayed(file)): tensor \(displayed(tensor)) (GGUF \(gguf)): \(reason)"
        case let .bf16Experts(file, tensor, gguf):
            return "\(displayed(file)): routed expert \(displayed(tensor)) (GGUF \(gguf)) is a plain .weight, not INT4 pack-quantized: "
                + "convert --to gguf moves INT4 groups into Q4_0 without arithmetic and does not quantize; run `k2pack quantize` on the folder first, then convert its output"
        case let .inexactScale(file, tensor, expert, row, group, scale, f16):
            let at = (expert.map { "expert \($0), " } ?? "") + "row \(row), group \(group)"
            return "\(displayed(file)): tensor \(displayed(tensor)), \(at): scale \(scale) is not exact in F16 (it would become \(f16)); "
                + "Q4_0's scale is an F16, so this group cannot be moved losslessly. Pass --allow-inexact-scales to round such scales (they are counted and reported)"
        case let .duplicateKey(key):
            return "GGUF metadata key \(displayed(key)) is given twice (each key may appear once)"
        case let .duplicateTensor(tensor):
            return "GGUF tensor \(displayed(tensor)) is planned twice (each name may appear once)"
        case let .invalidTensor(tensor, reason):
            return "GGUF tensor \(displayed(tensor)): \(reason)"
        case let .invalidMetadata(key, reason):
            return "GGUF metadata key \(displayed(key)): \(reason)"
        case let .noTokenizer(folder):
            return "\(displayed(folder)) has no tokenizer files (tiktoken.model or tokenizer.json): llama.cpp cannot load a GGUF without a vocabulary. "
                + "Add the tokenizer files to the folder, or pass --no-tokenizer to write the weights and model metadata only"
        case let .tokenizer(folder, reason):
            return "\(displayed(folder)): cannot write the tokenizer into the GGUF: \(displayed(reason, limit: nil))"
        case let .output(path, reason):
            return "\(displayed(path)): \(reason)"
        case let .badSize(text, reason):
            return "--split-max-size \(displayed(text)): \(reason)"
        case let .io(path, operation, reason):
            return "\(displayed(path)): cannot \(operation): \(displayed(reason, limit: nil))"
        case let .mmproj(file, reason):
            return "--mmproj: \(displayed(file)): \(displayed(reason, limit: nil))"
        }
    }

    static func from(_ error: FileIOError, path: String) -> GGUFConvertError {
        if case let .io(p, operation, reason) = error { return .io(path: p, operation: operation, reason: reason) }
        return .io(path: path, operation: "write", reason: error.description)
    }
}
