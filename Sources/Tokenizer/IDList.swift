import JSONCore

/// Token ids given as text: decimal ids separated by white space or commas, or the JSON `tokenize --json`
/// prints (`{"ids": [...]}`), or a JSON array.
public enum IDList {
    public static let maxIDs = 1 << 26

    public static func parse(_ text: String, source: String) throws(TokenizerError) -> [Int] {
        let trimmed = text.drop { $0 == " " || $0 == "\n" || $0 == "\t" || $0 == "\r" }
        if trimmed.first == "{" || trimmed.first == "[" {
            let value: JSONValue
            do { value = try JSONDocument.parse(Array(text.utf8)) } catch {
                throw TokenizerError(.badID, "\(source): \(error)")
            }
            guard let list = value.arrayValue ?? value["ids"]?.arrayValue else {
                throw TokenizerError(.badID, "\(source): expected {\"ids\": [...]} or a JSON array of ids, found \(value.kindName)")
            }
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
        for (i, word) in text.split(whereSeparator: { $0 == " " || $0 == "," || $0 == "\n" || $0 == "\t" || $0 == "\r" }).enumerated() {
            guard word.count <= 18, word.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let id = Int(word) else {
                throw TokenizerError(.badID, "\(source): entry \(i) '\(word.prefix(40))' is not a token id")
            }
            guard ids.count < maxIDs else { throw TokenizerError(.badID, "\(source): more than \(maxIDs) ids") }
            ids.append(id)
        }
        return ids
    }
}
