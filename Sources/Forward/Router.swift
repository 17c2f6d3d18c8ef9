import Foundation

/// Where one token goes in a MoE layer.
public struct Route: Sendable, Equatable {
    /// The chosen experts, best first.
    public var experts: [Int]
    /// Their weights in the MoE sum (normalized when the config says so, times the routed scaling factor).
    public var weights: [Float]
    /// The gap between the k-th and (k+1)-th selection score: how close the choice was to flipping (infinity
    /// when there is no (k+1)-th candidate).
    public var margin: Float
}

/// Sigmoid routing as DeepSeek-V3's `Gate.forward` (and transformers' `DeepseekV3TopkRouter`) computes it, as a
/// pure function of one token's router logits.
public enum Router {
    /// Scores are `sigmoid(logits)`; the correction bias (when there is one) is added for *selection only*;
    /// with groups, the best `topk_group` groups by the sum of their two best selection scores stay eligible;
    /// the top `k` eligible experts are chosen; their weights are their unbiased scores, normalized to sum to
    /// one when `norm_topk_prob` is set, times `routed_scaling_factor`.
    public static func route(logits: ArraySlice<Float>, bias: [Float]?, routing: ForwardConfig.Routing) -> Route {
        let scores = sigmoid(logits)
        let selection = bias.map { b in scores.indices.map { scores[$0] + b[$0] } } ?? scores
        return route(scores: scores, selection: selection, routing: routing)
    }

    /// `1 / (1 + e^-x)` per element.
    static func sigmoid(_ logits: ArraySlice<Float>) -> [Float] {
        logits.map { 1 / (1 + Foundation.exp(-$0)) }
    }

    /// Selection by `selection`, weights from `scores` (the two differ by the correction bias).
    static func route(scores: [Float], selection: [Float], routing: ForwardConfig.Routing) -> Route {
        let (picked, margin) = select(selection, routing: routing)
        return Route(experts: picked, weights: weights(picked.map { scores[$0] }, routing: routing), margin: margin)
    }

    /// The group limit, then the top k: the chosen experts best first, and the selection margin.
    static func select(_ selection: [Float], routing: ForwardConfig.Routing) -> (experts: [Int], margin: Float) {
        let E = routing.experts, k = routing.topK
        var choice = selection
        if routing.groups > 1 {
            // Group score = sum of its two best; keep the best topk_group groups.
            let perGroup = E / routing.groups
            let groupScores = (0..<routing.groups).map { g -> Float in
                let best = choice[(g * perGroup)..<((g + 1) * perGroup)].sorted(by: >)
                return best[0] + best[1]
            }
            let kept = Set(topIndices(groupScores, routing.topKGroups))
            for e in 0..<E where !kept.contains(e / perGroup) { choice[e] = -.infinity }
        }
        let top = topIndices(choice, k + (k < E ? 1 : 0))
        let margin = top.count > k && choice[top[k]].isFinite ? choice[top[k - 1]] - choice[top[k]] : .infinity
        return (Array(top.prefix(k)), margin)
    }

    /// The chosen experts' weights: normalized (with transformers' 1e-20 guard) when the config says so, then
    /// scaled.
    static func weights(_ chosen: [Float], routing: ForwardConfig.Routing) -> [Float] {
        var w = chosen
        if routing.normalize {
            let sum = w.reduce(0, +) + 1e-20
            w = w.map { $0 / sum }
        }
        return w.map { $0 * routing.scalingFactor }
    }

    /// Indices of the `k` largest values, largest first (ties: lower index first).
    static func topIndices(_ values: [Float], _ k: Int) -> [Int] {
        Array(values.indices.sorted { values[$0] != values[$1] ? values[$0] > values[$1] : $0 < $1 }.prefix(k))
    }
}
