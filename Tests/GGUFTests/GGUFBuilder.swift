import Foundation
import GGUF
import Testing
import TestSupport

/// Builds GGUF bytes by hand, including broken ones.
struct GGUFBuilder {
    struct Tensor {
        var name: String
        var ne: [UInt64]
        var type: UInt32
        var data: [UInt8]
        /// nil: the padded running sum (what a valid file has).
        var offset: UInt64?
    }

    var magic: [UInt8] = Array("GGUF".utf8)
    var version: UInt32 = 3
    var kvs: [(key: [UInt8], payload: [UInt8])] = []
    var tensors: [Tensor] = []
    var alignment = 32
    var tensorCountOverride: UInt64?
    var kvCountOverride: UInt64?
    /// Bytes appended after the data section.
    var trailing: [UInt8] = []
    /// Leave out the last tensor's padding.
    var dropFinalPadding = false

    static func le<T: FixedWidthInteger>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
    static func str(_ s: String) -> [UInt8] { str(Array(s.utf8)) }
    static func str(_ b: [UInt8]) -> [UInt8] { le(UInt64(b.count)) + b }

    mutating func add(_ key: String, type: UInt32, _ value: [UInt8]) { kvs.append((Array(key.utf8), Self.le(type) + value)) }
    mutating func add(_ key: String, u32 v: UInt32) { add(key, type: 4, Self.le(v)) }
    mutating func add(_ key: String, u16 v: UInt16) { add(key, type: 2, Self.le(v)) }
    mutating func add(_ key: String, i32 v: Int32) { add(key, type: 5, Self.le(v)) }
    mutating func add(_ key: String, string v: String) { add(key, type: 8, Self.str(v)) }

    /// An F32 tensor of `count` elements (values 0, 1, 2…), ne `[count]` unless given.
    mutating func addF32(_ name: String, count: Int, ne: [UInt64]? = nil) {
        let data = (0..<count).flatMap { Self.le(Float($0).bitPattern) }
        tensors.append(Tensor(name: name, ne: ne ?? [UInt64(count)], type: 0, data: data))
    }

    func pad(_ n: Int) -> Int { (n + alignment - 1) / alignment * alignment }

    func bytes() -> [UInt8] {
        var out = magic + Self.le(version)
        out += Self.le(tensorCountOverride ?? UInt64(tensors.count))
        out += Self.le(kvCountOverride ?? UInt64(kvs.count))
        for kv in kvs { out += Self.str(kv.key) + kv.payload }
        var running = 0
        for t in tensors {
            out += Self.str(t.name) + Self.le(UInt32(t.ne.count))
            for d in t.ne { out += Self.le(d) }
            out += Self.le(t.type) + Self.le(t.offset ?? UInt64(running))
            running = pad(running + t.data.count)
        }
        out += [UInt8](repeating: 0, count: pad(out.count) - out.count)
        for (i, t) in tensors.enumerated() {
            out += t.data
            if !(dropFinalPadding && i == tensors.count - 1) {
                out += [UInt8](repeating: 0, count: pad(t.data.count) - t.data.count)
            }
        }
        return out + trailing
    }

    /// A small valid file: two keys, two F32 tensors.
    static func valid() -> GGUFBuilder {
        var b = GGUFBuilder()
        b.add("general.architecture", string: "deepseek2")
        b.add("general.alignment", u32: 32)
        b.addF32("a.weight", count: 3)
        b.addF32("b.weight", count: 8, ne: [4, 2])
        return b
    }
}

/// Writes `bytes` as `name` in a fresh folder and opens it.
func openGGUF(_ bytes: [UInt8], name: String = "t.gguf") throws(GGUFError) -> GGUFFile {
    let dir = TemporaryDirectory()
    let path = dir.write(name, bytes)
    return try withExtendedLifetime(dir) { () throws(GGUFError) -> GGUFFile in try GGUFFile(path: path) }
}

/// Expects opening `bytes` to fail with exactly `expected` (paths compared by file name), and its message to hold
/// every fragment.
func expectGGUFFailure(
    _ bytes: [UInt8], _ expected: (String) -> GGUFError, _ fragments: [String], sourceLocation: SourceLocation = #_sourceLocation
) {
    let dir = TemporaryDirectory()
    let path = dir.write("t.gguf", bytes)
    do {
        _ = try GGUFFile(path: path)
        Issue.record("opened without error; expected \(expected(path))", sourceLocation: sourceLocation)
    } catch {
        #expect(error == expected(path), sourceLocation: sourceLocation)
        for fragment in fragments + ["t.gguf"] {
            #expect(error.description.contains(fragment), "message: \(error.description)", sourceLocation: sourceLocation)
        }
    }
}
