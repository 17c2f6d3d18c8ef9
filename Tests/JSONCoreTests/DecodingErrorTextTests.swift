import Foundation
import JSONCore
import Testing

/// Records decoded with `JSONDecoder` report which key, what was expected and what was found, never a raw
/// `DecodingError` or `NSError` dump.
@Suite("readable decoding errors")
struct DecodingErrorTextTests {
    struct Record: Decodable {
        struct Layout: Decodable { var tp: Int; var ep: Int }
        var version: Int
        var name: String
        var flag: Bool
        var files: [String]
        var layout: Layout
    }

    func describe(_ json: String) -> String {
        do {
            _ = try JSONDecoder().decode(Record.self, from: Data(json.utf8))
            return "decoded"
        } catch {
            return DecodingErrorText.describe(error)
        }
    }

    let good = #"{"version": 1, "name": "a", "flag": true, "files": ["x"], "layout": {"tp": 1, "ep": 1}}"#

    @Test("wrong types, nulls, missing keys, nested paths and bad JSON are named plainly")
    func messages() {
        #expect(describe(good) == "decoded")
        #expect(describe(good.replacingOccurrences(of: #""version": 1"#, with: #""version": "x""#)) == #"key "version": expected an integer, found a string"#)
        #expect(describe(good.replacingOccurrences(of: #""flag": true"#, with: #""flag": 3"#)) == #"key "flag": expected a boolean, found number"#)
        #expect(describe(good.replacingOccurrences(of: #""name": "a""#, with: #""name": null"#)) == #"key "name": expected a string, found null"#)
        #expect(describe(good.replacingOccurrences(of: #""name": "a", "#, with: "")) == #"missing required key "name""#)
        #expect(describe(good.replacingOccurrences(of: #"["x"]"#, with: #"["x", 7]"#)) == #"key "files[1]": expected a string, found number"#)
        #expect(describe(good.replacingOccurrences(of: #", "ep": 1"#, with: "")) == #"key "layout": missing required key "ep""#)
        #expect(describe("{") == "not valid JSON")
        #expect(describe("[1]").hasPrefix("expected an object"))
        for text in [describe("{"), describe(good.replacingOccurrences(of: #""flag": true"#, with: #""flag": 3"#))] {
            #expect(!text.contains("DecodingError") && !text.contains("NSError") && !text.contains("CodingKeys") && !text.contains("Domain="), "\(text)")
        }
    }
}
