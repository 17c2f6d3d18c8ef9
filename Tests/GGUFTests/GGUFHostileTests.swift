import Foundation
import GGUF
import Testing
import TestSupport

/// Expects opening `bytes` to fail with an error `matches` accepts, whose message holds every fragment and the file.
func expectGGUFFailure(
    _ bytes: [UInt8], _ fragments: [String], sourceLocation: SourceLocation = #_sourceLocation, matches: (GGUFError) -> Bool
) {
    let dir = TemporaryDirectory()
    let path = dir.write("t.gguf", bytes)
    do {
        _ = try GGUFFile(path: path)
        Issue.record("opened without error", sourceLocation: sourceLocation)
    } catch {
        #expect(matches(error), "unexpected error: \(error)", sourceLocation: sourceLocation)
        for fragment in fragments + ["t.gguf"] {
            #expect(error.description.contains(fragment), "message: \(error.description)", sourceLocation: sourceLocation)
        }
    }
}

@Suite("GGUF reader: hostile files refused by name")
struct GGUFHostileTests {
    typealias B = GGUFBuilder

    @Test("a valid hand-made file opens: offsets, shapes, metadata")
    func validFile() throws {
        let file = try openGGUF(B.valid().bytes())
        #expect(file.version == 3)
        #expect(file.tensors.map(\.name) == ["a.weight", "b.weight"])
        #expect(file.tensors.map(\.offset) == [0, 32])
        #expect(file.tensors[1].ne == [4, 2])
        #expect(file.tensors[1].shape == [2, 4])
        #expect(file.architecture == "deepseek2")
        let b = try GGUFDequantizer.dequantize(file.tensors[1], of: file)
        #expect(b == (0..<8).map(Float.init))
    }

    @Test("version 2 reads like version 3")
    func version2() throws {
        var b = B.valid()
        b.version = 2
        #expect(try openGGUF(b.bytes()).version == 2)
    }

    @Test("the last tensor's padding may be absent")
    func missingFinalPadding() throws {
        var b = B.valid()
        b.tensors.swapAt(0, 1)
        b.dropFinalPadding = true
        let file = try openGGUF(b.bytes())
        #expect(file.tensors[1].byteCount == 12)
    }

    @Test("bad magic, empty file")
    func magic() {
        var b = B.valid()
        b.magic = Array("GGUX".utf8)
        expectGGUFFailure(b.bytes(), { .notGGUF(file: $0, magic: Array("GGUX".utf8)) }, ["not a GGUF file", "47 47 55 58"])
        expectGGUFFailure([], { .notGGUF(file: $0, magic: []) }, ["the file is empty"])
    }

    @Test("unsupported versions and big-endian files")
    func versions() {
        for v: UInt32 in [0, 1, 4] {
            var b = B.valid()
            b.version = v
            expectGGUFFailure(b.bytes(), { .unsupportedVersion(file: $0, version: v) }, ["GGUF version \(v) is not supported"])
        }
        var b = B.valid()
        b.version = UInt32(3).byteSwapped
        expectGGUFFailure(b.bytes(), { .bigEndian(file: $0) }, ["big-endian"])
    }

    @Test("a header cut short names what was being read")
    func truncatedHeader() {
        let bytes = Array(B.valid().bytes().prefix(60))
        expectGGUFFailure(
            bytes,
            {
                .truncatedHeader(
                    file: $0, offset: 56, needed: 8, fileLength: 60, reading: "the length of the value of key 'general.architecture'")
            }, ["the file ends inside the header", "byte 56"])
        expectGGUFFailure(Array(B.valid().bytes().prefix(10)), ["the tensor count"]) {
            if case .truncatedHeader(_, 8, 8, 10, "the tensor count") = $0 { true } else { false }
        }
    }

    @Test("counts larger than the file can hold are refused before allocating")
    func counts() {
        var b = B.valid()
        b.tensorCountOverride = 1 << 40
        expectGGUFFailure(b.bytes(), ["the tensor count is 1099511627776"]) {
            if case .countTooLarge(_, "the tensor count", 1 << 40, _) = $0 { true } else { false }
        }
        b = B.valid()
        b.kvCountOverride = .max
        expectGGUFFailure(b.bytes(), ["the metadata key count is 18446744073709551615"]) {
            if case .countTooLarge(_, "the metadata key count", .max, _) = $0 { true } else { false }
        }
        b = B.valid()
        b.add("tokenizer.ggml.tokens", type: 9, B.le(UInt32(8)) + B.le(UInt64(1) << 60))
        expectGGUFFailure(b.bytes(), ["the element count of key 'tokenizer.ggml.tokens'"]) {
            if case .countTooLarge(_, _, 1 << 60, _) = $0 { true } else { false }
        }
    }

