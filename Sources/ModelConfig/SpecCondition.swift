import Foundation
import JSONCore

/// A manifest spec's `when` rule, `key == value` or `key != value`, parsed when the manifest loads: a rule in
/// any other form is an error naming the manifest, never read as "always true".
public struct SpecCondition: Sendable, Equatable {
    /// The config key compared (looked up in the spec's config section).
    public var key: String
    /// The text the key's value is compared with (`true`, `null`, `noaux_tc`, `8`…).
    public var value: String
    /// `!=` rather than `==`.
    public var negated: Bool

    public init(key: String, value: String, negated: Bool) {
        self.key = key
        self.value = value
        self.negated = negated
    }

    /// `manifest` names the manifest in the error.
    public init(parsing rule: String, manifest: String) throws(ConfigError) {
        let negated = rule.contains("!=")
        let parts = rule.components(separatedBy: negated ? "!=" : "==").map { $0.trimmingCharacters(in: .whitespaces) }
        guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty,
            !parts.contains(where: { $0.contains("=") || $0.contains("!") || $0.contains(" ") })
        else {
            throw .manifest(name: manifest, reason: "when rule \"\(rule)\" is not `key == value` or `key != value`")
        }
        key = parts[0]
        value = parts[1]
        self.negated = negated
    }

    /// Whether the rule holds for the config: strings, booleans and numbers compare by their text, and an absent
    /// or null key reads as `null` (an array or object equals no value).
    public func holds(lookup: (String) -> JSONValue?) -> Bool {
        let text: String
        switch lookup(key) {
        case .string(let s)?: text = s
        case .bool(let b)?: text = b ? "true" : "false"
        case .number(let n)?: text = n
        case .null?, nil: text = "null"
        default: return negated
        }
        return (text == value) != negated
    }
}
