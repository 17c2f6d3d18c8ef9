import Checkpoint
import Foundation
import GGUF
import Testing
import TestSupport

/// `Fixtures/gguf/expected.json`: what gguf-py's GGUFReader reads from the reader fixtures.
struct ExpectedGGUF {
    struct Field {
        var types: [String]
        var value: Any?
    }
    struct Tensor {
        var name: String
        var type: String
        var ne: [Int]
        var offset: Int
        var byteCount: Int
        var sha256: String
    }
    struct File {
        var name: String
        var dataOffset: Int
        var alignment: Int
        var fields: [String: Field]
        var tensors: [Tensor]
    }

    static func load() throws -> [File] {
        let data = try Data(contentsOf: TestPaths.fixtures.appendingPathComponent("gguf/expected.json"))
        let root = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let files = try #require(root["files"] as? [[String: Any]])
        return try files.map { f in
            let fields = try #require(f["fields"] as? [String: [String: Any]])
            let tensors = try #require(f["tensors"] as? [[String: Any]])
            return File(
                name: try #require(f["file"] as? String), dataOffset: try #require(f["data_offset"] as? Int),
                alignment: try #require(f["alignment"] as? Int),
                fields: fields.mapValues { Field(types: ($0["types"] as? [String]) ?? [], value: $0["value"]) },
                tensors: try tensors.map { t in
                    Tensor(
                        name: try #require(t["name"] as? String), type: try #require(t["type"] as? String),
                        ne: try #require(t["ne"] as? [Int]), offset: try #require(t["offset"] as? Int),
                        byteCount: try #require(t["n_bytes"] as? Int), sha256: try #require(t["sha256"] as? String))
                })
        }
    }
}

/// gguf-py's type names for metadata values.
func pyTypeNames(_ value: GGUFValue) -> [String] {
    func name(_ t: GGUFValueType) -> String {
        switch t {
        case .u8: "UINT8"
        case .i8: "INT8"
        case .u16: "UINT16"
        case .i16: "INT16"
        case .u32: "UINT32"
        case .i32: "INT32"
        case .f32: "FLOAT32"
        case .bool: "BOOL"
        case .string: "STRING"
        case .array: "ARRAY"
        case .u64: "UINT64"
        case .i64: "INT64"
        case .f64: "FLOAT64"
        }
    }
    guard case let .array(a) = value else { return [name(value.type)] }
    var names = ["ARRAY"]
    var current = a
    while case let .array(inner) = current, let first = inner.first {
        names.append("ARRAY")
        current = first
    }
    names.append(name(current.elementType))
    return names
}

/// A metadata value as JSONSerialization would give it (for comparison with expected.json).
func jsonLike(_ value: GGUFValue) -> Any {
    switch value {
    case let .u8(v): return Int(v)
    case let .i8(v): return Int(v)
    case let .u16(v): return Int(v)
    case let .i16(v): return Int(v)
    case let .u32(v): return Int(v)
    case let .i32(v): return Int(v)
    case let .u64(v): return v
    case let .i64(v): return Int(v)
    case let .f32(v): return Double(v)
    case let .f64(v): return v
    case let .bool(v): return v
    case let .string(v): return v
    case let .array(a):
        switch a {
        case let .f32(x): return x.map(Double.init)
        case let .f64(x): return x
        case let .bool(x): return x
        case let .string(x): return x
        default: return a.intValues ?? []
        }
    }
}

func sameJSON(_ a: Any, _ b: Any?) -> Bool {
    guard let b else { return false }
    if let x = a as? UInt64 { return (b as? NSNumber)?.uint64Value == x && "\(b)" == "\(x)" }
    if let x = a as? Bool { return (b as? Bool) == x }
    if let x = a as? Int { return (b as? Int) == x }
    if let x = a as? Double { return (b as? Double) == x }
    if let x = a as? String { return (b as? String) == x }
    if let x = a as? [Bool] { return (b as? [Bool]) == x }
    if let x = a as? [Int] { return (b as? [Int]) == x }
    if let x = a as? [Double] { return (b as? [Double]) == x }
    if let x = a as? [String] { return (b as? [String]) == x }
    return false
}

@Suite("GGUF reader: agrees with gguf-py's GGUFReader")
struct GGUFReaderTests {
    @Test("metadata, tensor infos and tensor bytes of every reader fixture")
    func agreesWithGGUFReader() throws {
        for expected in try ExpectedGGUF.load() {
            let file = try GGUFFile(path: TestPaths.fixture("gguf/\(expected.name)"))
            #expect(file.dataStart == expected.dataOffset, "\(expected.name)")
            #expect(file.alignment == expected.alignment, "\(expected.name)")
            #expect(Set(file.metadata.map(\.key)) == Set(expected.fields.keys), "\(expected.name)")
            for kv in file.metadata {
                let e = try #require(expected.fields[kv.key])
                #expect(pyTypeNames(kv.value) == e.types, "\(expected.name) \(kv.key)")
                if e.types.filter({ $0 == "ARRAY" }).count <= 1 {
                    #expect(sameJSON(jsonLike(kv.value), e.value), "\(expected.name) \(kv.key): \(kv.value) vs \(String(describing: e.value))")
                }
            }
            #expect(file.tensors.map(\.name) == expected.tensors.map(\.name))
            for (t, e) in zip(file.tensors, expected.tensors) {
                #expect(t.type.name == e.type && t.ne == e.ne && file.dataStart + t.offset == e.offset && t.byteCount == e.byteCount, "\(t.name)")
                #expect(try SHA256Digest.hex(of: file.bytes(of: t)) == e.sha256, "\(t.name)")
            }
        }
    }

