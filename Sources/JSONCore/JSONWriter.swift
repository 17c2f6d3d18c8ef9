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
    /// JSON text: pretty-printed at `indent` (two spaces a level, keys in their order, numbers in their exact
    /// source text: the layout of transformers' `save_pretrained` when the keys are sorted), or on one line
    /// when `indent` is nil (safetensors headers).
    public func serialized(indent: Int? = 0) -> String {
        switch self {
        case .null: return "null"
        case .bool(let b): return b ? "true" : "false"
        case .number(let text): return text
        case .string(let s): return Self.quoted(s)
        case .array(let items):
            return Self.container("[", "]", items.map { $0.serialized(indent: indent.map { $0 + 2 }) }, indent: indent)
        case .object(let object):
            let members = object.entries.map { Self.quoted($0.key) + (indent == nil ? ":" : ": ") + $0.value.serialized(indent: indent.map { $0 + 2 }) }
            return Self.container("{", "}", members, indent: indent)
        }
    }

    private static func container(_ open: String, _ close: String, _ members: [String], indent: Int?) -> String {
        guard let indent else { return open + members.joined(separator: ",") + close }
        if members.isEmpty { return open + close }
        let pad = String(repeating: " ", count: indent), inner = String(repeating: " ", count: indent + 2)
        return open + "\n" + members.map { inner + $0 }.joined(separator: ",\n") + "\n" + pad + close
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
