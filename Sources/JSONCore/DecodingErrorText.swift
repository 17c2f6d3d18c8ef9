/// A readable account of a `DecodingError` (a record we decode with `JSONDecoder`: `k2pack.json`, `shards.json`,
/// a `.k2p` table): which key, what was expected and what was found, never the raw error dump.
public enum DecodingErrorText {
    public static func describe(_ error: any Error) -> String {
        guard let decoding = error as? DecodingError else { return "\(error)" }
        switch decoding {
        case let .typeMismatch(type, context):
            return "\(at(context.codingPath))expected \(kind(type))\(found(context.debugDescription))"
        case let .valueNotFound(type, context):
            return "\(at(context.codingPath))expected \(kind(type)), found null"
        case let .keyNotFound(key, context):
            return "\(at(context.codingPath))missing required key \"\(key.stringValue)\""
        case let .dataCorrupted(context):
            let path = at(context.codingPath)
            if context.codingPath.isEmpty { return "not valid JSON" }
            return "\(path)invalid value"
        @unknown default:
            return "cannot be decoded"
        }
    }

    /// `key "layout.tp": ` for a coding path, empty at the top level.
    static func at(_ path: [any CodingKey]) -> String {
        guard !path.isEmpty else { return "" }
        var text = ""
        for key in path {
            if let index = key.intValue { text += "[\(index)]" } else { text += (text.isEmpty ? "" : ".") + key.stringValue }
        }
        return "key \"\(text)\": "
    }

    static func kind(_ type: Any.Type) -> String {
        switch type {
        case is Bool.Type: "a boolean"
        case is String.Type: "a string"
        case is Double.Type, is Float.Type: "a number"
        case is Int.Type, is Int64.Type, is Int32.Type, is UInt32.Type, is UInt64.Type, is UInt8.Type, is UInt.Type: "an integer"
        default:
            "\(type)".hasPrefix("Array") ? "an array" : "\(type)".hasPrefix("Dictionary") ? "an object" : "an object (\(type))"
        }
    }

    /// ", found a string" from Foundation's "Expected to decode Int but found a string instead.".
    static func found(_ debug: String) -> String {
        guard let start = debug.firstRange(of: "found "), let end = debug[start.upperBound...].firstRange(of: " instead") else {
            return ""
        }
        let what = debug[start.upperBound..<end.lowerBound]
        return what.count <= 40 ? ", found \(what)" : ""
    }
}
