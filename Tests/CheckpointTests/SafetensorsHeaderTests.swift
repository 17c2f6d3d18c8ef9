import Checkpoint
import JSONCore
import TensorCore
import TestSupport
import Testing

/// Opens hand-made bytes as a safetensors file named `t.safetensors`.
func open(_ bytes: [UInt8]) throws(CheckpointError) -> SafetensorsFile {
    let dir = TemporaryDirectory()
    let path = dir.write("t.safetensors", bytes)
    return try SafetensorsFile(path: path, name: "t.safetensors")
}

/// Expects opening `bytes` to fail with exactly `expected`, and its message to contain `fragment`.
func expectFailure(_ bytes: [UInt8], _ expected: CheckpointError, _ fragment: String, sourceLocation: SourceLocation = #_sourceLocation) {
    do {
        _ = try open(bytes)
        Issue.record("opened without error; expected \(expected)", sourceLocation: sourceLocation)
    } catch {
        #expect(error == expected, sourceLocation: sourceLocation)
        #expect(error.description.contains(fragment), "message: \(error.description)", sourceLocation: sourceLocation)
    }
}

let twoTensors = SafetensorsBuilder([
    .init("a", "F32", [2], [0, 0, 128, 63, 0, 0, 0, 64]),
    .init("b", "BF16", [1, 3], [1, 2, 3, 4, 5, 6]),
])

@Suite("safetensors header rules")
struct SafetensorsHeaderTests {
    @Test("reads a valid file: tensors in offset order, metadata, absolute ranges")
    func valid() throws {
        let file = try open(twoTensors.bytes())
        #expect(file.tensors.map(\.name) == ["a", "b"])
        #expect(file.tensors[1].shape == [1, 3])
        #expect(file.tensors[1].dtype == .bf16)
        #expect(file.header.metadata == ["format": "pt"])
        let start = file.header.dataStartInFile
        #expect(file.tensors[1].rangeInFile == (start + 8)..<(start + 14))
        #expect(Array(try file.bytes(of: file.tensors[0])) == [0, 0, 128, 63, 0, 0, 0, 64])
    }

    @Test("shapes repeated, alternating and more varied than the parser's recent-shape ring are each read as written")
    func repeatedShapes() throws {
        // 12 distinct shapes (the ring keeps 8), each used several times, interleaved, plus scalars and 1-D.
        var tensors: [SafetensorsBuilder.Tensor] = []
        var expected: [[Int]] = []
        for i in 0..<60 {
            let k = (i * 7) % 12
            let shape = k == 0 ? [] : k % 3 == 0 ? [k] : [k, 2, k % 5 + 1]
            tensors.append(.init("t\(i)", "U8", shape, [UInt8](repeating: UInt8(i), count: shape.reduce(1, *))))
            expected.append(shape)
        }
        let file = try open(SafetensorsBuilder(tensors).bytes())
        #expect(file.tensors.map(\.name) == (0..<60).map { "t\($0)" })
        #expect(file.tensors.map(\.shape) == expected)
        #expect(file.tensors.map(\.elementCount) == expected.map { $0.reduce(1, *) })
    }

    @Test("accepts an empty header, zero-size tensors and unknown entry fields")
    func edgeCases() throws {
        #expect(try open(SafetensorsBuilder().bytes(header: "{}")).tensors.isEmpty)
        let header = #"{"z":{"dtype":"F32","shape":[0,4],"data_offsets":[0,0],"extra":{"x":[1]}},"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}"#
        let file = try open(SafetensorsBuilder.file(headerBytes: Array(header.utf8), data: [7]))
        #expect(file.tensors.map(\.name) == ["z", "a"])
    }

    @Test("rejects a file shorter than the length field")
    func tooShort() {
        expectFailure([1, 2, 3], .fileTooShort(file: "t.safetensors", byteCount: 3), "truncated download")
    }

