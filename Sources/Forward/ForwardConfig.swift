import Foundation
import JSONCore
import ModelConfig

/// Everything the forward pass reads from the text config, with transformers' `DeepseekV3Config` defaults
/// where a key is absent (so a config that omits a key means what it means to transformers). The dimensions
/// (`hiddenSize`, `numHeads`, …) are the text config's, reached through it.
@dynamicMemberLookup
public struct ForwardConfig: Sendable {
    public var rmsNormEps: Float
    /// `q_a_layernorm` / `kv_a_layernorm` epsilon: transformers builds them without an eps argument (1e-6).
    public var latentNormEps: Float = 1e-6
    public var rope: RopeParameters
    public var ropeInterleave: Bool
    public var routing: Routing
    public var text: TextConfig

    public struct Routing: Sendable {
        public var experts: Int
        public var topK: Int
        public var groups: Int
        public var topKGroups: Int
        public var normalize: Bool
        public var scalingFactor: Float

        public init(experts: Int, topK: Int, groups: Int, topKGroups: Int, normalize: Bool, scalingFactor: Float) {
            self.experts = experts
            self.topK = topK
            self.groups = groups
            self.topKGroups = topKGroups
            self.normalize = normalize
            self.scalingFactor = scalingFactor
        }
    }

    public subscript<T>(dynamicMember path: KeyPath<TextConfig, T>) -> T { text[keyPath: path] }

    public var qkHeadDim: Int { text.qkNopeHeadDim + text.qkRopeHeadDim }

    /// `qk_head_dim^-0.5`, times `mscale(factor, mscale_all_dim)²` under YaRN (transformers' `yarn_apply_mscale`).
    public var softmaxScale: Float {
        var scale = 1 / Double(qkHeadDim).squareRoot()
        if rope.kind == .yarn, let all = rope.mscaleAllDim, all != 0 {
            let m = RopeParameters.yarnMscale(rope.factor, all)
            scale *= m * m
        }
        return Float(scale)
    }

    public func isMoELayer(_ layer: Int) -> Bool { text.isMoELayer(layer) }

    /// Every value was checked when config.json was read (`ModelConfig.parse`, driven by the manifest's
    /// `config_keys`), so a config the forward pass cannot use never gets this far.
    public init(_ text: TextConfig, section: String = "config") throws(ForwardError) {
        self.text = text
        rmsNormEps = Float(text.rmsNormEps)
        ropeInterleave = text.ropeInterleave
        rope = text.rope
        routing = Routing(
            experts: text.numRoutedExperts, topK: text.numExpertsPerToken, groups: text.expertGroups,
            topKGroups: text.topKGroups, normalize: text.normalizeTopK, scalingFactor: Float(text.routedScalingFactor))
        guard text.numRoutedExperts == 0 || (routing.topK >= 1 && routing.experts % routing.groups == 0) else {
            throw .config(key: "\(section).num_experts_per_tok", reason: "routing settings were not checked")
        }
    }
}

extension Float {
    static func pow(_ x: Float, _ y: Float) -> Float { Foundation.powf(x, y) }
}
