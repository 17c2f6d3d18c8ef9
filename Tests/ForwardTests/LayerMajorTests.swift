@testable import Forward
import Foundation
import ModelStore
import Parity
import TestSupport
import Testing

/// The layer-major driver (`LayerMajorForward`) against today's pass run window by window.
@Suite("Layer-major forward")
struct LayerMajorTests {
    static let fixtures: [(model: String, dequant: Dequantization)] = [
        ("k25-tiny", .exact), ("k25-tiny", .bf16), ("k2-thinking-tiny", .exact), ("deepseek-v3-tiny", .exact),
    ]

    static func pass(_ fixture: String, _ dequant: Dequantization) throws -> ForwardPass {
        ForwardPass(weights: try ModelStore.open(TestPaths.fixture(fixture)).weights(dequant: dequant), threads: 2)
    }

    /// Each window through `ForwardPass.logits(for:batch:)` on its own, concatenated.
    static func windowByWindow(_ pass: ForwardPass, ids: [Int32], windows: Int, tokens: Int) throws -> [Float] {
        var out: [Float] = []
        for w in 0..<windows {
            out += try pass.logits(for: Array(ids[(w * tokens)..<((w + 1) * tokens)]), batch: .init(sequences: 1, tokens: tokens))
        }
        return out
    }

    static func maxAbs(_ a: [Float], _ b: [Float]) -> Float {
        zip(a, b).reduce(0) { max($0, abs($1.0 - $1.1)) }
    }

    @Test("one window per batch is bit-identical to running each window alone", arguments: 0..<4)
    func identical(_ index: Int) throws {
        let (fixture, dequant) = Self.fixtures[index]
        let pass = try Self.pass(fixture, dequant)
        // Five windows of 8 tokens (the dumps' length), spread over the vocabulary.
        let windows = 5, tokens = 8
        let ids = ModelAgreement.probeIDs(count: windows * tokens, vocab: pass.forward.vocabSize)
        let alone = try Self.windowByWindow(pass, ids: ids, windows: windows, tokens: tokens)
        let layerMajor = try LayerMajorForward(pass: pass).logits(ids: ids, windows: windows, tokens: tokens)
        #expect(layerMajor.count == windows * tokens * pass.forward.vocabSize)
        #expect(layerMajor == alone, "max-abs \(Self.maxAbs(layerMajor, alone))")
        // All windows in one batch: same model, float32 rounding of other row counts only.
        let together = try LayerMajorForward(pass: pass, windowsPerBatch: windows).logits(ids: ids, windows: windows, tokens: tokens)
        let difference = Self.maxAbs(together, alone)
        print("layer-major \(fixture) \(dequant): one batch of \(windows) windows vs window by window: max-abs \(difference)")
        #expect(difference <= 1e-5)
    }

    @Test("the dumps' windows give the dumps' logits")
    func dumpWindows() throws {
        let dump = try ReferenceDump(spec: ParityHarness.reference("k25-tiny", "/exact"))
        let pass = try Self.pass("k25-tiny", .exact)
        let logits = try LayerMajorForward(pass: pass).logits(ids: dump.inputIDs, windows: dump.batch.sequences, tokens: dump.batch.tokens)
        let reference = try #require(try dump.logits()).values
        #expect(Self.maxAbs(logits, reference) <= 1e-5)
    }

    @Test("ids that do not make whole windows are refused")
    func wrongCount() throws {
        let pass = try Self.pass("k25-tiny", .exact)
        #expect(throws: ForwardError.input("7 token ids do not make 2 windows of 4 tokens")) {
            try LayerMajorForward(pass: pass).run(ids: [Int32](repeating: 1, count: 7), windows: 2, tokens: 4) { _, _, _ in }
        }
    }

    @Test("the memory estimate grows with the windows and overflows to nil")
    func estimate() throws {
        let config = try Self.pass("k25-tiny", .exact).forward
        let one = try #require(LayerMajorForward.estimatedBytes(config: config, windows: 1, tokens: 512, windowsPerBatch: 1))
        let many = try #require(LayerMajorForward.estimatedBytes(config: config, windows: 64, tokens: 512, windowsPerBatch: 1))
        #expect(one > 0 && many > one)
        #expect(many - one == 63 * 512 * 2 * config.hiddenSize * 4)
        #expect(LayerMajorForward.estimatedBytes(config: config, windows: Int.max / 2, tokens: 4, windowsPerBatch: 1) == nil)
    }
}
