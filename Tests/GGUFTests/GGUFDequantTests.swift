import Checkpoint
import Foundation
import GGUF
import Testing
import TestSupport

/// `Fixtures/gguf/dequant.gguf`: per type T, `q.T` (blocks with edge scales) and `ref.T` (gguf-py 0.19's
/// `gguf.quants.dequantize` of them, F32).
let dequantFixture = TestPaths.fixture("gguf/dequant.gguf")

/// The first element where `found` and `expected` differ bitwise, described with its ggml coordinates.
func firstDifference(_ found: [Float], _ expected: [Float], ne: [Int]) -> String? {
    guard found.count == expected.count else { return "\(found.count) values, expected \(expected.count)" }
    for i in found.indices where found[i].bitPattern != expected[i].bitPattern {
        var rest = i
        var coordinates: [Int] = []
        for n in ne {
            coordinates.append(rest % max(n, 1))
            rest /= max(n, 1)
        }
        let f = String(found[i].bitPattern, radix: 16)
        let e = String(expected[i].bitPattern, radix: 16)
        return "first differing element \(i) (ne coordinates \(coordinates)): found \(found[i]) (0x\(f)), expected \(expected[i]) (0x\(e))"
    }
    return nil
}

@Suite("GGUF dequantization: bit-exact with gguf-py 0.19")
struct GGUFDequantTests {
    static let types: [String] = {
        guard let file = try? GGUFFile(path: dequantFixture), let list = file["k2pack.fixture.types"]?.arrayValue?.stringValues else {
            return []
        }
        return list
    }()

    @Test("the fixture covers every type the dequantizer handles")
    func coverage() throws {
        let covered = Set(Self.types)
        let handled = Set(GGMLType.allCases.filter(\.canDequantize).map(\.name))
        #expect(covered == handled)
        #expect(covered.count == 25)
    }

    @Test("each type matches gguf.quants.dequantize bit for bit", arguments: types)
    func matchesOracle(type name: String) throws {
        let file = try GGUFFile(path: dequantFixture)
        let q = try #require(file.tensor(named: "q.\(name)"))
        let ref = try #require(file.tensor(named: "ref.\(name)"))
        #expect(q.type.name == name)
        #expect(ref.type == .f32)
        #expect(q.ne == ref.ne, "q.\(name) ne \(q.ne) vs ref ne \(ref.ne)")
        let found = try GGUFDequantizer.dequantize(q, of: file)
        let expected = try GGUFDequantizer.dequantize(ref, of: file)
        if let difference = firstDifference(found, expected, ne: q.ne) {
            Issue.record("type \(name), tensor q.\(name): \(difference)")
        }
        // The oracle's values are not trivial: several distinct finite values per type.
        #expect(Set(expected.filter(\.isFinite)).count > 8, "type \(name): ref.\(name) holds too few distinct values")
    }

    @Test("a difference is reported with its element and coordinates")
    func differenceReport() {
        var a: [Float] = [0, 1, 2, 3, 4, 5]
        let b = a
        #expect(firstDifference(a, b, ne: [3, 2]) == nil)
        a[4] = -0.0
        #expect(firstDifference(a, b, ne: [3, 2]) == "first differing element 4 (ne coordinates [1, 1]): found -0.0 (0x80000000), expected 4.0 (0x40800000)")
        a[4] = 4
        a[0] = -0.0
        #expect(firstDifference(a, b, ne: [3, 2])?.hasPrefix("first differing element 0") == true)
    }

    @Test("many threads give the same bits as one", arguments: ["Q4_K", "IQ2_XXS", "Q8_0", "F16"])
    func threadsAgree(type name: String) throws {
        let file = try GGUFFile(path: dequantFixture)
        let q = try #require(file.tensor(named: "q.\(name)"))
        let blocks = try file.bytes(of: q)
        // Repeat the fixture's blocks past several 64 KiB chunks.
        let repeats = 200_000 / blocks.count + 1
        let big = Array(repeating: Array(blocks), count: repeats).flatMap { $0 }
        let count = big.count / q.type.typeSize * q.type.blockSize
        var one = [Float](repeating: 0, count: count)
        var many = [Float](repeating: 0, count: count)
        big.withUnsafeBytes { raw in
            one.withUnsafeMutableBufferPointer { GGUFDequantizer.dequantize(q.type, blocks: raw, into: $0, threads: 1) }
            many.withUnsafeMutableBufferPointer { GGUFDequantizer.dequantize(q.type, blocks: raw, into: $0, threads: 4) }
        }
        #expect(firstDifference(many, one, ne: [count]) == nil)
    }

    @Test("f16 conversion agrees with Float16 for every non-NaN value and keeps NaN payloads")
    func halfConversion() {
        for bits in 0...UInt16.max {
            let value = GGUFDequantizer.halfToFloat(bits)
            if bits & 0x7C00 == 0x7C00, bits & 0x03FF != 0 {
                #expect(value.isNaN && value.bitPattern == UInt32(bits & 0x8000) << 16 | 0x7F80_0000 | UInt32(bits & 0x03FF) << 13)
            } else if value.bitPattern != Float(Float16(bitPattern: bits)).bitPattern {
                Issue.record("f16 0x\(String(bits, radix: 16)): \(value) vs \(Float(Float16(bitPattern: bits)))")
                return
            }
        }
    }

    @Test("the IQ tables hash to what the fixture generator recorded")
    func tableHash() throws {
        let file = try GGUFFile(path: dequantFixture)
        let recorded = try #require(file["k2pack.fixture.iq_tables_sha256"]?.stringValue)
        let bytes = GGUFDequantizer.iqTableBytes
        #expect(bytes.count == 256 * 8 + 512 * 8 + 1024 * 8 + 256 * 4 + 512 * 4 + 2048 * 8 + 128 + 16 + 16)
        let hash = bytes.withUnsafeBytes { SHA256Digest.hex(of: $0) }
        #expect(hash == recorded, "IQTables.swift differs from what make_gguf.py generated: regenerate it, never edit it")
    }
}
