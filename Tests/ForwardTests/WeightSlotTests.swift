import Forward
import ModelConfig
import ModelStore
import TestSupport
import Testing

@Suite("Typed weight slots")
struct WeightSlotTests {
    @Test("every slot of the shipped language-model manifest is a WeightSlot, on every fixture")
    func manifestSlotsKnown() throws {
        for fixture in ["k25-tiny", "k2-thinking-tiny", "deepseek-v3-tiny"] {
            let opened = try ModelStore.open(TestPaths.fixture(fixture))
            for t in opened.expected.tensors where !t.vision {
                #expect(WeightSlot(rawValue: t.slot) != nil, "\(fixture): \(t.name) has slot \(t.slot)")
            }
            let source = try opened.weights()
            #expect(source.has(.attnQB, layer: 0))
            #expect(!source.has(.router, layer: 0), "layer 0 is dense")
        }
    }

    @Test("a manifest slot the forward pass does not know is refused when the weights are opened, naming the tensor")
    func unknownSlotRefused() throws {
        let opened = try ModelStore.open(TestPaths.fixture("k25-tiny"))
        var expected = opened.expected
        let i = try #require(expected.tensors.firstIndex { $0.slot == "attn_q_b" })
        expected.tensors[i].slot = "attn_qb"
        let name = expected.tensors[i].name
        let known = WeightSlot.allCases.map(\.rawValue).joined(separator: ", ")
        #expect(throws: ForwardError.wrongTensor(
            name: name, reason: "the architecture manifest puts it in slot \"attn_qb\", which the forward pass does not have (slots: \(known))")) {
            _ = try ManifestWeightSource(config: opened.config, expected: expected, store: opened.store)
        }
    }
}

/// A matrix `[2, 3]` whose element `[r, c]` is `10·r + c`, decoded by the source (as a GGUF block format will be).
final class CountingRows: MatrixRows, @unchecked Sendable {
    var released: [Range<Int>] = []
    func decodeRows(_ range: Range<Int>, into out: UnsafeMutablePointer<Float>) {
        for (i, r) in range.enumerated() { for c in 0..<3 { out[i * 3 + c] = Float(10 * r + c) } }
    }
    func releaseRows(_ range: Range<Int>) { released.append(range) }
}

@Suite("A weight source's own stored form")
struct MatrixRowsTests {
    @Test("a matrix decoded by its source reads like any other")
    func sourceDecoded() {
        let rows = CountingRows()
        let m = WeightMatrix(name: "m", rows: 2, cols: 3, storage: .rows(rows))
        #expect(m.all() == [0, 1, 2, 10, 11, 12])
        #expect(m.row(1) == [10, 11, 12])
        m.releaseRows(0..<2)
        #expect(rows.released == [0..<2])
    }
}
