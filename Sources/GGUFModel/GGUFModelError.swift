import GGUF
import TensorCore

/// Why a GGUF file cannot serve the forward pass: each case names the file and, where there is one, the tensor
/// or metadata key, with what was found against what was expected.
public enum GGUFModelError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The reader refused the file (structure, split set, metadata types).
    case file(GGUFError)
    /// `general.architecture` is not one k2pack has a tensor map for.
    case unknownArchitecture(file: String, found: String?, known: [String])
    /// A tensor the architecture needs is absent.
    case missingTensor(file: String, tensor: String, slot: String)
    /// A tensor whose dimensions are not what the metadata implies.
    case wrongShape(file: String, tensor: String, found: [Int], expected: [Int])
    /// A tensor stored in a type k2pack cannot decode.
    case cannotDecode(file: String, tensor: String, type: String)
    /// Metadata that contradicts itself or the tensors (head counts, MLA lengths, …), or that the forward pass
    /// cannot run.
    case inconsistent(file: String, key: String, reason: String)
    /// The metadata, read as a config, was refused by the config rules (`Manifests/json/deepseek_v3_text.json`).
    case config(file: String, reason: String)
    /// The tensor map manifest itself is broken (a k2pack bug).
    case manifest(String)

    public var description: String {
        switch self {
        case .file(let error): error.description
        case let .unknownArchitecture(file, found, known):
            "\(displayed(file)): general.architecture is \(found.map { "\"\(displayed($0))\"" } ?? "absent"), expected one of \(known.map { "\"\($0)\"" }.joined(separator: ", ")) (the architectures k2pack can run from a GGUF)"
        case let .missingTensor(file, tensor, slot):
            "\(displayed(file)): tensor \(displayed(tensor)) (slot \(slot)) is missing"
        case let .wrongShape(file, tensor, found, expected):
            "\(displayed(file)): tensor \(displayed(tensor)) has ne \(Self.ne(found)), expected \(Self.ne(expected)) from the file's metadata"
        case let .cannotDecode(file, tensor, type):
            "\(displayed(file)): tensor \(displayed(tensor)) is stored as \(type), which k2pack cannot dequantize"
        case let .inconsistent(file, key, reason):
            "\(displayed(file)): \(displayed(key)): \(displayed(reason, limit: nil))"
        case let .config(file, reason):
            "\(displayed(file)): its metadata, read as a config: \(displayed(reason, limit: nil))"
        case .manifest(let reason):
            "the GGUF tensor map manifest: \(displayed(reason, limit: nil))"
        }
    }

    static func ne(_ dims: [Int]) -> String { "{" + dims.map(String.init).joined(separator: ", ") + "}" }
}
