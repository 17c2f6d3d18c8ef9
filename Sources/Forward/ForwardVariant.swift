import ModelConfig

/// Deliberate departures from the reference, for proving that `parity` catches each class of bug (the parity
/// tests inject them). Not part of the reference path: reached only through the internal
/// `ForwardPass.init(weights:threads:variant:)`, which the tests call through `@testable import`.
struct ForwardVariant: Sendable, Equatable {
    /// Layers the variant applies to (nil: every layer).
    var layers: Set<Int>?
    /// Read INT4 nibbles high-first (the classic packing bug).
    var nibblesHighFirst = false
    /// Latent-norm epsilon instead of transformers' 1e-6 (vLLM and SGLang pass rms_norm_eps).
    var latentNormEps: Float?
    /// Override of the YaRN beta_fast (K2.5 uses 32, K2-Thinking 1).
    var betaFast: Double?
    /// Use the router's correction bias in the expert weights too, not for selection only.
    var routerBiasInWeights = false
    /// Ignore the router's correction bias altogether.
    var routerBiasIgnored = false

    init(layers: Set<Int>? = nil, nibblesHighFirst: Bool = false, latentNormEps: Float? = nil, betaFast: Double? = nil,
         routerBiasInWeights: Bool = false, routerBiasIgnored: Bool = false) {
        self.layers = layers
        self.nibblesHighFirst = nibblesHighFirst
        self.latentNormEps = latentNormEps
        self.betaFast = betaFast
        self.routerBiasInWeights = routerBiasInWeights
        self.routerBiasIgnored = routerBiasIgnored
    }

    static let none = ForwardVariant()
    func applies(to layer: Int) -> Bool { layers?.contains(layer) ?? true }
}

/// Another source's weights as the variant would read them: INT4 nibbles high-first in its layers, and its
/// YaRN beta_fast in the config.
final class VariantWeights: WeightSource {
    let base: any WeightSource
    let variant: ForwardVariant
    let forward: ForwardConfig

    init(_ base: any WeightSource, variant: ForwardVariant) {
        self.base = base
        self.variant = variant
        var forward = base.forward
        if let beta = variant.betaFast { forward.rope.betaFast = beta }
        self.forward = forward
    }

    var dequant: Dequantization { base.dequant }
    var partition: WeightPartition? { base.partition }

    func matrix(_ slot: WeightSlot, layer: Int?, expert: Int?) throws(ForwardError) -> WeightMatrix {
        var m = try base.matrix(slot, layer: layer, expert: expert)
        if variant.nibblesHighFirst, layer.map(variant.applies) ?? true,
            case let .packed(codes, scales, group, bits, dequant, _) = m.storage {
            m.storage = .packed(codes: codes, scales: scales, groupSize: group, bits: bits, dequant: dequant, highFirst: true)
        }
        return m
    }

    func vector(_ slot: WeightSlot, layer: Int?) throws(ForwardError) -> [Float] { try base.vector(slot, layer: layer) }
    func has(_ slot: WeightSlot, layer: Int?) -> Bool { base.has(slot, layer: layer) }
    func firstRow(_ slot: WeightSlot, layer: Int?) throws(ForwardError) -> Int { try base.firstRow(slot, layer: layer) }
    func releaseViewed() { base.releaseViewed() }
}

extension ForwardVariant {
    /// Routing with the variant's router-bias bug: the bias ignored altogether, or used in the expert weights
    /// as well as for selection.
    func route(logits: ArraySlice<Float>, bias: [Float]?, routing: ForwardConfig.Routing) -> Route {
        let scores = Router.sigmoid(logits)
        let selection = routerBiasIgnored ? scores : bias.map { b in scores.indices.map { scores[$0] + b[$0] } } ?? scores
        return Router.route(scores: routerBiasInWeights ? selection : scores, selection: selection, routing: routing)
    }

    /// The latent norms' epsilon in `layer`.
    func latentNormEps(layer: Int, reference: Float) -> Float {
        applies(to: layer) ? (latentNormEps ?? reference) : reference
    }
}
