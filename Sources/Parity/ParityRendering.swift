import Foundation
import TensorCore

extension ParityReport {
    /// The human-readable report: one line per layer and part, then the verdict.
    public func renderText() -> String {
        func e(_ x: Double) -> String { x.isFinite ? String(format: "%.2e", x) : "\(x)" }
        var lines: [String] = []
        lines.append("parity \(displayed(model)) vs \(displayed(reference))")
        let declared = referenceDequant.map { " (reference: \(displayed($0)))" } ?? ""
        lines.append("  dequant \(dequant)\(declared), \(sequences)×\(tokens) tokens, tolerance max-abs ≤ \(e(tolerance.atol)) and ≤ \(e(tolerance.rtol)) × reference max")
        for note in notes { lines.append("  note: \(displayed(note, limit: nil))") }
        lines.append("")
        lines.append("layer  kind   part            max-abs   mean-abs  rel-diff  cosine       isolated max-abs")
        for layer in layers {
            let isolated = Dictionary(layer.isolated.map { ($0.part, $0) }, uniquingKeysWith: { a, _ in a })
            for p in layer.chained {
                let c = p.comparison
                let alone = isolated[p.part].map { "\(e($0.comparison.maxAbs))\($0.pass ? "" : "  FAIL")" } ?? "-"
                lines.append(
                    "\(String(layer.layer).padding(toLength: 6, withPad: " ", startingAt: 0)) \(layer.kind.padding(toLength: 6, withPad: " ", startingAt: 0)) "
                        + "\(p.part.padding(toLength: 15, withPad: " ", startingAt: 0)) \(e(c.maxAbs))  \(e(c.meanAbs))  \(e(c.relativeDifference))  "
                        + String(format: "%.9f", c.cosine) + "  \(alone)\(p.pass ? "" : "  FAIL (chained)")")
            }
            if let r = layer.routing {
                var line = "       experts: \(r.sameSet)/\(r.tokens) tokens with the reference's expert set (\(r.run)), smallest margin \(e(r.smallestMargin))"
                if r.nearTies > 0 { line += ", \(r.nearTies) near tie(s)" }
                if r.mismatches > 0 { line += ", \(r.mismatches) MISMATCH(ES)" }
                lines.append(line)
                for m in r.examples.prefix(3) {
                    lines.append("         sequence \(m.sequence) token \(m.token): ours \(m.ours), reference \(m.reference), margin \(e(m.margin))")
                }
            }
        }
        for p in [finalNorm, logits].compactMap({ $0 }) {
            let c = p.comparison
            lines.append("\(p.part): max-abs \(e(c.maxAbs)) at \(c.worstAt), mean-abs \(e(c.meanAbs)), cosine \(String(format: "%.9f", c.cosine))\(p.pass ? "" : "  FAIL")")
        }
        if let top1Agreement { lines.append(String(format: "top-1 agreement: %.2f%%", top1Agreement * 100)) }
        lines.append(String(format: "forward pass: %.3f s, %.1f tokens/s", forwardSeconds, tokensPerSecond))
        if pass {
            lines.append("PASS: \(layers.count) layer(s)\(logits == nil ? "" : " and logits") within tolerance")
        } else if let first = firstFailingLayer, let layer = layers.first(where: { $0.layer == first }) {
            let failing = (layer.isolated.filter { !$0.pass }.map { "isolated \($0.part)" } + layer.chained.filter { !$0.pass }.map { "chained \($0.part)" })
            let routing = layer.routing.map { $0.pass ? [] : ["\($0.mismatches) expert-set mismatch(es)"] } ?? []
            lines.append("FAIL: first failing layer \(first) (\((failing + routing).joined(separator: ", ")))")
        } else {
            lines.append("FAIL: \([finalNorm, logits].compactMap { $0 }.filter { !$0.pass }.map(\.part).joined(separator: ", ")) out of tolerance")
        }
        return lines.joined(separator: "\n")
    }

