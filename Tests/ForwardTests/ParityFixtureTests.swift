@testable import Forward
import Foundation
import ModelStore
import Parity
import TestSupport
import Testing

/// Helpers shared by the forward-pass suites.
enum ParityHarness {
    static func reference(_ fixture: String, _ group: String) -> String {
        TestPaths.fixtures.appendingPathComponent("references/\(fixture).h5").path + ":" + group
    }

    static func run(
        model path: String, reference: String, dequant: Dequantization = .exact, variant: ForwardVariant = .none,
        layers: ClosedRange<Int>? = nil
    ) throws -> ParityReport {
        let opened = try ModelStore.open(path)
        let pass = ForwardPass(weights: try opened.weights(dequant: dequant), threads: 2, variant: variant)
        let dump = try ReferenceDump(spec: reference)
        return try ParityRun.run(model: path, forward: pass, reference: dump, layers: layers)
    }

    /// "layer 2 isolated mlp_out max-abs 3e-2 at [0, 5, 17]" for every failing part (for messages).
    static func failures(_ report: ParityReport) -> String {
        var lines: [String] = []
        for l in report.layers {
            for (run, parts) in [("chained", l.chained), ("isolated", l.isolated)] {
                for p in parts where !p.pass {
                    lines.append("layer \(l.layer) \(run) \(p.part) max-abs \(p.comparison.maxAbs) at \(p.comparison.worstAt)")
                }
            }
            if let r = l.routing, !r.pass { lines.append("layer \(l.layer) routing: \(r.mismatches) mismatches") }
        }
        for p in [report.finalNorm, report.logits].compactMap({ $0 }) where !p.pass {
            lines.append("\(p.part) max-abs \(p.comparison.maxAbs) at \(p.comparison.worstAt)")
        }
        return lines.joined(separator: "; ")
    }

    /// The largest difference over every compared part, and where.
    static func worst(_ report: ParityReport) -> (value: Double, where: String) {
        var best = (0.0, "nowhere")
        for l in report.layers {
            for (run, parts) in [("chained", l.chained), ("isolated", l.isolated)] {
                for p in parts where p.comparison.maxAbs > best.0 {
                    best = (p.comparison.maxAbs, "layer \(l.layer) \(run) \(p.part) at \(p.comparison.worstAt)")
                }
            }
        }
        for p in [report.finalNorm, report.logits].compactMap({ $0 }) where p.comparison.maxAbs > best.0 {
            best = (p.comparison.maxAbs, "\(p.part) at \(p.comparison.worstAt)")
        }
        return best
    }
}

@Suite("Parity on the fixtures")
struct ParityFixtureTests {
    @Test("fp32 forward matches the transformers reference", arguments: [
        ("k25-tiny", "/exact", Dequantization.exact), ("k25-tiny", "/bf16", .bf16),
        ("k2-thinking-tiny", "/exact", .exact), ("k2-thinking-tiny", "/bf16", .bf16),
        ("deepseek-v3-tiny", "/fp32", .exact),
    ])
    func matches(fixture: String, group: String, dequant: Dequantization) throws {
        let report = try ParityHarness.run(model: TestPaths.fixture(fixture), reference: ParityHarness.reference(fixture, group), dequant: dequant)
        let worst = ParityHarness.worst(report)
        #expect(report.pass, "\(ParityHarness.failures(report))")
        #expect(worst.value <= 1e-5, "largest difference \(worst.value) at \(worst.where)")
        #expect(report.layers.count == 3 && report.logits != nil && report.finalNorm != nil)
        for l in report.layers where l.kind == "moe" {
            let r = try #require(l.routing)
            #expect(r.sameSet == r.tokens, "layer \(l.layer): \(r.examples)")
        }
        let relative = report.layers.flatMap { $0.chained + $0.isolated }.map { $0.comparison.maxAbs / $0.comparison.referenceMaxAbs }.max() ?? 0
        #expect(relative <= 1e-5, "largest relative difference \(relative)")
        print("\(fixture)\(group): largest relative \(relative); largest difference \(worst.value) at \(worst.where); logits \(report.logits!.comparison.maxAbs)")
    }
}
