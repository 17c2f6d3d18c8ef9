import Checkpoint
import Foundation
import Requantize
import TestSupport
import Testing

/// `dequantize` refuses what `verify` rejects (issue 15, item 13): bad scales and wrong `weight_shape` records.
@Suite("dequantize refuses broken INT4 modules")
struct DequantizeRefusalTests {
    /// Overwrites bytes of a tensor in a copied checkpoint.
    func patch(_ folder: String, tensor: String, at offset: Int, _ bytes: [UInt8]) throws -> String {
        let directory = try CheckpointDirectory(path: folder)
        let (shard, entry) = try #require(directory.entry(named: tensor))
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: shard.file.path))
        try handle.seek(toOffset: UInt64(entry.rangeInFile.lowerBound + offset))
        try handle.write(contentsOf: bytes)
        try handle.close()
        return shard.name
    }

    @Test("a NaN, infinite, zero or negative scale is refused by tensor, row and group; nothing is written", arguments: [
        ([UInt8(0xC0), 0x7F], 5, 1, "NaN", "hf"),
        ([0x80, 0x7F], 0, 0, "inf", "hf"),
        ([0x80, 0xFF], 31, 1, "-inf", "k2pack"),
        ([0x00, 0x00], 17, 0, "0.0", "hf"),
        ([0x00, 0x80], 2, 1, "-0.0", "k2pack"),
        ([0x80, 0xBF], 9, 0, "-1.0", "hf"),
    ])
    func badScales(bytes: [UInt8], row: Int, group: Int, shown: String, format: String) throws {
        let dir = TemporaryDirectory()
        let input = dir.copy(fixture: "k2-thinking-tiny")
        let name = "model.layers.1.mlp.experts.3.up_proj.weight_scale"
        let shard = try patch(input, tensor: name, at: 2 * (row * 2 + group), bytes)
        let out = dir.path + "/out"
        #expect(throws: RequantizeError.tensor(
            file: shard, tensor: name,
            reason: "row \(row), group \(group): scale \(shown) is not finite and positive (1 of 64 scales are bad); refusing to dequantize (run `k2pack verify`)")) {
            _ = try Dequantizer.dequantize(input: input, output: out, options: .init(format: OutputFormat(rawValue: format)!))
        }
        let left = (try? FileManager.default.contentsOfDirectory(atPath: out)) ?? []
        #expect(left.isEmpty, "left behind: \(left)")
    }

    @Test("a weight_shape record that disagrees with the codes, scales and config is refused", arguments: [
        ([32, 32], "[32, 32]"), ([32, 64], "[32, 64]"), ([0, 64], "[0, 64]"), ([-1, 64], "[-1, 64]"),
    ])
    func wrongShapeRecord(values: [Int64], shown: String) throws {
        let dir = TemporaryDirectory()
        let input = dir.copy(fixture: "k2-thinking-tiny")
        let name = "model.layers.2.mlp.experts.0.down_proj.weight_shape"
        let bytes = values.flatMap { v in withUnsafeBytes(of: v.littleEndian) { Array($0) } }
        let shard = try patch(input, tensor: name, at: 0, bytes)
        let out = dir.path + "/out"
        #expect(throws: RequantizeError.tensor(
            file: shard, tensor: name,
            reason: "weight_shape holds \(shown) but weight_packed, weight_scale and config.json give [64, 32]; refusing to dequantize (run `k2pack verify`)")) {
            _ = try Dequantizer.dequantize(input: input, output: out)
        }
        #expect(!FileManager.default.fileExists(atPath: out + "/config.json"))
    }
}