    /// An SVG chart of the largest difference per layer (log scale), chained and isolated, with the tolerance.
    public func renderSVG() -> String {
        let width = 720.0, height = 360.0, left = 70.0, right = 20.0, top = 30.0, bottom = 50.0
        let chained = layers.map { l in (l.layer, l.chained.filter { $0.part != "layer_in" }.map(\.comparison.maxAbs).max() ?? 0) }
        let isolated = layers.map { l in (l.layer, l.isolated.map(\.comparison.maxAbs).max() ?? 0) }
        let values = (chained + isolated).map(\.1).filter { $0 > 0 && $0.isFinite } + [tolerance.atol]
        let lo = floor(log10(values.min() ?? 1e-8)) - 0.5, hi = ceil(log10(values.max() ?? 1)) + 0.5
        let first = Double(layers.first?.layer ?? 0), last = Double(max(layers.last?.layer ?? 1, (layers.first?.layer ?? 0) + 1))
        func x(_ l: Int) -> Double { left + (Double(l) - first) / (last - first) * (width - left - right) }
        func y(_ v: Double) -> Double {
            let lv = v > 0 && v.isFinite ? log10(v) : lo
            return top + (hi - min(max(lv, lo), hi)) / (hi - lo) * (height - top - bottom)
        }
        func polyline(_ points: [(Int, Double)], _ color: String) -> String {
            let p = points.map { String(format: "%.1f,%.1f", x($0.0), y($0.1)) }.joined(separator: " ")
            let dots = points.map { String(format: "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%@\"/>", x($0.0), y($0.1), color) }.joined()
            return "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\" points=\"\(p)\"/>\(dots)"
        }
        var svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" font-family=\"sans-serif\" font-size=\"12\">\n"
        svg += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        svg += "<text x=\"\(Int(left))\" y=\"18\">largest |ours − reference| per layer (\(pass ? "pass" : "FAIL"))</text>\n"
        var decade = Int(lo.rounded(.up))
        while Double(decade) <= hi {
            let yy = y(pow(10, Double(decade)))
            svg += String(format: "<line x1=\"%.0f\" x2=\"%.0f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/><text x=\"8\" y=\"%.1f\">1e%d</text>\n", left, width - right, yy, yy, yy + 4, decade)
            decade += 1
        }
        let step = max(1, layers.count / 16)
        for (i, l) in layers.enumerated() where i % step == 0 {
            svg += String(format: "<text x=\"%.1f\" y=\"%.0f\" text-anchor=\"middle\">%d</text>\n", x(l.layer), height - bottom + 18, l.layer)
        }
        svg += "<text x=\"\(Int(width / 2))\" y=\"\(Int(height - 8))\" text-anchor=\"middle\">layer</text>\n"
        let ty = y(tolerance.atol)
        svg += String(format: "<line x1=\"%.0f\" x2=\"%.0f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#c00\" stroke-dasharray=\"6 4\"/>", left, width - right, ty, ty)
        svg += String(format: "<text x=\"%.0f\" y=\"%.1f\" fill=\"#c00\" text-anchor=\"end\">atol</text>\n", width - right, ty - 4)
        svg += polyline(chained, "#1f77b4") + "\n"
        if isolated.contains(where: { $0.1 > 0 }) { svg += polyline(isolated, "#ff7f0e") + "\n" }
        svg += "<text x=\"\(Int(left + 10))\" y=\"\(Int(top + 14))\" fill=\"#1f77b4\">chained</text>"
        svg += "<text x=\"\(Int(left + 80))\" y=\"\(Int(top + 14))\" fill=\"#ff7f0e\">isolated (fed the reference's layer_in)</text>\n"
        svg += "</svg>\n"
        return svg
    }
}

extension LogitStatistics {
    /// The llama-perplexity-style KL-divergence report.
    public func renderText() -> String {
        func row(_ name: String, _ v: Double) -> String { "\(name.padding(toLength: 16, withPad: " ", startingAt: 0)) \(String(format: "%.6e", v))" }
        var lines: [String] = []
        lines.append("positions: \(positions) (\(nextTokenPositions) with a next token)")
        lines.append(String(format: "Mean KLD:        %.6e ± %.6e", kld.mean, kld.stderr))
        lines.append(row("Maximum KLD:", kld.max))
        for p in LogitStatistics.percentileLevels { lines.append(row("\(Self.percentileName(p)) KLD:", kld.percentiles[Self.label(p)] ?? .nan)) }
        lines.append(row("Minimum KLD:", kld.min))
        lines.append("")
        lines.append(String(format: "Mean Δp:         %.6f%% ± %.6f%%", deltaP.mean * 100, deltaP.stderr * 100))
        lines.append(String(format: "Maximum Δp:      %.6f%%", deltaP.max * 100))
        for p in LogitStatistics.percentileLevels {
            lines.append(String(format: "%@ %.6f%%", "\(Self.percentileName(p)) Δp:".padding(toLength: 16, withPad: " ", startingAt: 0), (deltaP.percentiles[Self.label(p)] ?? .nan) * 100))
        }
        lines.append(String(format: "Minimum Δp:      %.6f%%", deltaP.min * 100))
        lines.append(String(format: "RMS Δp:          %.6f%%", (deltaP.rms ?? .nan) * 100))
        lines.append("")
        lines.append(String(format: "Same top-1:      %.4f%%", sameTop1 * 100))
        lines.append(String(format: "Top-5 overlap:   %.4f%%", top5Overlap * 100))
        lines.append(String(format: "PPL(ref):        %.6f", perplexityReference))
        lines.append(String(format: "PPL(test):       %.6f  (ratio %.6f)", perplexityTest, perplexityTest / perplexityReference))
        if let k = referenceTopK, let tail = referenceTailMass {
            lines.append(String(format: "Compact reference: top %d, mean tail mass %.3e (the KLD is a lower bound, low by about this fraction)", k, tail))
        }
        return lines.joined(separator: "\n")
    }

    static func percentileName(_ p: Double) -> String {
        p == 50 ? "Median" : (p == p.rounded() ? "\(Int(p))%" : "\(p)%")
    }
}
