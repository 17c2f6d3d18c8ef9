extension JSONObject {
    /// Sets `key` to `value`: replaces it in place when present, appends it otherwise.
    public mutating func set(_ key: String, _ value: JSONValue) {
        var copy = JSONObject()
        var replaced = false
        for (k, v) in entries {
            if k == key {
                copy.append(k, value)
                replaced = true
            } else {
                copy.append(k, v)
            }
        }
        if !replaced { copy.append(key, value) }
        self = copy
    }

    /// Removes `key` when present.
    public mutating func remove(_ key: String) {
        var copy = JSONObject()
        for (k, v) in entries where k != key { copy.append(k, v) }
        self = copy
    }
}

extension JSONValue {
    /// Pretty-printed JSON (two-space indent, keys in their order, numbers in their exact source text), the
    /// layout of transformers' `save_pretrained` when the keys are sorted.
    public func serialized(indent: Int = 0) -> String {
        let pad = String(repeating: " ", count: indent)
        let inner = String(repeating: " ", count: indent + 2)
        switch self {
        case .null: return "null"
        case .bool(let b): return b ? "true" : "false"
        case .number(let text): return text
        case .string(let s): return Self.quoted(s)
        case .array(let items):
            if items.isEmpty { return "[]" }
            return "[\n" + items.map { inner + $0.serialized(indent: indent + 2) }.joined(separator: ",\n") + "\n" + pad + "]"
        case .object(let object):
            if object.count == 0 { return "{}" }
            return "{\n" + object.entries.map { inner + Self.quoted($0.key) + ": " + $0.value.serialized(indent: indent + 2) }.joined(separator: ",\n")
                + "\n" + pad + "}"
        }
    }

    /// A JSON string literal; non-ASCII characters are written as they are (UTF-8).
    static func quoted(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where u.value < 0x20: out += "\\u" + String(repeating: "0", count: 4 - String(u.value, radix: 16).count) + String(u.value, radix: 16)
            default: out.unicodeScalars.append(u)
            }
        }
        return out + "\""
    }
}
