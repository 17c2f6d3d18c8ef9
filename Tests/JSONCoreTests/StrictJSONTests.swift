import JSONCore
import Testing

struct StrictInner: Decodable, Equatable {
    var a: Int
    var b: [UInt32]?
    enum CodingKeys: String, CodingKey, CaseIterable { case a, b }
}

struct StrictRecord: Decodable, Equatable {
    var name: String
    var flag: Bool
    var items: [StrictInner]
    var note: String?
    enum CodingKeys: String, CodingKey, CaseIterable { case name, flag, items, note }
}

/// A keyed type that does not list its keys: the strict decoder cannot tell an unknown key, so it refuses.
struct StrictUnlisted: Decodable { var x: Int }

@Suite("StrictJSON: untrusted records decoded through the strict scanner")
struct StrictJSONTests {
    func decode(_ text: String) throws(StrictDecodingError) -> StrictRecord { try StrictJSON.decode(StrictRecord.self, from: Array(text.utf8)) }

    func refusal(_ text: String) -> String? {
        do {
            _ = try decode(text)
            return nil
        } catch { return error.description }
    }

    @Test("a well-formed record decodes; an absent optional key is nil")
    func wellFormed() throws {
        let r = try decode(#"{"name": "n", "flag": true, "items": [{"a": -3, "b": [0, 4294967295]}, {"a": 1}]}"#)
        #expect(r == StrictRecord(name: "n", flag: true, items: [StrictInner(a: -3, b: [0, 4_294_967_295]), StrictInner(a: 1, b: nil)], note: nil))
    }

    @Test(
        "unknown keys, duplicates, wrong types, null, inexact numbers and missing keys are refused, naming the key",
        arguments: [
            (#"{"name": "n", "flag": true, "items": [], "extra": 1}"#, #"unknown key "extra""#),
            (#"{"name": "n", "flag": true, "items": [{"a": 1, "c": 2}]}"#, #"key "items[0]": unknown key "c""#),
            (#"{"name": "n", "name": "m", "flag": true, "items": []}"#, #"invalid JSON at byte 13: duplicate key "name""#),
            (#"{"name": 1, "flag": true, "items": []}"#, #"key "name": expected a string, found a number"#),
            (#"{"name": "n", "flag": "true", "items": []}"#, #"key "flag": expected a boolean, found a string"#),
            (#"{"name": "n", "flag": true, "items": {}}"#, #"key "items": expected an array, found an object"#),
            (#"{"name": "n", "flag": true, "items": [{"a": 1.5}]}"#, #"key "items[0].a": 1.5 is not an integer in the range of Int"#),
            (#"{"name": "n", "flag": true, "items": [{"a": 1, "b": [-1]}]}"#, #"key "items[0].b[0]": -1 is not an integer in the range of UInt32"#),
            (#"{"name": "n", "flag": true, "items": [{"a": 1e2}]}"#, #"key "items[0].a": 1e2 is not an integer in the range of Int"#),
            (#"{"name": null, "flag": true, "items": []}"#, #"key "name": expected a string, found null"#),
            (#"{"name": "n", "flag": true, "items": [], "note": null}"#, #"key "note": null is not a value: an absent optional key is omitted"#),
            (#"{"flag": true, "items": []}"#, #"missing required key "name""#),
            (#"{"name": "n", "flag": true, "items": [7]}"#, #"key "items[0]": expected an object, found a number"#),
            (#"[1]"#, "expected an object, found an array"),
            (#"{"name": "n", "#, "invalid JSON at byte 14: unexpected end of input, expected a string"),
        ])
    func refused(_ text: String, _ message: String) {
        #expect(refusal(text) == message)
    }

    @Test("a keyed type that does not list its keys is refused rather than decoded loosely")
    func unlistedKeys() {
        #expect(throws: StrictDecodingError(path: "", reason: "CodingKeys does not list its keys (CaseIterable)")) {
            _ = try StrictJSON.decode(StrictUnlisted.self, from: Array(#"{"x": 1}"#.utf8))
        }
    }
}
