import JSONCore
import TensorCore

/// Problems with config.json, a manifest, or the pairing of the two.
public enum ConfigError: Error, Equatable, Sendable, CustomStringConvertible {
    case missingConfig(path: String)
    case invalidJSON(file: String, error: JSONError)
    case notAnObject(file: String, key: String?)
    case unknownArchitecture(modelType: String?, known: [String])
    case missingKey(file: String, section: String, key: String)
    case wrongType(file: String, section: String, key: String, expected: String, found: String)
    case invalidValue(file: String, section: String, key: String, reason: String)
    case unsupportedQuantization(file: String, reason: String)
    case manifest(name: String, reason: String)
    case expression(expression: String, reason: String)

    public var description: String {
        switch self {
        case let .missingConfig(path):
            return "\(displayed(path)): no config.json: k2pack needs the model's config.json next to its weights"
        case let .invalidJSON(file, error):
            return "\(displayed(file)): not valid JSON: \(error.description)"
        case let .notAnObject(file, key):
            return "\(displayed(file)): \(key.map { "\"\(displayed($0))\"" } ?? "the document") must be a JSON object"
        case let .unknownArchitecture(modelType, known):
            let found = modelType.map { "model_type \"\(displayed($0))\"" } ?? "no model_type"
            return "config.json: \(found) is not a supported architecture (supported: \(known.joined(separator: ", ")))"
        case let .missingKey(file, section, key):
            return "\(displayed(file)): \(displayed(section)) is missing required key \"\(displayed(key))\""
        case let .wrongType(file, section, key, expected, found):
            return "\(displayed(file)): \(displayed(section)) key \"\(displayed(key))\" must be \(expected), found \(displayed(found))"
        case let .invalidValue(file, section, key, reason):
            return "\(displayed(file)): \(displayed(section)) key \"\(displayed(key))\": \(displayed(reason, limit: nil))"
        case let .unsupportedQuantization(file, reason):
            return "\(displayed(file)): unsupported quantization_config: \(displayed(reason, limit: nil))"
        case let .manifest(name, reason):
            return "manifest \(displayed(name)): \(displayed(reason, limit: nil))"
        case let .expression(expression, reason):
            return "shape expression \"\(displayed(expression))\": \(displayed(reason, limit: nil))"
        }
    }
}
