import Checkpoint
import Foundation
import Quantization
import TensorCore
import TestSupport
import Testing

/// The quantizer against compressed-tensors' own output on matrices built to hit every corner of the rule.
@Suite("INT4 quantizer, bit-exact with compressed-tensors")
struct Int4QuantizerTests {
    static let inputs = TestPaths.fixture("quantize/edge-cases.safetensors")
    static let outputs = TestPaths.fixture("quantize/edge-cases.int4.safetensors")

    static func read<T>(_ file: SafetensorsFile, _ name: String, as: T.Type) throws -> (values: [T], shape: [Int]) {
        let entry = try #require(file.tensors.first { $0.name == name }, "\(name) missing from \(file.name)")
        let bytes = try file.bytes(of: entry)
        return (Array(bytes.withMemoryRebound(to: T.self) { $0 }), entry.shape)
    }

    static var cases: [String] {
        (try? SafetensorsFile(path: inputs, name: "edge-cases.safetensors").tensors.map { String($0.name.dropLast(".weight".count)) }) ?? []
    }

    @Test("codes, scales and dequantization match the library", arguments: cases)
    func matches(_ module: String) throws {
        let input = try SafetensorsFile(path: Self.inputs, name: "edge-cases.safetensors")
        let output = try SafetensorsFile(path: Self.outputs, name: "edge-cases.int4.safetensors")
        let (w, shape) = try Self.read(input, module + ".weight", as: UInt16.self)
        let (words, _) = try Self.read(output, module + ".weight_packed", as: UInt32.self)
        let (scales, _) = try Self.read(output, module + ".weight_scale", as: UInt16.self)
        let (dequant, _) = try Self.read(output, module + ".weight_dequant", as: UInt16.self)
        let rows = shape[0], cols = shape[1]
        var ourWords = [UInt32](repeating: 0, count: rows * cols / 8), ourScales = [UInt16](repeating: 0, count: rows * cols / 32)
        var exact = [Float](repeating: 0, count: rows * cols), rounded = exact
        for r in 0..<rows {
            try w.withUnsafeBufferPointer { wp in
                try ourWords.withUnsafeMutableBufferPointer { op in
                    try ourScales.withUnsafeMutableBufferPointer { sp in
                        try Int4Quantizer.quantizeRow(
                            UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: wp[(r * cols)..<((r + 1) * cols)])), groupSize: 32,
                            words: UnsafeMutableBufferPointer(rebasing: op[(r * cols / 8)..<((r + 1) * cols / 8)]),
                            scales: UnsafeMutableBufferPointer(rebasing: sp[(r * cols / 32)..<((r + 1) * cols / 32)]))
                    }
                }
            }
            for (mode, target) in [(true, 0), (false, 1)] {
                var row = [Float](repeating: 0, count: cols)
                words.withUnsafeBufferPointer { wp in
                    scales.withUnsafeBufferPointer { sp in
                        row.withUnsafeMutableBufferPointer {
                            Int4Quantizer.dequantizeRow(
                                words: UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: wp[(r * cols / 8)..<((r + 1) * cols / 8)])),
                                scales: UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: sp[(r * cols / 32)..<((r + 1) * cols / 32)])), groupSize: 32, exact: mode, into: $0)
                        }
                    }
                }
                if target == 0 { exact.replaceSubrange((r * cols)..<((r + 1) * cols), with: row) } else { rounded.replaceSubrange((r * cols)..<((r + 1) * cols), with: row) }
            }
        }
        let badScale = zip(ourScales, scales).enumerated().first { $0.element.0 != $0.element.1 }
        #expect(badScale == nil, "\(module): scale \(badScale.map { "\($0.offset): ours 0x\(String($0.element.0, radix: 16)), library 0x\(String($0.element.1, radix: 16))" } ?? "")")
        let badWord = zip(ourWords, words).enumerated().first { $0.element.0 != $0.element.1 }
        #expect(badWord == nil, "\(module): word \(badWord.map { "\($0.offset) (row \($0.offset * 8 / cols)): ours 0x\(String($0.element.0, radix: 16)), library 0x\(String($0.element.1, radix: 16))" } ?? "")")
        // bf16(q·s) is the library's decompression, bit for bit; q·s exact rounds to it.
        let badDequant = zip(rounded.map(BFloat16Bits.fromFloat), dequant).enumerated().first { $0.element.0 != $0.element.1 }
        #expect(badDequant == nil, "\(module): dequantized element \(badDequant?.offset ?? -1) differs from the library's")
        #expect(exact.map(BFloat16Bits.fromFloat) == dequant)
    }

    @Test("the corner cases land where the rule says")
    func corners() throws {
        let output = try SafetensorsFile(path: Self.outputs, name: "edge-cases.int4.safetensors")
        let (words, _) = try Self.read(output, "edge.ties_and_clamp.weight_packed", as: UInt32.self)
        let codes = PackedInt4.unpack(Array(words[0..<4]))
        // 7.5 → 7 (clamp), −7.5 → −8, then ties 0.5 → 0, −0.5 → −0, 1.5 → 2, −1.5 → −2, 2.5 → 2, −2.5 → −2.
        #expect(Array(codes[0..<8]) == [7, -8, 0, 0, 2, -2, 2, -2])
        let (scales, _) = try Self.read(output, "edge.zero_groups.weight_scale", as: UInt16.self)
        #expect(scales[0] == Int4Quantizer.zeroScaleGuard && scales[1] == Int4Quantizer.zeroScaleGuard, "all-zero and ±0 groups get the guard 2^-7")
    }

    @Test("rows read from odd addresses (mapped tensor data need not be aligned) give the same codes and values")
    func unaligned() throws {
        let input = try SafetensorsFile(path: Self.inputs, name: "edge-cases.safetensors")
        let (w, shape) = try Self.read(input, "edge.random.weight", as: UInt16.self)
        let cols = shape[1]
        let bytes = w.prefix(cols).withUnsafeBytes { Array($0) }
        let shifted = [UInt8](repeating: 0, count: 1) + bytes
        var a = [UInt32](repeating: 0, count: cols / 8), b = a
        var sa = [UInt16](repeating: 0, count: cols / 32), sb = sa
        try bytes.withUnsafeBytes { raw in
            try a.withUnsafeMutableBufferPointer { w in try sa.withUnsafeMutableBufferPointer { try Int4Quantizer.quantizeRow(raw, groupSize: 32, words: w, scales: $0) } }
        }
        try shifted.withUnsafeBytes { raw in
            try b.withUnsafeMutableBufferPointer { w in
                try sb.withUnsafeMutableBufferPointer { try Int4Quantizer.quantizeRow(UnsafeRawBufferPointer(rebasing: raw[1...]), groupSize: 32, words: w, scales: $0) }
            }
        }
        #expect(a == b && sa == sb)
        let wordBytes = [UInt8](repeating: 0, count: 3) + a.withUnsafeBytes { Array($0) }, scaleBytes = [UInt8](repeating: 0, count: 1) + sa.withUnsafeBytes { Array($0) }
        var aligned = [Float](repeating: 0, count: cols), odd = aligned
        a.withUnsafeBytes { wr in sa.withUnsafeBytes { sr in aligned.withUnsafeMutableBufferPointer { Int4Quantizer.dequantizeRow(words: wr, scales: sr, groupSize: 32, exact: true, into: $0) } } }
        wordBytes.withUnsafeBytes { wr in
            scaleBytes.withUnsafeBytes { sr in
                odd.withUnsafeMutableBufferPointer {
                    Int4Quantizer.dequantizeRow(words: UnsafeRawBufferPointer(rebasing: wr[3...]), scales: UnsafeRawBufferPointer(rebasing: sr[1...]), groupSize: 32, exact: true, into: $0)
                }
            }
        }
        #expect(aligned == odd)
    }

    @Test("NaN and infinity are refused with their column")
    func notFinite() throws {
        for (bits, column) in [(UInt16(0x7FC0), 5), (UInt16(0x7F80), 40), (UInt16(0xFF80), 63)] {
            var row = [UInt16](repeating: BFloat16Bits.fromFloat(0.5), count: 64)
            row[column] = bits
            var words = [UInt32](repeating: 0, count: 8), scales = [UInt16](repeating: 0, count: 2)
            #expect(throws: Int4Quantizer.Failure.notFinite(column: column, bits: bits)) {
                try row.withUnsafeBufferPointer { r in
                    try words.withUnsafeMutableBufferPointer { w in
                        try scales.withUnsafeMutableBufferPointer { s in try Int4Quantizer.quantizeRow(UnsafeRawBufferPointer(r), groupSize: 32, words: w, scales: s) }
                    }
                }
            }
        }
        #expect(Int4Quantizer.Failure.notFinite(column: 5, bits: 0x7FC0).description.contains("column 5 is nan (bf16 0x7FC0)"))
    }
}
