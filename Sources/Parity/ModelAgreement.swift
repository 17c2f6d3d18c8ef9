import Forward
import Foundation
import TensorCore

/// How closely two forward passes of the same model agree on the same input, layer by layer: a sharded model's
/// against the unsharded one, where only the order of the collectives' sums may differ.
public struct ModelAgreement: Codable, Sendable {
    public struct Layer: Codable, Sendable {
        public var layer: Int
        public var attnOut: Comparison
        public var mlpOut: Comparison
        public var layerOut: Comparison
        /// Tokens whose expert set differs.
        public var routingMismatches: Int?

        enum CodingKeys: String, CodingKey {
            case layer, attnOut = "attn_out", mlpOut = "mlp_out", layerOut = "layer_out", routingMismatches = "routing_mismatches"
        }
    }

    public var tokens: Int
    public var embedding: Comparison
    public var layers: [Layer]
    public var logits: Comparison
    /// Largest logit difference allowed: `atol`, or `rtol` times the largest logit (float32 sums in another
    /// order differ in proportion to the values summed).
    public var atol: Double
    public var rtol: Double
    public var pass: Bool

    public static func run(
        _ test: any LanguageModelPass, against reference: any LanguageModelPass, ids: [Int32], atol: Double = 1e-5,
        rtol: Double = 0, progress: ProgressCallback? = nil
    ) throws -> ModelAgreement {
        let config = reference.forward
        let batch = ForwardPass.Batch(sequences: 1, tokens: ids.count), H = config.hiddenSize, k = config.routing.topK
        func compare(_ a: [Float], _ b: [Float]) -> Comparison {
            Comparison(ours: a, reference: b, tokens: ids.count, width: max(a.count / max(ids.count, 1), 1))
        }
        var a = try test.embed(ids), b = try reference.embed(ids)
        let embedding = compare(a, b)
        var layers: [Layer] = []
        for l in 0..<config.numLayers {
            let x = try test.layer(l, input: a, batch: batch), y = try reference.layer(l, input: b, batch: batch)
            var mismatches: Int?
            if let p = x.topK, let q = y.topK {
                mismatches = (0..<ids.count).filter { r in Set(p[(r * k)..<((r + 1) * k)]) != Set(q[(r * k)..<((r + 1) * k)]) }.count
            }
            layers.append(Layer(
                layer: l, attnOut: compare(x.attentionOut, y.attentionOut), mlpOut: compare(x.mlpOut, y.mlpOut),
                layerOut: compare(x.output, y.output), routingMismatches: mismatches))
            (a, b) = (x.output, y.output)
            progress?(l + 1, config.numLayers)
        }
        precondition(a.count == ids.count * H, "layer output does not match the input")
        let logits = compare(try test.logits(test.finalNorm(a)), try reference.logits(reference.finalNorm(b)))
        let within = logits.maxAbs <= atol || logits.maxAbs <= rtol * logits.referenceMaxAbs
        let pass = logits.nonFinite == 0 && within && layers.allSatisfy { ($0.routingMismatches ?? 0) == 0 }
        return ModelAgreement(tokens: ids.count, embedding: embedding, layers: layers, logits: logits, atol: atol, rtol: rtol, pass: pass)
    }

    /// Token ids spread over the whole vocabulary (so every vocabulary block is used), deterministic.
    public static func probeIDs(count: Int, vocab: Int) -> [Int32] {
        (0..<count).map { Int32((($0 * 7919) + 13) % max(vocab, 1)) }
    }

    public func renderText(test: String, reference: String) -> String {
        var out = "\(displayed(test)) vs \(displayed(reference)): \(tokens) tokens\n"
        func line(_ name: String, _ c: Comparison) -> String {
            String(format: "  %@ max-abs %.3e  (at token %d, channel %d)\n", name.padding(toLength: 22, withPad: " ", startingAt: 0), c.maxAbs, c.worstAt[1], c.worstAt[2])
        }
        out += line("embedding", embedding)
        for l in layers {
            out += line("layer \(l.layer) attn_out", l.attnOut) + line("layer \(l.layer) mlp_out", l.mlpOut) + line("layer \(l.layer) layer_out", l.layerOut)
            if let m = l.routingMismatches, m > 0 { out += "  layer \(l.layer): \(m) tokens chose other experts\n" }
        }
        out += line("logits", logits)
        let allowed = rtol > 0 ? String(format: "%.0e, or %.0e × the largest logit %.3g", atol, rtol, logits.referenceMaxAbs) : String(format: "%.0e", atol)
        out += pass
            ? String(format: "PASS: logits max-abs %.3e, within %@; same experts chosen\n", logits.maxAbs, allowed)
            : String(format: "FAIL: logits differ by %.3e (allowed %@), or the experts chosen differ\n", logits.maxAbs, allowed)
        return out
    }
}