    @Test("string lengths: a key over the limit, a value past the end")
    func strings() {
        // Header, 0 tensors, 1 key whose length is 2^64 - 1.
        let raw = Array("GGUF".utf8) + B.le(UInt32(3)) + B.le(UInt64(0)) + B.le(UInt64(1)) + B.le(UInt64.max)
        expectGGUFFailure(raw + [UInt8](repeating: 0, count: 64), { .stringTooLong(file: $0, what: "key 0 of 1", length: .max, limit: 65_536) }, ["over the limit"])
        var b = B.valid()
        b.add("general.name", type: 8, B.le(UInt64(1) << 40) + Array("x".utf8))
        expectGGUFFailure(b.bytes(), ["the value of key 'general.name'"]) {
            if case .truncatedHeader(_, _, 1 << 40, _, "the value of key 'general.name'") = $0 { true } else { false }
        }
        b = B.valid()
        b.kvs.append((key: [0x66, 0xFF], payload: B.le(UInt32(0)) + [1]))
        expectGGUFFailure(b.bytes(), { .invalidUTF8(file: $0, what: "key 2 of 3") }, ["is not valid UTF-8"])
    }

    @Test("unknown value types, bools other than 0/1, arrays nested too deep")
    func values() throws {
        var b = B.valid()
        b.add("x.unknown", type: 13, [0])
        expectGGUFFailure(b.bytes(), { .unknownValueType(file: $0, key: "x.unknown", type: 13) }, ["unknown value type 13"])
        b = B.valid()
        b.add("x.array", type: 9, B.le(UInt32(77)) + B.le(UInt64(1)))
        expectGGUFFailure(b.bytes(), { .unknownValueType(file: $0, key: "x.array", type: 77) }, ["'x.array'"])
        b = B.valid()
        b.add("x.flag", type: 7, [2])
        expectGGUFFailure(b.bytes(), { .invalidBool(file: $0, key: "x.flag", value: 2) }, ["must be 0 or 1, found 2"])
        func nested(_ levels: Int) -> [UInt8] {
            var payload: [UInt8] = []
            for _ in 0..<levels { payload += B.le(UInt32(9)) + B.le(UInt64(1)) }
            return payload + B.le(UInt32(4)) + B.le(UInt64(1)) + B.le(UInt32(7))
        }
        b = B.valid()
        b.add("x.deep", type: 9, nested(8))
        expectGGUFFailure(b.bytes(), { .arrayTooDeep(file: $0, key: "x.deep", limit: 8) }, ["nested deeper than 8"])
        b = B.valid()
        b.add("x.deep", type: 9, nested(7))
        var value = try openGGUF(b.bytes())["x.deep"]?.arrayValue
        for _ in 0..<7 {
            guard case let .array(inner) = value, inner.count == 1 else {
                Issue.record("expected a one-element nested array, found \(String(describing: value))")
                return
            }
            value = inner[0]
        }
        #expect(value == .u32([7]))
    }

    @Test("duplicate keys and tensor names")
    func duplicates() {
        var b = B.valid()
        b.add("general.architecture", string: "llama")
        expectGGUFFailure(b.bytes(), { .duplicateKey(file: $0, key: "general.architecture") }, ["appears twice"])
        b = B.valid()
        b.addF32("a.weight", count: 1)
        expectGGUFFailure(b.bytes(), { .duplicateTensor(file: $0, tensor: "a.weight") }, ["'a.weight' is listed twice"])
    }

    @Test("keys and names are compared as bytes: NFC and NFD spellings are two entries, not duplicates")
    func byteNames() throws {
        var b = B.valid()
        b.add("x.caf\u{E9}", u32: 1)
        b.kvs.append((key: Array("x.cafe\u{301}".utf8), payload: B.le(UInt32(4)) + B.le(UInt32(2))))
        b.addF32("caf\u{E9}.weight", count: 1)
        b.tensors.append(.init(name: "cafe\u{301}.weight", ne: [2], type: 0, data: [UInt8](repeating: 0, count: 8)))
        let file = try openGGUF(b.bytes())
        #expect(file["x.caf\u{E9}"] == .u32(1) && file["x.cafe\u{301}"] == .u32(2))
        #expect(file.tensor(named: "caf\u{E9}.weight")?.elementCount == 1 && file.tensor(named: "cafe\u{301}.weight")?.elementCount == 2)
    }

    @Test("general.alignment must be a u32 power of two")
    func alignment() {
        var b = B.valid()
        b.kvs.removeLast()
        b.add("general.alignment", u16: 32)
        expectGGUFFailure(b.bytes(), { .wrongKeyType(file: $0, key: "general.alignment", found: "u16", expected: "u32") }, ["is u16, expected u32"])
        for bad: UInt32 in [0, 48] {
            b = B.valid()
            b.kvs.removeLast()
            b.add("general.alignment", u32: bad)
            expectGGUFFailure(b.bytes(), { .badAlignment(file: $0, alignment: UInt64(bad)) }, ["\(bad) is not a power of two"])
        }
    }