    @Test("recognizes a git-LFS pointer")
    func lfsPointer() {
        let text = "version https://git-lfs.github.com/spec/v1\noid sha256:\(String(repeating: "a", count: 64))\nsize 9\n"
        expectFailure(Array(text.utf8), .lfsPointer(file: "t.safetensors"), "git-LFS pointer")
    }

    @Test("rejects a header length over 100 MB")
    func headerTooLarge() {
        var bytes = twoTensors.bytes()
        bytes.replaceSubrange(0..<8, with: [0x00, 0xC2, 0xEB, 0x0B, 0, 0, 0, 0])  // 200,000,000
        expectFailure(bytes, .headerTooLarge(file: "t.safetensors", headerLength: 200_000_000, fileLength: bytes.count), "exceeds the 100000000-byte limit")
    }

    @Test("rejects a header length past the end of the file")
    func headerPastEnd() {
        var bytes = twoTensors.bytes()
        bytes.replaceSubrange(0..<8, with: [0x00, 0x10, 0, 0, 0, 0, 0, 0])  // 4096
        expectFailure(bytes, .headerPastEnd(file: "t.safetensors", headerLength: 4096, fileLength: bytes.count), "shorter than its header")
    }

    @Test("rejects invalid JSON, naming the byte")
    func badJSON() {
        let bytes = SafetensorsBuilder.file(headerBytes: Array(#"{"a":{"dtype":"F32",}}"#.utf8), data: [])
        expectFailure(bytes, .headerJSON(file: "t.safetensors", error: JSONErrorProbe.error(offset: 20, "expected a string, found '}'")), "header is not valid JSON")
    }

    @Test("rejects invalid UTF-8")
    func invalidUTF8() {
        let bytes = SafetensorsBuilder.file(headerBytes: Array(#"{"a"#.utf8) + [0xFF] + Array(#"":{}}"#.utf8), data: [])
        expectFailure(bytes, .headerJSON(file: "t.safetensors", error: JSONErrorProbe.error(offset: 2, "string is not valid UTF-8")), "not valid UTF-8")
    }

    @Test("rejects duplicate tensor names")
    func duplicate() {
        let header = #"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}"#
        let bytes = SafetensorsBuilder.file(headerBytes: Array(header.utf8), data: [1, 2])
        expectFailure(bytes, .duplicateKey(file: "t.safetensors", tensor: "a", offset: 53), "header lists tensor 'a' twice")
    }

    @Test("rejects unknown dtypes, listing the known ones")
    func unknownDType() {
        var b = twoTensors
        b.tensors[1].dtype = "Q4_K"
        expectFailure(b.bytes(), .unknownDType(file: "t.safetensors", tensor: "b", dtype: "Q4_K"), "unknown dtype \"Q4_K\" (known: F4, F6_E2M3, F6_E3M2, BOOL, U8")
    }

    @Test("rejects non-string metadata")
    func metadata() {
        let header = #"{"__metadata__":{"format":1}}"#
        expectFailure(SafetensorsBuilder.file(headerBytes: Array(header.utf8), data: []), .metadataNotString(file: "t.safetensors", key: "format"), "is not a string")
    }

    @Test("rejects entries without fields or with wrong types")
    func malformedEntries() {
        let cases: [(String, String)] = [
            (#"{"a":{"shape":[1],"data_offsets":[0,1]}}"#, "missing \"dtype\""),
            (#"{"a":{"dtype":"U8","data_offsets":[0,1]}}"#, "missing \"shape\""),
            (#"{"a":{"dtype":"U8","shape":[1]}}"#, "missing \"data_offsets\""),
            (#"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0]}}"#, "exactly 2 integers"),
            (#"{"a":{"dtype":"U8","shape":[-1],"data_offsets":[0,1]}}"#, "shape must be a non-negative integer"),
            (#"{"a":{"dtype":"U8","shape":"1","data_offsets":[0,1]}}"#, "shape must be an array of integers"),
            (#"{"a":[1]}"#, "entry must be an object"),
            (#"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,99999999999999999999]}}"#, "does not fit in a 64-bit integer"),
        ]
        for (header, fragment) in cases {
            do {
                _ = try open(SafetensorsBuilder.file(headerBytes: Array(header.utf8), data: [0]))
                Issue.record("accepted \(header)")
            } catch {
                guard case .tensorEntryMalformed(let file, let tensor, _) = error else {
                    Issue.record("\(header): wrong error \(error)")
                    continue
                }
                #expect(file == "t.safetensors" && tensor == "a")
                #expect(error.description.contains(fragment), "\(error.description)")
            }
        }
    }

    @Test("rejects a span that does not match elements × width")
    func sizeMismatch() {
        let header = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}"#
        expectFailure(
            SafetensorsBuilder.file(headerBytes: Array(header.utf8), data: [0, 0, 0, 0]),
            .sizeMismatch(file: "t.safetensors", tensor: "a", shape: [2], dtype: .f32, expectedBytes: 8, spanBytes: 4),
            "shape [2] F32 needs 8 bytes, data_offsets span 4")
    }

    @Test("rejects a shape whose byte count overflows")
    func overflow() {
        let header = #"{"a":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,8]}}"#
        expectFailure(
            SafetensorsBuilder.file(headerBytes: Array(header.utf8), data: [0]),
            .shapeOverflow(file: "t.safetensors", tensor: "a", shape: [4_294_967_296, 4_294_967_296]), "overflows")
    }

    @Test("rejects reversed offsets")
    func reversed() {
        let header = #"{"a":{"dtype":"U8","shape":[0],"data_offsets":[4,2]}}"#
        expectFailure(SafetensorsBuilder.file(headerBytes: Array(header.utf8), data: []), .offsetsReversed(file: "t.safetensors", tensor: "a", begin: 4, end: 2), "end before they begin")
    }

    @Test("rejects gaps, including at the start")
    func gaps() {
        let header = #"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"b":{"dtype":"U8","shape":[1],"data_offsets":[2,3]}}"#
        expectFailure(
            SafetensorsBuilder.file(headerBytes: Array(header.utf8), data: [1, 2, 3]),
            .offsetGap(file: "t.safetensors", tensor: "b", previous: "a", expectedBegin: 1, begin: 2), "1 unused bytes")
        let first = #"{"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}"#
        expectFailure(
            SafetensorsBuilder.file(headerBytes: Array(first.utf8), data: [1, 2]),
            .offsetGap(file: "t.safetensors", tensor: "a", previous: nil, expectedBegin: 0, begin: 1), "at the start of the data")
    }

    @Test("rejects overlapping tensors")
    func overlap() {
        let header = #"{"a":{"dtype":"U16","shape":[2],"data_offsets":[0,4]},"b":{"dtype":"U16","shape":[1],"data_offsets":[2,4]}}"#
        expectFailure(
            SafetensorsBuilder.file(headerBytes: Array(header.utf8), data: [1, 2, 3, 4]),
            .offsetOverlap(file: "t.safetensors", tensor: "b", previous: "a", expectedBegin: 4, begin: 2), "overlapping")
    }

    @Test("tells a truncated file from trailing bytes")
    func lengths() {
        let bytes = twoTensors.bytes()
        expectFailure(Array(bytes.dropLast(3)), .truncated(file: "t.safetensors", fileLength: bytes.count - 3, expectedLength: bytes.count), "truncated by 3 bytes")
        expectFailure(bytes + [0, 0], .trailingBytes(file: "t.safetensors", fileLength: bytes.count + 2, expectedLength: bytes.count), "2 unexpected trailing bytes")
    }
}

/// Builds the JSONError values the parser reports, for equality checks.
enum JSONErrorProbe {
    static func error(offset: Int, _ reason: String) -> JSONError { JSONError(offset: offset, reason: reason) }
}
