/// A parsed JSON value. Objects keep their keys in document order; duplicate keys are refused by the parser.
public enum JSONValue: Sendable, Equatable {
    case null
    case bool(Bool)
    /// A number, kept as its exact source text so integers never pass through `Double`.
    case number(String)
    case string(String)
    case array([JSONValue])
    case object(JSONObject)

    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    public var boolValue: Bool? {
        if case .bool(let b) = self { return b }
        return nil
    }

    /// An exact integer (no fraction, no exponent, fits in `Int`); nil otherwise.
    public var intValue: Int? {
        guard case .number(let text) = self else { return nil }
        return Int(text)
    }

    /// Any number as a `Double` (integers included).
    public var doubleValue: Double? {
        guard case .number(let text) = self else { return nil }
        return Double(text)
    }

    /// A number's source text.
    public var numberText: String? {
        if case .number(let text) = self { return text }
        return nil
    }

    public var arrayValue: [JSONValue]? {
        if case .array(let a) = self { return a }
        return nil
    }

    public var objectValue: JSONObject? {
        if case .object(let o) = self { return o }
        return nil
    }

    public var isNull: Bool { self == .null }

    /// The kind of value, for error messages.
    public var kindName: String {
        switch self {
        case .null: "null"
        case .bool: "a boolean"
        case .number: "a number"
        case .string: "a string"
        case .array: "an array"
        case .object: "an object"
        }
    }

    public subscript(key: String) -> JSONValue? { objectValue?[key] }
}

/// A JSON object: ordered entries plus keyed lookup.
public struct JSONObject: Sendable, Equatable {
    public private(set) var entries: [(key: String, value: JSONValue)]
    /// Keys compared as bytes: canonically equivalent spellings (NFC and NFD) are different keys, as in Python.
    private var index: [ByteName: Int]

    public init() {
        entries = []
        index = [:]
    }

    /// Appends an entry; returns false (and changes nothing) when the key already exists.
    @discardableResult
    public mutating func append(_ key: String, _ value: JSONValue) -> Bool {
        guard index[ByteName(key)] == nil else { return false }
        index[ByteName(key)] = entries.count
        entries.append((key, value))
        return true
    }

    public subscript(key: String) -> JSONValue? {
        guard let i = index[ByteName(key)] else { return nil }
        return entries[i].value
    }

    public var keys: [String] { entries.map(\.key) }
    public var count: Int { entries.count }

    public static func == (lhs: JSONObject, rhs: JSONObject) -> Bool {
        lhs.entries.count == rhs.entries.count
            && zip(lhs.entries, rhs.entries).allSatisfy { ByteName($0.key) == ByteName($1.key) && $0.value == $1.value }
    }
}
