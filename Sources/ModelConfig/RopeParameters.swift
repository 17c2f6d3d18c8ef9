import Foundation
import JSONCore

/// Rotary embedding parameters (`rope_scaling` in raw files, `rope_parameters` in transformers 5), checked when
/// config.json is read: a value the forward pass cannot use is refused by name, never replaced by a default.
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

    /// `topTheta` is the section's checked `rope_theta` (default included).
    init(_ v: JSONObject, topTheta: Double, dim: Int, section: String, file: String) throws(ConfigError) {
        self.dim = dim
        let blockKey = ["rope_parameters", "rope_scaling"].first { v[$0].map { !$0.isNull } ?? false }
        let block = blockKey.flatMap { v[$0]?.objectValue }
        let checker = ConfigRuleChecker(file: file, section: section)
        func rule(_ key: String, _ type: ConfigKeyRule.Kind, above: Double? = nil, min: Double? = nil, max: Double? = nil) -> ConfigKeyRule {
            ConfigKeyRule(key: "\(blockKey ?? "rope_scaling").\(key)", type: type, min: min, above: above, max: max)
        }
        // Bounds far outside any real model, which keep every frequency, amplitude and softmax scale finite in
        // float32 (a mscale_all_dim of 1e30 would make the softmax scale infinite).
        func num(_ key: String, above: Double? = nil, min: Double? = nil, max: Double) throws(ConfigError) -> Double? {
            try checker.check(block?[key], rule(key, .number, above: above, min: min, max: max))?.doubleValue
        }
        func string(_ key: String) throws(ConfigError) -> String? {
            try checker.check(block?[key], rule(key, .string))?.stringValue
        }
        let blockTheta = try num("rope_theta", above: 1, max: 1e12)
        theta = blockTheta ?? topTheta
        let ropeType = try string("rope_type"), oldType = try string("type")
        let type = ropeType ?? oldType ?? "default"
        switch type {
        case "default": kind = .plain
        case "yarn": kind = .yarn
        default:
            throw .invalidValue(
                file: file, section: section, key: "\(blockKey ?? "rope_scaling").rope_type",
                reason: "found \(ConfigRuleChecker.quoted(type)), expected \"default\" or \"yarn\" (the rope types the reference forward pass implements)")
        }
        guard kind == .yarn else { return }
        factor = try num("factor", above: 0, max: 1e6) ?? 1
        guard let original = try num("original_max_position_embeddings", above: 0, max: 1e12) else {
            throw .missingKey(file: file, section: "\(section).\(blockKey ?? "rope_scaling")", key: "original_max_position_embeddings")
        }
        originalMaxPositions = original
        // transformers: `get("beta_fast") or 32` (a zero means the default too).
        let fast = try num("beta_fast", min: 0, max: 1e6), slow = try num("beta_slow", min: 0, max: 1e6)
        betaFast = fast.flatMap { $0 == 0 ? nil : $0 } ?? 32
        betaSlow = slow.flatMap { $0 == 0 ? nil : $0 } ?? 1
        mscale = try num("mscale", min: 0, max: 1000)
        mscaleAllDim = try num("mscale_all_dim", min: 0, max: 1000)
        attentionFactor = try num("attention_factor", above: 0, max: 1000)
        truncate = try checker.check(block?["truncate"], rule("truncate", .boolean))?.boolValue ?? true
    }

    public static func yarnMscale(_ scale: Double, _ m: Double) -> Double { scale <= 1 ? 1 : 0.1 * m * Foundation.log(scale) + 1 }

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
        let posFreq = (0..<half).map { Foundation.powf(base, Float(2 * $0) / Float(dim)) }
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
