import JSONCore
import TensorCore

/// Token ids given as text: decimal ids separated by white space or commas, or the JSON `tokenize --json`
/// prints (`{"ids": [...]}`), or a JSON array.
public enum IDList {
    public static let maxIDs = 1 << 26

    public static func parse(_ text: String, source: String) throws(TokenizerError) -> [Int] {
        // Bytes, not Characters: "\r\n" is one Character in Swift, equal to neither "\r" nor "\n".
        let bytes = Array(text.utf8)
        func isSeparator(_ b: UInt8) -> Bool { b == 0x20 || b == 0x2C || b == 0x0A || b == 0x09 || b == 0x0D }
        let first = bytes.first { !isSeparator($0) || $0 == 0x2C }
        if first == UInt8(ascii: "{") || first == UInt8(ascii: "[") {
            let value: JSONValue
            do { value = try JSONDocument.parse(Array(text.utf8)) } catch {
                throw TokenizerError(.badID, "\(source): \(error)")
            }
            guard let list = value.arrayValue ?? value["ids"]?.arrayValue else {
                throw TokenizerError(.badID, "\(source): expected {\"ids\": [...]} or a JSON array of ids, found \(value.kindName)")
            }
            guard list.count <= maxIDs else { throw TokenizerError(.badID, "\(source): more than \(maxIDs) ids") }
            var ids: [Int] = []
            for (i, v) in list.enumerated() {
                guard let id = v.intValue else {
                    throw TokenizerError(.badID, "\(source): entry \(i) is \(v.kindName) \(v.numberText ?? ""), not a token id")
                }
                ids.append(id)
            }
            return ids
        }
        var ids: [Int] = []
        for (i, word) in bytes.split(whereSeparator: isSeparator).enumerated() {
            guard word.count <= 18, word.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let id = Int(String(decoding: word, as: UTF8.self)) else {
                throw TokenizerError(.badID, "\(source): entry \(i) '\(displayed(String(decoding: word.prefix(40), as: UTF8.self)))' is not a token id")
            }
            guard ids.count < maxIDs else { throw TokenizerError(.badID, "\(source): more than \(maxIDs) ids") }
            ids.append(id)
        }
        return ids
    }
}
