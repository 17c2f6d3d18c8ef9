@testable import Checkpoint
import JSONCore
import Testing

/// The byte-keyed name table behind the index and the headers' duplicate check (issue 20, fourth pass).
@Suite("name table")
struct NameTableTests {
    func insert(_ table: inout NameTable, _ name: String, _ value: Int) -> Int? {
        var name = name
        return name.withUTF8 { table.insert(UnsafeRawBufferPointer($0), value: value) }
    }

    func value(_ table: NameTable, _ name: String) -> Int? {
        var name = name
        return name.withUTF8 { table.value(of: UnsafeRawBufferPointer($0)) }
    }

    @Test("names are found by their bytes, through growth, with either hash", arguments: [false, true])
    func findsEveryName(sipHash: Bool) {
        // Sized far too small, so the table grows many times.
        var table = NameTable(expectedCount: 1, expectedBytes: 1, sipHash: sipHash)
        let names = (0..<5_000).map { "model.layers.\($0 / 100).mlp.experts.\($0 % 100).gate_proj.weight_packed" } + ["", "a", "\u{e9}", "e\u{301}"]
        for (i, name) in names.enumerated() { #expect(insert(&table, name, i) == nil, "\(name)") }
        #expect(table.count == names.count)
        for (i, name) in names.enumerated() { #expect(value(table, name) == i, "\(name)") }
        // The same name again keeps its first value; NFC and NFD spellings are two names.
        #expect(insert(&table, names[17], 99) == 17)
        #expect(value(table, "\u{e9}") == 5_002 && value(table, "e\u{301}") == 5_003)
        #expect(value(table, "model.layers.0.mlp.experts.0.gate_proj.weight_packe") == nil)
        #expect(value(table, "model.layers.0.mlp.experts.0.gate_proj.weight_packed ") == nil)
        var seen: [ByteName: Int] = [:]
        table.forEach { name, value in seen[ByteName(String(decoding: name, as: UTF8.self))] = value }
        #expect(seen.count == names.count && names.indices.allSatisfy { seen[ByteName(names[$0])] == $0 })
        // The batch lookup gives the same answers, absent names included.
        let asked = names + ["model.layers.0.mlp.experts.0.gate_proj.weight_packe", "zz"]
        let batch = table.values(count: asked.count) { i, body in
            var name = asked[i]
            name.withUTF8 { body(UnsafeRawBufferPointer($0)) }
        }
        #expect(batch == asked.map { value(table, $0) })
        #expect(table.values(count: 0) { _, _ in }.isEmpty)
        table.mapValues { $0 + 1 }
        #expect(value(table, names[42]) == 43)
    }
}

@Suite("index read into a name table")
struct IndexNameTableTests {
    @Test("shard positions, entry count and the weight map agree with the index text")
    func positions() throws {
        let text = #"{"weight_map":{"b":"s2.safetensors","a\u00e9":"s1.safetensors","c":"s2.safetensors","d\"q":"s3.safetensors"}}"#
        let index = try ShardIndex.parse(Array(text.utf8))
        #expect(index.shardNames == ["s1.safetensors", "s2.safetensors", "s3.safetensors"])
        #expect(index.entryCount == 4)
        #expect(index.shardPosition(of: "a\u{e9}") == 0)
        #expect(index.shardPosition(of: "b") == 1 && index.shardPosition(of: "c") == 1)
        #expect(index.shardPosition(of: "d\"q") == 2)
        #expect(index.shardPosition(of: "ae\u{301}") == nil)
        #expect(index.shardPosition(of: "e") == nil)
        let asked = ["a\u{e9}", "b", "c", "d\"q", "ae\u{301}", "e"]
        #expect(index.shardPositions(count: asked.count) { asked[$0] } == [0, 1, 1, 2, nil, nil])
        #expect(index.weightMap == [
            ByteName("b"): "s2.safetensors", ByteName("a\u{e9}"): "s1.safetensors", ByteName("c"): "s2.safetensors",
            ByteName("d\"q"): "s3.safetensors",
        ])
        // A map given (or replaced) whole answers the same way; a shard missing from `shardNames` is -1.
        var made = ShardIndex(totalSize: nil, weightMap: index.weightMap)
        #expect(made.shardPosition(of: "b") == 1 && made.shardPosition(of: "e") == nil && made.entryCount == 4)
        made.weightMap[ByteName("x")] = "s9.safetensors"
        #expect(made.shardPosition(of: "x") == -1 && made.entryCount == 5)
        #expect(made.shardPositions(count: 3) { ["b", "x", "e"][$0] } == [1, -1, nil])
    }

    /// The index inserts its names in batches (issue 20, fifth pass): a duplicate is still reported at its own byte,
    /// with its own name, ahead of any later error, and the entry limit still counts names not yet inserted.
    @Test("index names inserted in batches: duplicates, later errors and the entry limit as one at a time")
    func batchedInserts() throws {
        func index(_ entries: [String], tail: String = "") -> [UInt8] {
            Array(("{\"weight_map\":{" + entries.map { "\"\($0)\":\"a.safetensors\"" }.joined(separator: ",") + tail + "}}").utf8)
        }
        func message(_ bytes: [UInt8], maxEntries: Int = ShardIndex.maxEntries) -> String {
            do {
                _ = try ShardIndex.parse(bytes, maxEntries: maxEntries)
                return "parsed"
            } catch {
                return error.description
            }
        }
        let names = (0..<100).map { "t\($0)" }
        #expect(try ShardIndex.parse(index(names)).entryCount == 100)
        // A duplicate at every distance from the batch boundary, with a malformed entry after it: the duplicate wins.
        for (first, second) in [(0, 1), (5, 31), (31, 32), (3, 70), (64, 99)] {
            var entries = names
            entries[second] = entries[first]
            let bytes = index(entries, tail: ",\"late\":7")
            let offset = bytes.count - (entries[second...].map { "\"\($0)\":\"a.safetensors\"" }.joined(separator: ",") + ",\"late\":7}}").utf8.count
            let expected = "model.safetensors.index.json: not valid JSON: invalid JSON at byte \(offset): duplicate key \"\(entries[first])\""
            #expect(message(bytes) == expected, "\(first), \(second)")
        }
        // No duplicate: the later error is the one reported.
        #expect(message(index(names, tail: ",\"late\":7")).contains("weight_map entry 'late' must be a file name string"))
        // The limit counts every name read so far.
        #expect(message(index(Array(names[..<40])), maxEntries: 39).contains("weight_map has more than 39 entries"))
        #expect(message(index(Array(names[..<39])), maxEntries: 39) == "parsed")
        // A duplicate before the limit is reached is reported, not the limit.
        var twice = Array(names[..<41])
        twice[20] = twice[3]
        #expect(message(index(twice), maxEntries: 39).contains("duplicate key \"t3\""))
    }
}
