import Checkpoint
import JSONCore
import TestSupport
import Testing

/// The header and index readers recognize the usual spellings (known keys, a shard name repeated from the entry
/// before) without building strings; every other spelling must read, and fail, exactly as before.
@Suite("header and index fast paths keep every rule")
struct FastPathTests {
    func header(_ json: String, data: [UInt8]) throws(CheckpointError) -> SafetensorsFile {
        try open(SafetensorsBuilder.file(headerBytes: Array(json.utf8), data: data))
    }

    @Test("keys spelled with escapes read as the plain keys")
    func escapedKeys() throws {
        let file = try header(
            #"{"a":{"dt\u0079pe":"U8","sh\u0061pe":[1],"data_offsets":[0,1]},"b":{"dtype":"U8","shape":[1],"d\u0061ta_offsets":[1,2]}}"#,
            data: [1, 2])
        #expect(file.tensors.map(\.name) == ["a", "b"])
        #expect(file.tensors.map(\.dtype) == [.u8, .u8])
        #expect(file.tensors.map(\.dataBegin) == [0, 1])
        #expect(file.tensors.map(\.dataEnd) == [1, 2])
    }

    @Test(
        "every malformed data_offsets is refused, naming the tensor",
        arguments: [
            (#""data_offsets":[0,1,2]"#, "data_offsets must hold exactly 2 integers, found 3"),
            (#""data_offsets":[]"#, "data_offsets must hold exactly 2 integers, found 0"),
            (#""data_offsets":[0]"#, "data_offsets must hold exactly 2 integers, found 1"),
            ("\"data_offsets\":[" + Array(repeating: "0", count: 65).joined(separator: ",") + "]", "data_offsets has more than 64 entries"),
            (#""data_offsets":[0,"1"]"#, "data_offsets must be a non-negative integer"),
            (#""data_offsets":[0,1.5]"#, "data_offsets must be a non-negative integer"),
            (#""data_offsets":[0,-1]"#, "data_offsets must be a non-negative integer"),
            (#""data_offsets":{"a":1}"#, "data_offsets must be an array of integers"),
            (#""data_offsets":"0,1""#, "data_offsets must be an array of integers"),
        ])
    func offsets(_ field: String, _ fragment: String) {
        do {
            _ = try header(#"{"a":{"dtype":"U8","shape":[1],"# + field + "}}", data: [0])
            Issue.record("accepted \(field)")
        } catch {
            guard case .tensorEntryMalformed(let file, let tensor, _) = error else {
                Issue.record("\(field): wrong error \(error)")
                return
            }
            #expect(file == "t.safetensors" && tensor == "a")
            #expect(error.description.contains(fragment), "\(error.description)")
        }
    }

    @Test(
        "unclosed arrays and repeated keys are refused as JSON errors, whatever the spelling",
        arguments: [
            (#"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1 }}"#, "',' or ']' in data_offsets"),
            (#"{"a":{"dtype":"U8","shape":[1 "data_offsets":[0,1]}}"#, "',' or ']' in shape"),
            (#"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"data_offsets":[0,1]}}"#, #"duplicate key "data_offsets" in tensor"#),
            (#"{"a":{"dtype":"U8","dt\u0079pe":"U8","shape":[1],"data_offsets":[0,1]}}"#, #"duplicate key "dtype" in tensor"#),
            (#"{"a":{"shape":[1],"sh\u0061pe":[1],"dtype":"U8","data_offsets":[0,1]}}"#, #"duplicate key "shape" in tensor"#),
        ])
    func jsonErrors(_ json: String, _ fragment: String) {
        do {
            _ = try header(json, data: [0])
            Issue.record("accepted \(json)")
        } catch {
            guard case .headerJSON(let file, _) = error else {
                Issue.record("\(json): wrong error \(error)")
                return
            }
            #expect(file == "t.safetensors")
            #expect(error.description.contains(fragment), "\(error.description)")
        }
    }

    func index(_ json: String) throws(CheckpointError) -> ShardIndex {
        try ShardIndex.parse(Array(json.utf8))
    }

    @Test("a shard name repeated with another spelling, or after a different one, reads the same")
    func shardNames() throws {
        let i = try index(#"{"weight_map":{"a":"s1.safetensors","b":"s\u0031.safetensors","c":"s1.safetensors","d":"s1.safetensors2","e":"s1.safetensors"}}"#)
        #expect(i.weightMap == byteKeys(["a": "s1.safetensors", "b": "s1.safetensors", "c": "s1.safetensors", "d": "s1.safetensors2", "e": "s1.safetensors"]))
        #expect(i.shardNames == ["s1.safetensors", "s1.safetensors2"])
        // A name holding an escaped quote is never matched on its bytes, and still reads whole.
        let quoted = try index(#"{"weight_map":{"a":"s\".safetensors","b":"s\".safetensors"}}"#)
        #expect(quoted.weightMap == byteKeys(["a": "s\".safetensors", "b": "s\".safetensors"]))
    }

    @Test(
        "a tensor listed twice is refused whether or not its shard repeats the entry before",
        arguments: [
            #"{"weight_map":{"a":"s.safetensors","a":"s.safetensors"}}"#,
            #"{"weight_map":{"a":"s.safetensors","b":"t.safetensors","b":"t.safetensors"}}"#,
            #"{"weight_map":{"a":"s.safetensors","a":"t.safetensors"}}"#,
            #"{"weight_map":{"a":"s.safetensors","b":"t.safetensors","a":"s.safetensors"}}"#,
        ])
    func duplicateTensor(_ json: String) {
        do {
            _ = try index(json)
            Issue.record("accepted \(json)")
        } catch {
            guard case .indexMalformed(let file, _) = error else {
                Issue.record("\(json): wrong error \(error)")
                return
            }
            #expect(file == ShardIndex.fileName)
            #expect(error.description.contains(#"duplicate key ""#), "\(error.description)")
        }
    }

    @Test(
        "an unsafe shard name is refused after plain ones",
        arguments: [
            (#"{"weight_map":{"a":"s.safetensors","b":"../x.safetensors"}}"#, "../x.safetensors"),
            (#"{"weight_map":{"a":"s.safetensors","b":"s.safetensors","c":"d/s.safetensors"}}"#, "d/s.safetensors"),
            (#"{"weight_map":{"a":"s.safetensors","b":".."}}"#, ".."),
        ])
    func unsafeShard(_ json: String, _ shard: String) {
        do {
            _ = try index(json)
            Issue.record("accepted \(json)")
        } catch {
            #expect(error == .unsafeShardName(index: ShardIndex.fileName, shard: shard))
            #expect(error.description.contains("is not a plain file name"), "\(error.description)")
        }
    }
}

/// The third pass of issue 20: a dtype repeated from the entry before is matched on the bytes, the index collects
/// its shard names while it reads, and the folder's location table is built only when needed.
@Suite("inspect's third-pass fast paths keep every rule")
struct InspectFastPathTests {
    func header(_ json: String, data: [UInt8]) throws(CheckpointError) -> SafetensorsFile {
        try open(SafetensorsBuilder.file(headerBytes: Array(json.utf8), data: data))
    }

    @Test("dtypes that repeat, change, are escaped or unknown read as before")
    func dtypes() throws {
        let file = try header(
            #"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"b":{"dtype":"U8","shape":[1],"data_offsets":[1,2]},"c":{"dtype":"I8","shape":[1],"data_offsets":[2,3]},"d":{"dtype":"U\u0038","shape":[1],"data_offsets":[3,4]},"e":{"dtype":"U8","shape":[1],"data_offsets":[4,5]}}"#,
            data: [1, 2, 3, 4, 5])
        #expect(file.tensors.map(\.dtype) == [.u8, .u8, .i8, .u8, .u8])
        // A dtype that starts like the one before, and one that is not a dtype at all.
        for (spelling, shown) in [(#""U8 ""#, "U8 "), (#""U9""#, "U9"), (#""U""#, "U")] {
            #expect(throws: CheckpointError.unknownDType(file: "t.safetensors", tensor: "b", dtype: shown)) {
                _ = try header(
                    #"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"b":{"dtype":"# + spelling + #","shape":[1],"data_offsets":[1,2]}}"#,
                    data: [1, 2])
            }
        }
        #expect(
            CheckpointError.unknownDType(file: "t.safetensors", tensor: "b", dtype: "U9").description
                .hasPrefix(#"t.safetensors: tensor 'b': unknown dtype "U9" (known: F4, "#))
    }

    @Test("the index's shard names are its distinct values, sorted as bytes, however they repeat")
    func shardNames() throws {
        let text = #"{"weight_map":{"a":"s2.safetensors","b":"s1.safetensors","c":"s2.safetensors","d":"s2.safetensors","e":"s1.safetensors"}}"#
        let index = try ShardIndex.parse(Array(text.utf8))
        #expect(index.shardNames == ["s1.safetensors", "s2.safetensors"])
        #expect(index.shardNames == ShardIndex(totalSize: nil, weightMap: index.weightMap).shardNames)
    }

    /// A folder of two shards and an index: `second` holds `b` and, when `repeated`, `a` again.
    func folder(repeated: Bool) -> TemporaryDirectory {
        let dir = TemporaryDirectory()
        dir.write("s1.safetensors", SafetensorsBuilder([.init("a", "U8", [1], [1])]).bytes())
        var second: [SafetensorsBuilder.Tensor] = [.init("b", "U8", [1], [2])]
        if repeated { second.append(.init("a", "U8", [1], [3])) }
        dir.write("s2.safetensors", SafetensorsBuilder(second).bytes())
        dir.write(ShardIndex.fileName, Array(#"{"weight_map":{"a":"s1.safetensors","b":"s2.safetensors"}}"#.utf8))
        return dir
    }

    @Test("the location table, built on first use, names every tensor's shard and entry")
    func lazyLocations() throws {
        let dir = folder(repeated: false)
        let opened = try CheckpointDirectory(path: dir.path)
        #expect(opened.problems.isEmpty)
        #expect(opened.locations.mapValues { [$0.shard, $0.entry] } == [ByteName("a"): [0, 0], ByteName("b"): [1, 0]])
        #expect(opened.entry(named: "b")?.entry.name == "b")
        #expect(opened.entry(named: "c") == nil)
        // The same table for a fixture, against its headers.
        let fixture = try CheckpointDirectory(path: TestPaths.fixture("k25-tiny"))
        var expected: [ByteName: [Int]] = [:]
        for (s, shard) in fixture.shards.enumerated() {
            for (e, entry) in (shard?.tensors ?? []).enumerated() { expected[ByteName(entry.name)] = [s, e] }
        }
        #expect(!expected.isEmpty && fixture.locations.mapValues { [$0.shard, $0.entry] } == expected)
    }

    @Test("a tensor in two shards is still found and named when the index lists it once")
    func duplicateAcrossShards() throws {
        let dir = folder(repeated: true)
        let opened = try CheckpointDirectory(path: dir.path)
        let duplicate = CheckpointError.duplicateTensor(tensor: "a", firstShard: "s1.safetensors", secondShard: "s2.safetensors")
        #expect(opened.problems.contains(duplicate), "\(opened.problems)")
        #expect(duplicate.description == "tensor 'a' appears in both s1.safetensors and s2.safetensors")
        #expect(opened.locations[ByteName("a")].map { [$0.shard, $0.entry] } == [0, 0])
    }
}

/// A weight map as the index reader keeps it: names compared as bytes.
private func byteKeys(_ map: [String: String]) -> [ByteName: String] {
    Dictionary(uniqueKeysWithValues: map.map { (ByteName($0.key), $0.value) })
}