    @Test("nested arrays and the typed accessors")
    func nestedAndAccessors() throws {
        let file = try GGUFFile(path: TestPaths.fixture("gguf/metadata.gguf"))
        #expect(file["test.array.nested"] == .array(.array([.i32([1, 2]), .i32([3])])))
        #expect(file["test.array.nested"]?.typeName == "array of array of i32")
        #expect(file["test.u64"]?.intValue == nil)
        #expect(file["test.i64"]?.intValue == Int(Int64.min))
        #expect(file["test.f32"]?.doubleValue == -1.5)
        #expect(file["test.string"]?.stringValue == "héllo — 世界")
        #expect(file["test.bool"]?.boolValue == true)
        #expect(file["test.array.string"]?.arrayValue?.stringValues == ["a", "", "ü"])
        #expect(file["missing"] == nil)
        let q = try #require(file.tensor(named: "blk.0.ffn_down_exps.weight"))
        #expect(q.ne == [64, 3, 2] && q.shape == [2, 3, 64] && q.elementCount == 384)
    }
}

@Suite("GGUF split sets")
struct GGUFSplitTests {
    static let partNames = (1...3).map { "split-0000\($0)-of-00003.gguf" }

    @Test("any part finds the whole set", arguments: partNames)
    func anyPart(part: String) throws {
        let model = try GGUFModel(path: TestPaths.fixture("gguf/\(part)"))
        #expect(model.parts.map { ($0.path as NSString).lastPathComponent } == Self.partNames)
        #expect(model.tensorNames == (0..<5).map { "blk.0.t\($0).weight" })
        #expect(model["general.name"]?.stringValue == "split fixture")
        let (file, info) = try #require(model.tensor(named: "blk.0.t3.weight"))
        #expect((file.path as NSString).lastPathComponent == Self.partNames[1] && info.ne == [4, 2])
        #expect(try model.dequantize("blk.0.t3.weight").count == 8)
        #expect(throws: GGUFError.tensorNotFound(file: model.first.path, tensor: "nope")) { _ = try model.dequantize("nope") }
    }

    @Test("a single file is a one-part model")
    func single() throws {
        let model = try GGUFModel(path: TestPaths.fixture("gguf/metadata.gguf"))
        #expect(model.parts.count == 1 && model.tensorNames.count == 4)
    }

    @Test("split names parse and print")
    func names() {
        let n = GGUFSplitName(fileName: "Kimi-K2.5-UD-Q2_K_XL-00001-of-00008.gguf")
        #expect(n == GGUFSplitName(prefix: "Kimi-K2.5-UD-Q2_K_XL", number: 1, count: 8))
        #expect(n?.fileName == "Kimi-K2.5-UD-Q2_K_XL-00001-of-00008.gguf")
        #expect(GGUFSplitName(fileName: "model.gguf") == nil)
        #expect(GGUFSplitName(fileName: "m-001-of-008.gguf") == nil)
        #expect(GGUFSplitName(fileName: "-00001-of-00002.gguf") == GGUFSplitName(prefix: "", number: 1, count: 2))
    }

    /// A part of a hand-made split set: `split.no`, `split.count`, `split.tensors.count` and its tensors.
    static func part(no: UInt16, count: UInt16, total: Int32, tensors: [String], architecture: String? = "deepseek2") -> [UInt8] {
        var b = GGUFBuilder()
        if let architecture { b.add("general.architecture", string: architecture) }
        b.add("split.no", u16: no)
        b.add("split.count", u16: count)
        b.add("split.tensors.count", i32: total)
        for t in tensors { b.addF32(t, count: 2) }
        return b.bytes()
    }

