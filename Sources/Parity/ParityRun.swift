import Forward
import Foundation
import TensorCore

/// One compared tensor of one layer.
public struct PartReport: Codable, Sendable {
    public var part: String
    public var comparison: Comparison
    public var pass: Bool
}

/// Router agreement of one MoE layer: expert sets, not order.
public struct RoutingReport: Codable, Sendable {
    public struct Mismatch: Codable, Sendable {
        public var sequence: Int
        public var token: Int
        public var ours: [Int32]
        public var reference: [Int32]
        public var margin: Double
    }
    /// Which of our runs was compared: "isolated" (fed the reference's layer_in) or "chained".
    public var run: String
    public var tokens: Int
    public var sameSet: Int
    /// Differing sets where our k-th and (k+1)-th selection scores are within the routing-margin tolerance.
    public var nearTies: Int
    public var mismatches: Int
    /// The first few differing tokens.
    public var examples: [Mismatch]
    public var smallestMargin: Double
    public var pass: Bool

    enum CodingKeys: String, CodingKey {
        case run, tokens, sameSet = "same_set", nearTies = "near_ties", mismatches, examples
        case smallestMargin = "smallest_margin", pass
    }
}

public struct LayerReport: Codable, Sendable {
    public var layer: Int
    public var kind: String
    /// Our own chain of layers from the embedding (or from the slice's first dumped input).
    public var chained: [PartReport]
    /// This layer alone, fed the reference's own `layer_in`: one bad layer does not hide the rest.
    public var isolated: [PartReport]
    public var routing: RoutingReport?
    public var pass: Bool
}

/// The whole parity run.
public struct ParityReport: Codable, Sendable {
    public var model: String
    public var reference: String
    public var dequant: String
    public var referenceDequant: String?
    public var referenceDType: String?
    public var sequences: Int
    public var tokens: Int
    public var tolerance: Tolerance
    public var layers: [LayerReport]
    public var finalNorm: PartReport?
    public var logits: PartReport?
    /// Fraction of positions whose top-1 token agrees with the reference.
    public var top1Agreement: Double?
    public var firstFailingLayer: Int?
    public var pass: Bool
    /// Wall time of our chained forward pass alone, and its speed.
    public var forwardSeconds: Double
    public var tokensPerSecond: Double
    public var notes: [String]

    enum CodingKeys: String, CodingKey {
        case model, reference, dequant, referenceDequant = "reference_dequant", referenceDType = "reference_dtype"
        case sequences, tokens, tolerance, layers, finalNorm = "final_norm", logits, top1Agreement = "top1_agreement"
        case firstFailingLayer = "first_failing_layer", pass, forwardSeconds = "forward_seconds"
        case tokensPerSecond = "tokens_per_second", notes
    }
}

/// Runs the reference forward pass against a dump, layer by layer.
public enum ParityRun {
    public static let parts = ["attn_out", "mlp_out", "layer_out"]

