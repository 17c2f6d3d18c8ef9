import Forward
import Foundation
import Parity
import TestSupport
import Testing

@Suite("Logit comparison (compare)")
struct CompareTests {
    /// The statistics numpy computed (float64) when the fixtures were made.
    struct Expected: Decodable {
        struct Summary: Decodable {
            var mean: Double, stderr: Double, max: Double, min: Double
            var rms: Double?
            var extra: [String: Double]
            enum Keys: String, CodingKey { case mean, stderr, max, min, rms }
            init(from decoder: any Decoder) throws {
                let c = try decoder.container(keyedBy: Keys.self)
                mean = try c.decode(Double.self, forKey: .mean)
                stderr = try c.decode(Double.self, forKey: .stderr)
                max = try c.decode(Double.self, forKey: .max)
                min = try c.decode(Double.self, forKey: .min)
                rms = try c.decodeIfPresent(Double.self, forKey: .rms)
                extra = try decoder.singleValueContainer().decode([String: Double].self)
            }
        }
        var positions: Int
        var next_token_positions: Int
        var kld: Summary
        var delta_p: Summary
        var same_top1: Double
        var top5_overlap: Double
        var ppl_ref: Double
        var ppl_test: Double
    }

    func close(_ a: Double, _ b: Double, _ what: String, relative: Double = 1e-6, absolute: Double = 1e-15) {
        #expect(abs(a - b) <= absolute + relative * abs(b), "\(what): ours \(a), numpy \(b), difference \(abs(a - b))")
    }

    @Test("exact vs bf16 dequant logits: every statistic matches numpy", arguments: ["k25-tiny", "k2-thinking-tiny"])
    func matchesNumpy(fixture: String) throws {
        let data = try Data(contentsOf: TestPaths.fixtures.appendingPathComponent("references/\(fixture).compare.json"))
        let expected = try JSONDecoder().decode(Expected.self, from: data)
        let ref = try ReferenceDump(spec: ParityHarness.reference(fixture, "/exact"))
        let test = try ReferenceDump(spec: ParityHarness.reference(fixture, "/bf16"))
        let vocab = try #require(try ref.logitsVocabulary())
        let a = try #require(try ref.activation("logits", width: vocab)), b = try #require(try test.activation("logits", width: vocab))
        let stats = try LogitStatistics(ids: ref.inputIDs, sequences: 2, tokens: 8, reference: a, test: b, vocab: vocab)
        #expect(stats.positions == expected.positions && stats.nextTokenPositions == expected.next_token_positions)
        // KLD near 1e-9 comes from differences of float32 log-probabilities: agree to 1e-4 relative.
        for (name, ours, theirs) in [("kld", stats.kld, expected.kld), ("delta_p", stats.deltaP, expected.delta_p)] {
            let tol = name == "kld" ? 1e-4 : 1e-6
            close(ours.mean, theirs.mean, "\(name) mean", relative: tol)
            close(ours.stderr, theirs.stderr, "\(name) stderr", relative: tol)
            close(ours.max, theirs.max, "\(name) max", relative: tol)
            close(ours.min, theirs.min, "\(name) min", relative: tol)
            for p in LogitStatistics.percentileLevels {
                let key = LogitStatistics.label(p)
                close(ours.percentiles[key] ?? .nan, try #require(theirs.extra[key]), "\(name) \(key)", relative: tol)
            }
        }
        close(stats.deltaP.rms ?? .nan, try #require(expected.delta_p.rms), "delta_p rms")
        close(stats.sameTop1, expected.same_top1, "same top-1")
        close(stats.top5Overlap, expected.top5_overlap, "top-5 overlap")
        close(stats.perplexityReference, expected.ppl_ref, "ppl ref", relative: 1e-9)
        close(stats.perplexityTest, expected.ppl_test, "ppl test", relative: 1e-9)
    }

    @Test("hand-computed: two positions, three tokens")
    func handComputed() throws {
        // Position 0: reference uniform, test logits [0, ln 2, 0] → p = [1/4, 1/2, 1/4]; position 1 identical.
        let ln2 = Float(log(2.0))
        let stats = try LogitStatistics(ids: [1, 2], sequences: 1, tokens: 2, reference: [0, 0, 0, 5, 0, 0], test: [0, ln2, 0, 5, 0, 0], vocab: 3)
        // KL(uniform ‖ [1/4, 1/2, 1/4]) = 1/3·ln(2/3) + 2/3·ln(4/3).
        let kl0 = (1.0 / 3) * log(2.0 / 3) + (2.0 / 3) * log(4.0 / 3)
        #expect(abs(stats.kld.max - kl0) < 1e-7, "KLD \(stats.kld.max), expected \(kl0)")
        #expect(abs(stats.kld.min) < 1e-12, "identical rows give KLD \(stats.kld.min)")
        // Next token of position 0 is id 2: p_ref = 1/3, p_test = 1/4.
        #expect(stats.nextTokenPositions == 1)
        #expect(abs(stats.deltaP.mean - (0.25 - 1.0 / 3)) < 1e-7, "Δp \(stats.deltaP.mean)")
        #expect(abs(stats.perplexityReference - 3) < 1e-6 && abs(stats.perplexityTest - 4) < 1e-6)
        #expect(stats.sameTop1 == 0.5, "top-1: reference token 0 (first of a tie), test token 1; then both token 0")
    }
}
