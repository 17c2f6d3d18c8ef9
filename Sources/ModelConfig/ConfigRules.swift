import JSONCore
import TensorCore

/// One key of a config section as the manifest describes it (`config_keys` in a spec manifest): its type,
/// whether it must be present, its bounds, the values k2pack implements, and the default used when it is
/// absent or null. Every reader of config.json goes through these rules (`ModelConfig.parse`).
public struct ConfigKeyRule: Codable, Sendable {
    public enum Kind: String, Codable, Sendable { case integer, number, boolean, string, object }

    public var key: String
    public var type: Kind
    public var required: Bool?
    public var `default`: JSONScalar?
    /// Smallest allowed value (inclusive).
    public var min: Double?
    /// Values must be strictly greater than this.
    public var above: Double?
    /// Largest allowed value (inclusive).
    public var max: Double?
    public var multipleOf: Int?
    /// The only values allowed (strings).
    public var oneOf: [String]?
    /// Why only `oneOf` is allowed, for the message.
    public var why: String?

    enum CodingKeys: String, CodingKey {
        case key, type, required, `default`, min, above, max, why
        case multipleOf = "multiple_of"
        case oneOf = "one_of"
    }

    /// What the rule expects, for messages ("an integer ≥ 1").
    var expectation: String {
        switch type {
        case .integer: "an integer"
        case .number: "a number"
        case .boolean: "a boolean (true or false)"
        case .string: "a string"
        case .object: "an object"
        }
    }
}

/// A manifest default: a boolean, a number or a string.
public enum JSONScalar: Codable, Sendable, Equatable {
    case bool(Bool)
    case number(Double)
    case string(String)

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let b = try? container.decode(Bool.self) {
            self = .bool(b)
        } else if let d = try? container.decode(Double.self) {
            self = .number(d)
        } else {
            self = .string(try container.decode(String.self))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .bool(let b): try container.encode(b)
        case .number(let d): try container.encode(d)
        case .string(let s): try container.encode(s)
        }
    }

    var json: JSONValue {
        switch self {
        case .bool(let b): .bool(b)
        case .number(let d): d == d.rounded() && abs(d) < 1e15 ? .number(String(Int(d))) : .number("\(d)")
        case .string(let s): .string(s)
        }
    }
}

/// Applies a section's rules: every value checked, defaults filled in.
struct ConfigRuleChecker {
    let file: String
    let section: String

    /// The value of every ruled key after checking (defaults filled in; absent optional keys without a default
    /// are left out).
    func resolve(_ object: JSONObject, rules: [ConfigKeyRule]) throws(ConfigError) -> [String: JSONValue] {
        var resolved: [String: JSONValue] = [:]
        for rule in rules {
            if let value = try check(object[rule.key], rule) { resolved[rule.key] = value }
        }
        return resolved
    }

    func check(_ given: JSONValue?, _ rule: ConfigKeyRule) throws(ConfigError) -> JSONValue? {
        guard let value = given, !value.isNull else {
            if rule.required == true { throw .missingKey(file: file, section: section, key: rule.key) }
            return rule.default?.json
        }
        func wrongType(_ found: String) -> ConfigError {
            .wrongType(file: file, section: section, key: rule.key, expected: rule.expectation, found: found)
        }
        func invalid(_ reason: String) -> ConfigError { .invalidValue(file: file, section: section, key: rule.key, reason: reason) }
        switch rule.type {
        case .integer:
            guard let v = value.intValue else { throw wrongType(Self.describeNonInteger(value)) }
            if let min = rule.min, Double(v) < min {
                throw invalid(min == 0 ? "must not be negative, found \(v)" : "must be at least \(Self.format(min)), found \(v)")
            }
            if let max = rule.max, Double(v) > max { throw invalid("\(v) is implausible (k2pack accepts at most \(Self.format(max)))") }
            if let m = rule.multipleOf, m > 0, v % m != 0 { throw invalid("must be a multiple of \(m), found \(v)") }
        case .number:
            guard let d = value.doubleValue else { throw wrongType(value.kindName) }
            let text = value.numberText ?? "\(d)"
            guard d.isFinite, abs(d) <= Double(Float.greatestFiniteMagnitude) else {
                throw invalid("\(text) is not a finite float32 number (the forward pass computes in float32)")
            }
            guard d == 0 || abs(d) >= Double(Float.leastNormalMagnitude) else {
                throw invalid("\(text) is too small for float32 (under \(Float.leastNormalMagnitude), it would lose its precision or become 0)")
            }
            if let min = rule.min, d < min { throw invalid("must be at least \(Self.format(min)), found \(text)") }
            if let above = rule.above, d <= above { throw invalid("must be greater than \(Self.format(above)), found \(text)") }
            if let max = rule.max, d > max { throw invalid("must be at most \(Self.format(max)), found \(text)") }
        case .boolean:
            guard value.boolValue != nil else { throw wrongType(Self.describe(value)) }
        case .string:
            guard let s = value.stringValue else { throw wrongType(Self.describe(value)) }
            if let allowed = rule.oneOf, !allowed.contains(s) {
                let list = allowed.map { "\"\($0)\"" }.joined(separator: " or ")
                throw invalid("found \(Self.quoted(s)), expected \(list)\(rule.why.map { " (\($0))" } ?? "")")
            }
        case .object:
            guard value.objectValue != nil else { throw wrongType(Self.describe(value)) }
        }
        return value
    }

    /// "a string \"true\"", "the number 1", …: what was found, shown when short.
    static func describe(_ value: JSONValue) -> String {
        switch value {
        case .string(let s): "a string \(quoted(s))"
        case .number(let text) where text.count <= 32: "the number \(text)"
        default: value.kindName
        }
    }

    /// Why a value is not an integer: `64.0` and `6.4e1` are whole numbers written with a fraction or exponent
    /// (k2pack wants exact integers), `3.5` is not whole, `1e30` does not fit.
    static func describeNonInteger(_ value: JSONValue) -> String {
        guard let d = value.doubleValue, let text = value.numberText else { return describe(value) }
        let shown = text.count <= 32 ? text : String(text.prefix(29)) + "..."
        if !d.isFinite || abs(d) >= 9.2e18 { return "\(shown), which does not fit in a 64-bit integer" }
        if d == d.rounded() { return "\(shown), a whole number written with a fraction or exponent (write \(Int(d)))" }
        return "\(shown), which is not a whole number"
    }

    /// A string from the config in quotes, shown safely (`displayed`: control, bidi and format characters
    /// escaped) and shortened past 40 characters.
    static func quoted(_ s: String) -> String { "\"\(displayed(s, limit: 40))\"" }

    static func format(_ d: Double) -> String {
        d == d.rounded() && abs(d) < 1e15 ? String(Int(d)) : "\(d)"
    }
}