    public static func run(
        model: String, forward: any LanguageModelPass, reference ref: ReferenceDump, tolerance: Tolerance = Tolerance(),
        layers slice: ClosedRange<Int>? = nil, isolated: Bool = true, progress: ProgressCallback? = nil
    ) throws -> ParityReport {
        let config = forward.forward
        let H = config.hiddenSize, T = ref.batch.tokens, k = config.routing.topK
        let range = slice ?? 0...(config.numLayers - 1)
        guard range.lowerBound >= 0, range.upperBound < config.numLayers else {
            throw ParityError.layersOutside(first: range.lowerBound, last: range.upperBound, layers: config.numLayers)
        }
        var notes: [String] = []
        let dumped = ref.layerCount(limit: config.numLayers)
        if dumped > config.numLayers || (dumped > 0 && dumped < config.numLayers && ref.has("logits")) {
            notes.append("the reference has layers 0..\(dumped - 1) but the model has \(config.numLayers): is it a dump of this model?")
        }
        func compare(_ part: String, _ ours: [Float], _ theirs: [Float]) -> PartReport {
            let c = Comparison(ours: ours, reference: theirs, tokens: T, width: ours.count / max(ref.batch.rows, 1))
            return PartReport(part: part, comparison: c, pass: c.passes(tolerance))
        }

        var seconds = 0.0
        var clock = Date()
        var h: [Float]
        if range.lowerBound == 0 {
            h = try forward.embed(ref.inputIDs)
        } else {
            guard let start = try ref.activation("layers/\(range.lowerBound)/layer_in", width: H) else {
                throw ParityError.missingLayerInput(dump: ref.label, layer: range.lowerBound)
            }
            h = start
        }
        seconds += Date().timeIntervalSince(clock)

        var reports: [LayerReport] = []
        for l in range {
            let refIn = try ref.activation("layers/\(l)/layer_in", width: H)
            var chained: [PartReport] = []
            // A slice's first layer is fed the dump's own layer_in: its chained run already is the isolated one.
            let fedFromDump = l == range.lowerBound && range.lowerBound > 0
            if let refIn, !fedFromDump { chained.append(compare("layer_in", h, refIn)) }
            clock = Date()
            let ours = try forward.layer(l, input: h, batch: ref.batch)
            seconds += Date().timeIntervalSince(clock)
            var theirs: [String: [Float]] = [:]
            for part in parts { theirs[part] = try ref.activation("layers/\(l)/\(part)", width: H) }
            let outputs = ["attn_out": ours.attentionOut, "mlp_out": ours.mlpOut, "layer_out": ours.output]
            for part in parts { if let t = theirs[part] { chained.append(compare(part, outputs[part]!, t)) } }

            var isolatedParts: [PartReport] = []
            var routed = ours
            var routedRun = "chained"
            if isolated, let refIn, !fedFromDump {
                let alone = try forward.layer(l, input: refIn, batch: ref.batch)
                let aloneOutputs = ["attn_out": alone.attentionOut, "mlp_out": alone.mlpOut, "layer_out": alone.output]
                for part in parts { if let t = theirs[part] { isolatedParts.append(compare(part, aloneOutputs[part]!, t)) } }
                routed = alone
                routedRun = "isolated"
            } else if fedFromDump {
                routedRun = "isolated"
            }
            var routing: RoutingReport?
            if let ourTopK = routed.topK, let margins = routed.margins,
                let refTopK = try ref.topK(layer: l, k: k, experts: config.routing.experts) {
                routing = compareRouting(ourTopK, refTopK, margins: margins, k: k, tokens: T, run: routedRun, tolerance: tolerance)
            }
            let pass = (chained + isolatedParts).allSatisfy(\.pass) && (routing?.pass ?? true)
            reports.append(LayerReport(
                layer: l, kind: config.isMoELayer(l) ? "moe" : "dense", chained: chained, isolated: isolatedParts,
                routing: routing, pass: pass))
            h = ours.output
            progress?(l - range.lowerBound + 1, range.count)
        }

        var finalNorm: PartReport?, logits: PartReport?, top1: Double?
        if range.upperBound == config.numLayers - 1 {
            clock = Date()
            let normed = try forward.finalNorm(h)
            let ourLogits = try forward.logits(normed)
            seconds += Date().timeIntervalSince(clock)
            if let t = try ref.activation("final_norm_out", width: H) { finalNorm = compare("final_norm_out", normed, t) }
            if let t = try ref.activation("logits", width: config.vocabSize) {
                logits = compare("logits", ourLogits, t)
                top1 = LogitStatistics.top1Agreement(ourLogits, t, vocab: config.vocabSize)
            }
        }
        let firstFailing = reports.first { !$0.pass }?.layer
        let pass = firstFailing == nil && (finalNorm?.pass ?? true) && (logits?.pass ?? true)
        let rows = Double(ref.batch.rows)
        return ParityReport(
            model: model, reference: ref.label, dequant: forward.dequant.rawValue, referenceDequant: ref.dequant,
            referenceDType: ref.dtype, sequences: ref.batch.sequences, tokens: T, tolerance: tolerance, layers: reports,
            finalNorm: finalNorm, logits: logits, top1Agreement: top1, firstFailingLayer: firstFailing, pass: pass,
            forwardSeconds: seconds, tokensPerSecond: seconds > 0 ? rows / seconds : 0, notes: notes)
    }

    static func compareRouting(
        _ ours: [Int32], _ theirs: [Int32], margins: [Float], k: Int, tokens: Int, run: String, tolerance: Tolerance
    ) -> RoutingReport {
        let rows = margins.count
        var same = 0, ties = 0, mismatches = 0
        var examples: [RoutingReport.Mismatch] = []
        var smallest = Double.infinity
        for r in 0..<rows {
            smallest = min(smallest, Double(margins[r]))
            let a = Array(ours[(r * k)..<((r + 1) * k)]), b = Array(theirs[(r * k)..<((r + 1) * k)])
            if Set(a) == Set(b) { same += 1; continue }
            if Double(margins[r]) <= tolerance.routingMargin { ties += 1 } else { mismatches += 1 }
            if examples.count < 8 {
                examples.append(.init(sequence: r / tokens, token: r % tokens, ours: a.sorted(), reference: b.sorted(), margin: Double(margins[r])))
            }
        }
        return RoutingReport(
            run: run, tokens: rows, sameSet: same, nearTies: ties, mismatches: mismatches, examples: examples,
            smallestMargin: smallest, pass: mismatches == 0)
    }
}