    /// Writes parts named `m-0000i-of-00003.gguf` (nil: left out) and opens `open`.
    func openSet(_ parts: [[UInt8]?], open: Int = 1) throws(GGUFError) -> GGUFModel {
        let dir = TemporaryDirectory()
        for (i, p) in parts.enumerated() {
            if let p { dir.write("m-0000\(i + 1)-of-00003.gguf", p) }
        }
        return try withExtendedLifetime(dir) { () throws(GGUFError) -> GGUFModel in
            try GGUFModel(path: dir.url.appendingPathComponent("m-0000\(open)-of-00003.gguf").path)
        }
    }

    func expectSetFailure(
        _ parts: [[UInt8]?], open: Int = 1, _ fragments: [String], sourceLocation: SourceLocation = #_sourceLocation,
        matches: (GGUFError) -> Bool
    ) {
        do {
            _ = try openSet(parts, open: open)
            Issue.record("opened without error", sourceLocation: sourceLocation)
        } catch {
            #expect(matches(error), "unexpected error: \(error)", sourceLocation: sourceLocation)
            for f in fragments {
                #expect(error.description.contains(f), "message: \(error.description)", sourceLocation: sourceLocation)
            }
        }
    }

    var good: [[UInt8]?] {
        [Self.part(no: 0, count: 3, total: 4, tensors: ["a", "b"]), Self.part(no: 1, count: 3, total: 4, tensors: ["c"], architecture: nil),
         Self.part(no: 2, count: 3, total: 4, tensors: ["d"], architecture: nil)]
    }

    @Test("a hand-made set opens from its last part")
    func handMade() throws {
        #expect(try openSet(good, open: 3).tensorNames == ["a", "b", "c", "d"])
    }

    @Test("missing parts are named, all of them")
    func missing() {
        var parts = good
        parts[1] = nil
        parts[2] = nil
        expectSetFailure(parts, ["m-00002-of-00003.gguf, m-00003-of-00003.gguf", "incomplete"]) {
            if case let .splitPartsMissing(_, missing, 3) = $0 { missing == ["m-00002-of-00003.gguf", "m-00003-of-00003.gguf"] } else { false }
        }
    }

    @Test("a part of another split set is refused by name")
    func foreign() {
        var parts = good
        parts[1] = Self.part(no: 1, count: 4, total: 4, tensors: ["c"])
        expectSetFailure(parts, ["m-00002-of-00003.gguf", "split.count is 4", "another split set"]) {
            if case .splitForeignPart(_, "split.count", "4", "3", _) = $0 { true } else { false }
        }
        parts = good
        parts[2] = Self.part(no: 2, count: 3, total: 9, tensors: ["d"])
        expectSetFailure(parts, ["m-00003-of-00003.gguf", "split.tensors.count is 9"]) {
            if case .splitForeignPart(_, "split.tensors.count", "9", "4", _) = $0 { true } else { false }
        }
        parts = good
        parts[2] = Self.part(no: 2, count: 3, total: 4, tensors: ["d"], architecture: "llama")
        expectSetFailure(parts, ["general.architecture is llama"]) {
            if case .splitForeignPart(_, "general.architecture", "llama", "deepseek2", _) = $0 { true } else { false }
        }
    }

    @Test("split.no must match the part's place; the name must follow the pattern")
    func numbering() {
        var parts = good
        parts[1] = Self.part(no: 2, count: 3, total: 4, tensors: ["c"])
        expectSetFailure(parts, ["this is part 2 of the set but its split.no is 2 (expected 1)"]) {
            if case .splitName = $0 { true } else { false }
        }
        expectSetFailure(parts, open: 2, ["the name says part 2 but split.no is 2"]) {
            if case .splitName = $0 { true } else { false }
        }
        let dir = TemporaryDirectory()
        let path = dir.write("model.gguf", Self.part(no: 0, count: 3, total: 4, tensors: ["a"]))
        #expect(throws: GGUFError.splitName(file: path, reason: "split.count is 3 but the name does not follow NAME-00001-of-00003.gguf, so the other parts cannot be found")) {
            _ = try GGUFModel(path: path)
        }
    }

    @Test("tensor totals and duplicate names across parts")
    func tensorsAcrossParts() {
        var parts = good
        parts[2] = Self.part(no: 2, count: 3, total: 4, tensors: ["a"], architecture: nil)
        expectSetFailure(parts, ["tensor 'a' is in both", "m-00001-of-00003.gguf", "m-00003-of-00003.gguf"]) {
            if case .splitDuplicateTensor(tensor: "a", _, _) = $0 { true } else { false }
        }
        parts = good
        parts[2] = Self.part(no: 2, count: 3, total: 4, tensors: ["d", "e"], architecture: nil)
        expectSetFailure(parts, ["the parts hold 5 tensors but split.tensors.count says 4"]) {
            if case .splitTensorCount(_, 5, 4) = $0 { true } else { false }
        }
    }
}
