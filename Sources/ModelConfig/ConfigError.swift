import JSONCore

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
            return "\(path): no config.json: k2pack needs the model's config.json next to its weights"
        case let .invalidJSON(file, error):
            return "\(file): not valid JSON: \(error.description)"
        case let .notAnObject(file, key):
            return "\(file): \(key.map { "\"\($0)\"" } ?? "the document") must be a JSON object"
        case let .unknownArchitecture(modelType, known):
            let found = modelType.map { "model_type \"\($0)\"" } ?? "no model_type"
            return "config.json: \(found) is not a supported architecture (supported: \(known.joined(separator: ", ")))"
        case let .missingKey(file, section, key):
            return "\(file): \(section) is missing required key \"\(key)\""
        case let .wrongType(file, section, key, expected, found):
            return "\(file): \(section) key \"\(key)\" must be \(expected), found \(found)"
        case let .invalidValue(file, section, key, reason):
            return "\(file): \(section) key \"\(key)\": \(reason)"
        case let .unsupportedQuantization(file, reason):
            return "\(file): unsupported quantization_config: \(reason)"
        case let .manifest(name, reason):
            return "manifest \(name): \(reason)"
        case let .expression(expression, reason):
            return "shape expression \"\(expression)\": \(reason)"
        }
    }
}
