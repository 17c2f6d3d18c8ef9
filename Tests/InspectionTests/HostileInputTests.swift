import Checkpoint
import FileIO
import Foundation
import Inspection
import LoadedModel
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Replaces one file of a copied fixture.
func replace(_ path: String, with bytes: [UInt8]) throws {
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}

/// Rewrites a JSON file of a fixture copy through a text edit.
func edit(_ path: String, _ transform: (String) -> String) throws {
    let text = try String(contentsOfFile: path, encoding: .utf8)
    try transform(text).write(toFile: path, atomically: true, encoding: .utf8)
}

@Suite("hostile and odd checkpoints")
struct HostileInputTests {
    @Test("tensors claiming up to Int.max bytes are clear errors, not arithmetic traps")
    func intMaxSpan() throws {
        let dir = TemporaryDirectory()
        let huge = #"{"a":{"dtype":"U8","shape":[9223372036854775807],"data_offsets":[0,9223372036854775807]}}"#
        let path = dir.write("x.safetensors", SafetensorsBuilder.file(headerBytes: Array(huge.utf8), data: []))
        #expect(throws: CheckpointError.shapeOverflow(file: "x.safetensors", tensor: "a", shape: [Int.max])) {
            _ = try SafetensorsFile(path: path, name: "x.safetensors")
        }
        let large = #"{"a":{"dtype":"U8","shape":[1152921504606846975],"data_offsets":[0,1152921504606846975]}}"#
        let path2 = dir.write("y.safetensors", SafetensorsBuilder.file(headerBytes: Array(large.utf8), data: []))
        #expect(throws: CheckpointError.truncated(file: "y", fileLength: 8 + large.utf8.count, expectedLength: 8 + large.utf8.count + 1_152_921_504_606_846_975)) {
            _ = try SafetensorsFile(path: path2, name: "y")
        }
    }

    @Test("a zero-size tensor with a 2^62 first dimension is scanned as one item")
    func hugeEmptyTensor() throws {
        let header = #"{"a":{"dtype":"U8","shape":[4611686018427387904,0],"data_offsets":[0,0]}}"#
        let dir = TemporaryDirectory()
        dir.write("model.safetensors", SafetensorsBuilder.file(headerBytes: Array(header.utf8), data: []))
        let report = try Verifier.verify(path: dir.path)
        #expect(report.tensorCount == 1)
        #expect(report.findings.contains { $0.code == "config" })  // no config.json
    }

    @Test("sub-byte dtypes are sized in bits; __metadata__ may be null")
    func newerDTypes() throws {
        let ok = #"{"__metadata__":null,"a":{"dtype":"F4","shape":[2,3],"data_offsets":[0,3]}}"#
        let dir = TemporaryDirectory()
        let file = try SafetensorsFile(path: dir.write("a.safetensors", SafetensorsBuilder.file(headerBytes: Array(ok.utf8), data: [1, 2, 3])), name: "a")
        #expect(file.tensors.first?.elementCount == 6)
        let odd = #"{"a":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}}"#
        #expect(throws: CheckpointError.misalignedSlice(file: "b", tensor: "a", shape: [3], dtype: .f4)) {
            _ = try SafetensorsFile(path: dir.write("b.safetensors", SafetensorsBuilder.file(headerBytes: Array(odd.utf8), data: [1, 2])), name: "b")
        }
    }

    @Test("a FIFO named like a shard is refused without blocking")
    func fifo() throws {
        let dir = TemporaryDirectory()
        #expect(mkfifo(dir.path + "/model.safetensors", 0o600) == 0)
        let report = try Verifier.verify(path: dir.path)
        #expect(report.findings.contains { $0.code == "io" && $0.message.contains("not a regular file") }, "\(report.findings)")
    }

    @Test("a missing projector tensor is placed in the projector's shard")
    func missingProjectorTensor() throws {
        let dir = TemporaryDirectory()
        let copy = dir.copy(fixture: "k25-tiny")
        let shard = copy + "/model-00005-of-000006.safetensors"
        let original = try SafetensorsFile(path: shard, name: "s")
        let bytes = try Array(Data(contentsOf: URL(fileURLWithPath: shard)))
        let kept = original.tensors.filter { $0.name != "mm_projector.pre_norm.weight" }
        let builder = SafetensorsBuilder(kept.map { t in
            .init(t.name, t.dtype.rawValue, t.shape, Array(bytes[t.rangeInFile]))
        })
        try replace(shard, with: builder.bytes())
        try edit(copy + "/model.safetensors.index.json") { $0.replacingOccurrences(of: #""mm_projector.pre_norm.weight": "model-00005-of-000006.safetensors","#, with: "") }
        let report = try Verifier.verify(path: copy)
        let missing = report.findings.filter { $0.code == "missing_tensor" }
        #expect(missing.count == 1)
        #expect(missing.first?.file == "model-00005-of-000006.safetensors", "\(missing)")
    }

    @Test("a tensor the index places in a shard that lacks it is reported once")
    func noDoubleReport() throws {
        let dir = TemporaryDirectory()
        let copy = dir.copy(fixture: "malformed/missing_tensor")
        try edit(copy + "/model.safetensors.index.json") {
            $0.replacingOccurrences(of: #""model.layers.0.input_layernorm.weight":"#, with: #""model.layers.0.post_attention_layernorm.weight": "model-00001-of-00002.safetensors", "model.layers.0.input_layernorm.weight":"#)
        }
        let report = try Verifier.verify(path: copy)
        let errors = report.findings.filter { $0.severity == .error }
        #expect(errors.map(\.code) == ["index_tensor_not_in_shard"], "\(errors.map(\.message))")
    }

    @Test("inspect reports shapes that contradict the config, and exits with a problem")
    func inspectStructural() throws {
        let report = InspectReport(try LoadedCheckpoint(path: TestPaths.fixture("malformed/wrong_shape")))
        #expect(report.findings.map(\.code) == ["wrong_shape"])
    }

    @Test("a .safetensors file the index does not list is a warning")
    func unlistedShard() throws {
        let dir = TemporaryDirectory()
        let copy = dir.copy(fixture: "k2-thinking-tiny")
        try FileManager.default.copyItem(atPath: copy + "/model-00001-of-000003.safetensors", toPath: copy + "/consolidated.safetensors")
        let report = try Verifier.verify(path: copy)
        #expect(report.passed)
        #expect(report.findings.map(\.code) == ["unlisted_shard"])
    }

    @Test("a shard without the .safetensors suffix is still read when the index names it")
    func oddShardName() throws {
        let dir = TemporaryDirectory()
        let copy = dir.copy(fixture: "k2-thinking-tiny")
        try FileManager.default.moveItem(atPath: copy + "/model-00002-of-000003.safetensors", toPath: copy + "/part2.bin")
        try edit(copy + "/model.safetensors.index.json") { $0.replacingOccurrences(of: "model-00002-of-000003.safetensors", with: "part2.bin") }
        let report = try Verifier.verify(path: copy)
        #expect(report.passed, "\(report.findings.map(\.message))")
    }

    @Test("a mismatched config.json in the SHA-256 list is counted in the summary")
    func checksumSummary() throws {
        let dir = TemporaryDirectory()
        let copy = dir.copy(fixture: "deepseek-v3-tiny")
        let list = try ChecksumList.parse(
            "\(String(repeating: "0", count: 64))  config.json\n\(try ReadOnlyFile(path: copy + "/model.safetensors").sha256Hex())  model.safetensors\n",
            fileName: "list")
        let report = try Verifier.verify(path: copy, options: VerifyOptions(checksums: list))
        #expect(report.checksums?.checked == 2)
        #expect(report.checksums?.mismatched == 1)
        #expect(report.findings.map(\.code) == ["checksum_mismatch"])
        #expect(report.findings.first?.file == "config.json")
    }
}
