import Forward
import Foundation
import ModelStore
import Parity
import TestSupport
import Testing
import Vision

/// Helpers shared by the vision suites.
enum VisionHarness {
    static let model = TestPaths.fixture("k25-tiny")
    static func reference(_ group: String) -> String {
        TestPaths.fixtures.appendingPathComponent("references/k25-tiny-vision.h5").path + ":" + group
    }

    static func tower(config: VisionConfig? = nil, steps: VisionSteps = .reference, store: (any TensorStore)? = nil) throws -> VisionTower {
        let opened = try ModelStore.open(model)
        return try VisionTower(model: opened.config, store: store ?? opened.store, config: config, steps: steps, threads: 2)
    }

    static func run(_ group: String, config: VisionConfig? = nil, steps: VisionSteps = .reference, store: (any TensorStore)? = nil) throws -> VisionParityReport {
        let t = try tower(config: config, steps: steps, store: store)
        let dump = try VisionDump(spec: reference(group), config: t.config)
        return try VisionParity.run(tower: t, dump: dump, model: model)
    }

    /// "merger_out chained max-abs 3e-2 at [0, 5, 17]" for every failing point.
    static func failures(_ report: VisionParityReport) -> String {
        report.points.filter { !$0.pass }.map { p in
            "\(p.point) chained \(p.chained.maxAbs) isolated \(p.isolated.map { "\($0.maxAbs)" } ?? "-")"
        }.joined(separator: "; ")
    }

    static let groups = ["/images", "/video"]
}

@Suite("Vision parity on the fixture")
struct VisionParityTests {
    @Test("the tower, merger and projector match transformers at every point, chained and isolated", arguments: VisionHarness.groups)
    func matches(group: String) throws {
        let report = try VisionHarness.run(group)
        #expect(report.pass, "\(VisionHarness.failures(report))")
        // Every point of the dump was compared: patch embedding, 3 per block, final norm, merger, projector.
        let blocks = try VisionHarness.tower().config.blocks
        #expect(report.points.count == 1 + 3 * blocks + 3)
        // Fed the reference's own input, every step agrees to float32 rounding; chained, block 0's LayerNorm of
        // the small patch embedding (std ~0.1, by design: its epsilon must matter) amplifies the 1e-7 of the
        // embedding to ~1e-5 (fixture: largest 2.0e-5, /images layers/1/layer_out; docs/REFERENCE-DUMPS.md).
        #expect(report.points.allSatisfy { ($0.isolated?.maxAbs ?? 0) <= 1e-5 }, "\(report.points.map { "\($0.point) \($0.isolated?.maxAbs ?? 0)" })")
        #expect(report.largest <= 5e-5, "largest \(report.largest) at \(report.largestAt)")
        #expect(report.firstFailure == nil)
    }

    @Test("the packed images give h·w/4 tokens each and the video chunk h·w/4 (not t·h·w/4)")
    func tokenCounts() throws {
        let config = try VisionHarness.tower().config
        let images = try VisionDump(spec: VisionHarness.reference("/images"), config: config)
        #expect(images.input.grids == [VisionGrid(t: 1, h: 2, w: 2), VisionGrid(t: 1, h: 6, w: 8)])
        #expect(images.input.tokens(config) == 1 + 12)
        let video = try VisionDump(spec: VisionHarness.reference("/video"), config: config)
        #expect(video.input.grids == [VisionGrid(t: 4, h: 2, w: 4)])
        #expect(video.input.tokens(config) == 2)
    }
}

@Suite("Packed entries are independent")
struct VisionPackingTests {
    @Test("each packed image gives the tokens it gives alone: attention never crosses entries")
    func packedEqualsAlone() throws {
        let tower = try VisionHarness.tower()
        let c = tower.config
        let packed = try VisionDump(spec: VisionHarness.reference("/images"), config: c).input
        let together = try tower.run(packed)
        var offset = 0
        for (e, g) in packed.grids.enumerated() {
            let values = c.patchValues
            let pixels = Array(packed.pixels[(packed.starts[e] * values)..<((packed.starts[e] + g.patches) * values)])
            let alone = try tower.run(try VisionInput(pixels: pixels, grids: [g], config: c))
            let slice = Array(together[(offset * c.textWidth)..<((offset + alone.count / c.textWidth) * c.textWidth)])
            let worst = zip(alone, slice).map { abs($0 - $1) }.max() ?? 0
            #expect(worst <= 1e-5, "entry \(e): max-abs \(worst)")
            offset += alone.count / c.textWidth
        }
        #expect(offset == packed.tokens(c))
    }
}
