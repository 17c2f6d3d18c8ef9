import Foundation
import JSONCore
import ModelConfig
import TensorCore

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

    public init(_ text: TextConfig, section: String = "config") throws(ForwardError) {
        let v = text.values
        func number(_ key: String, _ fallback: Double) throws(ForwardError) -> Double {
            guard let value = v[key], !value.isNull else { return fallback }
            guard let d = value.doubleValue else { throw .config(key: "\(section).\(key)", reason: "expected a number, found \(value.kindName)") }
            return d
        }
        func bool(_ key: String, _ fallback: Bool) throws(ForwardError) -> Bool {
            guard let value = v[key], !value.isNull else { return fallback }
            guard let b = value.boolValue else { throw .config(key: "\(section).\(key)", reason: "expected a boolean, found \(value.kindName)") }
            return b
        }
        func int(_ key: String, _ fallback: Int) throws(ForwardError) -> Int {
            guard let value = v[key], !value.isNull else { return fallback }
            guard let i = value.intValue, i > 0 else { throw .config(key: "\(section).\(key)", reason: "expected a positive integer") }
            return i
        }
        if let act = v["hidden_act"]?.stringValue, act != "silu" {
            throw .unsupported("\(section).hidden_act \"\(displayed(act))\" (the reference pass implements silu)")
        }
        if let scoring = v["scoring_func"]?.stringValue, scoring != "sigmoid" {
            throw .unsupported("\(section).scoring_func \"\(displayed(scoring))\" (the reference pass implements sigmoid routing)")
        }
        self.text = text
        rmsNormEps = Float(try number("rms_norm_eps", 1e-6))
        ropeInterleave = try bool("rope_interleave", true)
        rope = try RopeParameters(v, section: section, dim: text.qkRopeHeadDim)
        routing = Routing(
            experts: text.numRoutedExperts, topK: text.numExpertsPerToken, groups: try int("n_group", 8),
            topKGroups: try int("topk_group", 4), normalize: try bool("norm_topk_prob", true),
            scalingFactor: Float(try number("routed_scaling_factor", 2.5)))
        guard text.qkRopeHeadDim % 2 == 0 else { throw .config(key: "\(section).qk_rope_head_dim", reason: "must be even, found \(text.qkRopeHeadDim)") }
        if text.numRoutedExperts > 0 {
            guard routing.experts % routing.groups == 0, routing.topKGroups <= routing.groups else {
                throw .config(key: "\(section).n_group", reason: "\(routing.groups) groups (top \(routing.topKGroups)) do not divide \(routing.experts) experts")
            }
            guard routing.experts / routing.groups >= 2 || routing.groups == 1 else {
                throw .config(key: "\(section).n_group", reason: "each group needs at least 2 experts (its score is the sum of its top 2)")
            }
            guard routing.topK <= routing.topKGroups * (routing.experts / routing.groups) else {
                throw .config(key: "\(section).num_experts_per_tok", reason: "\(routing.topK) exceeds the experts in the \(routing.topKGroups) kept groups")
            }
        }
    }
}

/// Rotary embedding parameters (`rope_scaling` in raw files, `rope_parameters` in transformers 5).
public struct RopeParameters: Sendable {
    public enum Kind: String, Sendable { case plain = "default", yarn }
    public var kind: Kind
    public var theta: Double
    public var dim: Int
    public var factor: Double = 1
    public var originalMaxPositions: Double = 4096
    public var betaFast: Double = 32
    public var betaSlow: Double = 1
    public var mscale: Double?
    public var mscaleAllDim: Double?
    public var attentionFactor: Double?
    public var truncate = true

    init(_ v: JSONObject, section: String, dim: Int) throws(ForwardError) {
        self.dim = dim
        let block = (v["rope_parameters"]?.objectValue ?? v["rope_scaling"]?.objectValue)
        func num(_ object: JSONObject?, _ key: String) throws(ForwardError) -> Double? {
            guard let value = object?[key], !value.isNull else { return nil }
            guard let d = value.doubleValue else { throw .config(key: "\(section).rope \(key)", reason: "expected a number, found \(value.kindName)") }
            return d
        }
        let blockTheta = try num(block, "rope_theta"), topTheta = try num(v, "rope_theta")
        theta = blockTheta ?? topTheta ?? 10000
        let type = block?["rope_type"]?.stringValue ?? block?["type"]?.stringValue ?? "default"
        switch type {
        case "default": kind = .plain
        case "yarn": kind = .yarn
        default: throw .unsupported("\(section) rope type \"\(displayed(type))\" (the reference pass implements default and yarn)")
        }
        guard kind == .yarn else { return }
        factor = try num(block, "factor") ?? 1
        guard let original = try num(block, "original_max_position_embeddings") else {
            throw .config(key: "\(section).rope_scaling.original_max_position_embeddings", reason: "YaRN needs it")
        }
        originalMaxPositions = original
        // transformers: `get("beta_fast") or 32` (a zero means the default too).
        let fast = try num(block, "beta_fast"), slow = try num(block, "beta_slow")
        betaFast = fast.flatMap { $0 == 0 ? nil : $0 } ?? 32
        betaSlow = slow.flatMap { $0 == 0 ? nil : $0 } ?? 1
        mscale = try num(block, "mscale")
        mscaleAllDim = try num(block, "mscale_all_dim")
        attentionFactor = try num(block, "attention_factor")
        truncate = block?["truncate"]?.boolValue ?? true
        guard factor > 0, original > 0, theta > 1 else {
            throw .config(key: "\(section).rope_scaling", reason: "factor, original_max_position_embeddings and rope_theta must be positive")
        }
    }

    static func yarnMscale(_ scale: Double, _ m: Double) -> Double { scale <= 1 ? 1 : 0.1 * m * Foundation.log(scale) + 1 }

    /// The cos/sin amplitude (transformers' `attention_factor`).
    public var amplitude: Float {
        guard kind == .yarn else { return 1 }
        if let attentionFactor { return Float(attentionFactor) }
        if let m = mscale, let a = mscaleAllDim, m != 0, a != 0 { return Float(Self.yarnMscale(factor, m) / Self.yarnMscale(factor, a)) }
        return Float(Self.yarnMscale(factor, 1))
    }

    /// One inverse frequency per rotated pair, computed in float32 as transformers does.
    public var inverseFrequencies: [Float] {
        let half = dim / 2
        let base = Float(theta)
        let posFreq = (0..<half).map { Float.pow(base, Float(2 * $0) / Float(dim)) }
        let extrapolation = posFreq.map { 1 / $0 }
        guard kind == .yarn else { return extrapolation }
        let interpolation = posFreq.map { 1 / (Float(factor) * $0) }
        func correction(_ rotations: Double) -> Double {
            Double(dim) * Foundation.log(originalMaxPositions / (rotations * 2 * Double.pi)) / (2 * Foundation.log(theta))
        }
        var low = correction(betaFast), high = correction(betaSlow)
        if truncate { low = low.rounded(.down); high = high.rounded(.up) }
        low = max(low, 0)
        high = min(high, Double(dim - 1))
        if low == high { high += 0.001 }
        return (0..<half).map { i in
            let ramp = min(max((Float(i) - Float(low)) / (Float(high) - Float(low)), 0), 1)
            let extrapolationFactor = 1 - ramp
            return interpolation[i] * (1 - extrapolationFactor) + extrapolation[i] * extrapolationFactor
        }
    }
}

extension Float {
    static func pow(_ x: Float, _ y: Float) -> Float { Foundation.powf(x, y) }
}
