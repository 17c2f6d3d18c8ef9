import Checkpoint
@testable import Forward
import Foundation
import Parity
import TestSupport
import Testing

/// Each class of bug a reference pass exists to catch, injected on purpose: `parity` must fail, and name the
/// layer where the bug lives (isolated comparisons keep later layers clean).
@Suite("Deliberate bugs are caught at the right layer")
struct DeliberateBugTests {
    let model = TestPaths.fixture("k25-tiny")
    let reference = ParityHarness.reference("k25-tiny", "/exact")

    func expectFailure(_ report: ParityReport, at layer: Int, _ what: String) {
        #expect(!report.pass, "\(what) went unnoticed")
        #expect(report.firstFailingLayer == layer, "\(what): first failing layer \(report.firstFailingLayer.map(String.init) ?? "none"), expected \(layer): \(ParityHarness.failures(report))")
        for l in report.layers where l.layer != layer {
            #expect(l.isolated.allSatisfy { $0.pass }, "\(what): layer \(l.layer) fails in isolation too: \(ParityHarness.failures(report))")
        }
    }

    @Test("INT4 nibbles read high-first in one layer")
    func nibbleOrder() throws {
        let report = try ParityHarness.run(model: model, reference: reference, variant: ForwardVariant(layers: [2], nibblesHighFirst: true))
        expectFailure(report, at: 2, "swapped nibble order")
    }

    @Test("latent-norm epsilon 1e-5 (vLLM's) instead of 1e-6")
    func latentEpsilon() throws {
        let report = try ParityHarness.run(model: model, reference: reference, variant: ForwardVariant(latentNormEps: 1e-5))
        #expect(report.firstFailingLayer == 0, "\(ParityHarness.failures(report))")
        #expect(!report.pass)
    }

    @Test("YaRN beta_fast 1 (K2-Thinking's) instead of 32")
    func betaFast() throws {
        let report = try ParityHarness.run(model: model, reference: reference, variant: ForwardVariant(betaFast: 1))
        #expect(report.firstFailingLayer == 0, "\(ParityHarness.failures(report))")
        #expect(!report.pass)
    }

    @Test("router bias used in the expert weights, not for selection only", arguments: [true, false])
    func routerBias(inWeights: Bool) throws {
        let variant = inWeights ? ForwardVariant(routerBiasInWeights: true) : ForwardVariant(routerBiasIgnored: true)
        let report = try ParityHarness.run(model: model, reference: reference, variant: variant)
        #expect(report.firstFailingLayer == 1, "\(ParityHarness.failures(report))")
        #expect(!report.pass)
    }
}

@Suite("A corrupted scale is caught at its layer")
struct CorruptScaleTests {
    @Test("one doubled INT4 scale of an expert the reference routes to")
    func doubledScale() throws {
        let temp = TemporaryDirectory()
        let model = temp.copy(fixture: "k25-tiny")
        let dump = try ReferenceDump(spec: ParityHarness.reference("k25-tiny", "/exact"))
        let chosen = try #require(try dump.topK(layer: 2, k: 2, experts: 8))
        let name = "language_model.model.layers.2.mlp.experts.\(chosen[0]).down_proj.weight_scale"
        let directory = try CheckpointDirectory(path: model)
        let (shard, entry) = try #require(directory.entry(named: name))
        // Row 0, group 0: add one to the BF16 exponent (×2), as one flipped bit in a download would.
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: shard.file.path))
        try handle.seek(toOffset: UInt64(entry.rangeInFile.lowerBound))
        let old = try #require(try handle.read(upToCount: 2))
        let bits = (UInt16(old[1]) << 8 | UInt16(old[0])) &+ 0x0080
        try handle.seek(toOffset: UInt64(entry.rangeInFile.lowerBound))
        try handle.write(contentsOf: [UInt8(bits & 0xFF), UInt8(bits >> 8)])
        try handle.close()

        let report = try ParityHarness.run(model: model, reference: ParityHarness.reference("k25-tiny", "/exact"))
        #expect(!report.pass, "a doubled scale of \(name) went unnoticed")
        #expect(report.firstFailingLayer == 2, "\(ParityHarness.failures(report))")
        for l in report.layers where l.layer < 2 { #expect(l.pass, "layer \(l.layer): \(ParityHarness.failures(report))") }
    }
}