    @Test("tensor infos: long names, dimensions, types, blocks, overflow")
    func tensorInfos() {
        var b = B.valid()
        let long = String(repeating: "n", count: 65)
        b.addF32(long, count: 1)
        expectGGUFFailure(b.bytes(), { .tensorNameTooLong(file: $0, tensor: long, length: 65) }, ["over GGUF's limit of 64"])
        b = B.valid()
        b.tensors[1].ne = [1, 1, 1, 1, 8]
        expectGGUFFailure(b.bytes(), { .tooManyDimensions(file: $0, tensor: "b.weight", dimensions: 5) }, ["'b.weight': 5 dimensions"])
        b = B.valid()
        b.tensors[1].ne = [8, UInt64(Int64.max) + 1]
        expectGGUFFailure(b.bytes(), { .dimensionTooLarge(file: $0, tensor: "b.weight", dimension: UInt64(Int64.max) + 1) }, ["exceeds 2^63 - 1"])
        b = B.valid()
        b.tensors[1].type = 4
        expectGGUFFailure(b.bytes(), { .unknownType(file: $0, tensor: "b.weight", type: 4) }, ["unknown ggml type 4 (Q4_2, removed from ggml)"])
        b = B.valid()
        b.tensors[1].type = 99
        expectGGUFFailure(b.bytes(), { .unknownType(file: $0, tensor: "b.weight", type: 99) }, ["unknown ggml type 99"])
        b = B.valid()
        b.tensors[1] = .init(name: "q.weight", ne: [16, 2], type: GGMLType.q4_0.rawValue, data: [UInt8](repeating: 0, count: 18))
        expectGGUFFailure(b.bytes(), { .rowNotWholeBlocks(file: $0, tensor: "q.weight", ne0: 16, type: .q4_0) }, ["block size 32"])
        b = B.valid()
        b.tensors[1].ne = [1 << 40, 1 << 40]
        expectGGUFFailure(b.bytes(), { .shapeOverflow(file: $0, tensor: "b.weight", ne: [1 << 40, 1 << 40]) }, ["overflows"])
    }

    @Test("offsets: misaligned, overlapping, with a gap")
    func offsets() {
        var b = B.valid()
        b.tensors[1].offset = 16
        expectGGUFFailure(b.bytes(), { .misalignedOffset(file: $0, tensor: "b.weight", offset: 16, alignment: 32) }, ["not a multiple of the alignment 32"])
        b = B.valid()
        b.tensors[1].offset = 0
        expectGGUFFailure(b.bytes(), { .offsetOverlap(file: $0, tensor: "b.weight", previous: "a.weight", offset: 0, expected: 32) }, ["overlapping"])
        b = B.valid()
        b.tensors[1].offset = 64
        expectGGUFFailure(b.bytes(), { .offsetGap(file: $0, tensor: "b.weight", previous: "a.weight", offset: 64, expected: 32) }, ["after 'a.weight'"])
        b = B.valid()
        b.tensors[0].offset = 32
        expectGGUFFailure(b.bytes(), { .offsetGap(file: $0, tensor: "a.weight", previous: nil, offset: 32, expected: 0) }, ["at the start of the data section"])
    }

    @Test("a truncated data section names the tensor; trailing bytes are refused")
    func dataSection() {
        let valid = B.valid().bytes()
        let cut = Array(valid.dropLast(8))
        expectGGUFFailure(cut, { .tensorPastEnd(file: $0, tensor: "b.weight", end: valid.count, fileLength: cut.count) }, ["'b.weight'", "truncated by 8 bytes"])
        var b = B.valid()
        b.trailing = [1, 2, 3]
        expectGGUFFailure(b.bytes(), { .trailingBytes(file: $0, fileLength: valid.count + 3, expectedLength: valid.count) }, ["3 unexpected trailing bytes"])
    }

    @Test("a type that cannot be dequantized is refused by name")
    func cannotDequantize() throws {
        var b = B.valid()
        b.tensors[1] = .init(name: "i.weight", ne: [2], type: GGMLType.i32.rawValue, data: [UInt8](repeating: 0, count: 8))
        let file = try openGGUF(b.bytes())
        #expect(throws: GGUFError.cannotDequantize(file: file.path, tensor: "i.weight", type: .i32)) {
            _ = try GGUFDequantizer.dequantize(file.tensors[1], of: file)
        }
        #expect(GGUFError.cannotDequantize(file: "f.gguf", tensor: "i.weight", type: .i32).description.contains("I32 cannot be dequantized"))
    }
}
