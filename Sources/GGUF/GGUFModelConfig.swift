/// The `deepseek2` architecture's metadata (how llama.cpp stores DeepSeek-V3, Kimi K2, K2-Thinking and K2.5) as
/// a typed config, with what is missing or would be read differently by llama.cpp said in `notes`.
///
/// Keys are `deepseek2.<name>`; required ones throw `configKeyMissing` when absent and `wrongKeyType` when not an
/// integer (or a float where a float is meant).
public struct GGUFDeepseek2Config: Sendable, Equatable {
    public var blockCount: Int
    public var contextLength: Int
    public var embeddingLength: Int
    /// Dense FFN width.
    public var feedForwardLength: Int
    public var headCount: Int
    /// 1 for MLA stored as MQA.
    public var headCountKV: Int
    public var ropeFreqBase: Double
    public var rmsNormEpsilon: Double
    public var expertCount: Int
    public var expertUsedCount: Int
    public var expertGroupCount: Int?
    public var expertGroupUsedCount: Int?
    /// 1 softmax, 2 sigmoid (llama.cpp defaults to softmax when absent).
    public var expertGatingFunc: Int?
    public var leadingDenseBlockCount: Int
    public var vocabSize: Int?
    public var qLoraRank: Int?
    public var kvLoraRank: Int
    /// kv_lora + rope (576 for K2.5).
    public var keyLength: Int
    /// kv_lora (512 for K2.5).
    public var valueLength: Int
    /// nope + rope per head (192); absent in files of the legacy layout.
    public var keyLengthMLA: Int?
    /// v_head_dim (128); absent in files of the legacy layout.
    public var valueLengthMLA: Int?
    public var expertFeedForwardLength: Int
    public var expertSharedCount: Int
    /// routed_scaling_factor.
    public var expertWeightsScale: Double?
    /// norm_topk_prob (written only when true).
    public var expertWeightsNorm: Bool
    public var ropeDimensionCount: Int
    public var ropeScalingType: String?
    public var ropeScalingFactor: Double?
    public var ropeOriginalContextLength: Int?
    public var yarnBetaFast: Double?
    public var yarnBetaSlow: Double?
    /// 0.1 × mscale_all_dim.
    public var yarnLogMultiplier: Double?
    /// What is missing, inconsistent, or read differently by llama.cpp.
    public var notes: [String]

    /// qk_nope_head_dim: `key_length_mla − rope` (nil without the MLA lengths).
    public var qkNopeHeadDim: Int? { keyLengthMLA.map { $0 - ropeDimensionCount } }
    /// mscale_all_dim recovered from `yarn_log_multiplier` (the loader divides by 0.1).
    public var mscaleAllDim: Double? { yarnLogMultiplier.map { $0 / 0.1 } }

    public init(_ model: GGUFModel) throws(GGUFError) {
        let file = model.first.path
        guard let architecture = model.first.architecture else {
            throw .configKeyMissing(file: file, key: "general.architecture")
        }
        guard architecture == "deepseek2" else {
            throw .wrongKeyType(file: file, key: "general.architecture", found: "\"\(architecture)\"", expected: "\"deepseek2\"")
        }
        func value(_ name: String) -> GGUFValue? { model["deepseek2.\(name)"] }
        func int(_ name: String) throws(GGUFError) -> Int? {
            guard let v = value(name) else { return nil }
            guard let i = v.intValue, i >= 0 else {
                throw .wrongKeyType(file: file, key: "deepseek2.\(name)", found: "\(v.typeName) \(v.summary)", expected: "a non-negative integer")
            }
            return i
        }
        func required(_ name: String) throws(GGUFError) -> Int {
            guard let i = try int(name) else { throw .configKeyMissing(file: file, key: "deepseek2.\(name)") }
            return i
        }
        func float(_ name: String) throws(GGUFError) -> Double? {
            guard let v = value(name) else { return nil }
            guard let d = v.doubleValue, d.isFinite else {
                throw .wrongKeyType(file: file, key: "deepseek2.\(name)", found: "\(v.typeName) \(v.summary)", expected: "a finite number")
            }
            return d
        }
        blockCount = try required("block_count")
        contextLength = try required("context_length")
        embeddingLength = try required("embedding_length")
        feedForwardLength = try required("feed_forward_length")
        headCount = try required("attention.head_count")
        headCountKV = try int("attention.head_count_kv") ?? headCount
        guard let base = try float("rope.freq_base") else { throw .configKeyMissing(file: file, key: "deepseek2.rope.freq_base") }
        ropeFreqBase = base
        guard let eps = try float("attention.layer_norm_rms_epsilon") else {
            throw .configKeyMissing(file: file, key: "deepseek2.attention.layer_norm_rms_epsilon")
        }
        rmsNormEpsilon = eps
        expertCount = try required("expert_count")
        expertUsedCount = try required("expert_used_count")
        expertGroupCount = try int("expert_group_count")
        expertGroupUsedCount = try int("expert_group_used_count")
        expertGatingFunc = try int("expert_gating_func")
        leadingDenseBlockCount = try required("leading_dense_block_count")
        vocabSize = try int("vocab_size")
        qLoraRank = try int("attention.q_lora_rank")
        kvLoraRank = try required("attention.kv_lora_rank")
        keyLength = try required("attention.key_length")
        valueLength = try required("attention.value_length")
        keyLengthMLA = try int("attention.key_length_mla")
        valueLengthMLA = try int("attention.value_length_mla")
        expertFeedForwardLength = try required("expert_feed_forward_length")
        expertSharedCount = try int("expert_shared_count") ?? 0
        expertWeightsScale = try float("expert_weights_scale")
        if let v = value("expert_weights_norm") {
            guard let b = v.boolValue else {
                throw .wrongKeyType(file: file, key: "deepseek2.expert_weights_norm", found: v.typeName, expected: "bool")
            }
            expertWeightsNorm = b
        } else {
            expertWeightsNorm = false
        }
        ropeDimensionCount = try required("rope.dimension_count")
        if let v = value("rope.scaling.type") {
            guard let s = v.stringValue else {
                throw .wrongKeyType(file: file, key: "deepseek2.rope.scaling.type", found: v.typeName, expected: "string")
            }
            ropeScalingType = s
        } else {
            ropeScalingType = nil
        }
        ropeScalingFactor = try float("rope.scaling.factor")
        ropeOriginalContextLength = try int("rope.scaling.original_context_length")
        yarnBetaFast = try float("rope.scaling.yarn_beta_fast")
        yarnBetaSlow = try float("rope.scaling.yarn_beta_slow")
        yarnLogMultiplier = try float("rope.scaling.yarn_log_multiplier")

        var notes: [String] = []
        if keyLengthMLA == nil || valueLengthMLA == nil {
            notes.append("deepseek2.attention.key_length_mla / value_length_mla absent: llama.cpp reads this file with its legacy (pre-MLA-split) layout")
        }
        if headCountKV != 1 {
            notes.append("attention.head_count_kv is \(headCountKV): MLA files store 1 (MQA over the latent)")
        }
        if keyLength != kvLoraRank + ropeDimensionCount {
            notes.append("attention.key_length \(keyLength) is not kv_lora_rank + rope (\(kvLoraRank + ropeDimensionCount))")
        }
        if valueLength != kvLoraRank {
            notes.append("attention.value_length \(valueLength) is not kv_lora_rank (\(kvLoraRank))")
        }
        if let k = keyLengthMLA, k <= ropeDimensionCount {
            notes.append("attention.key_length_mla \(k) leaves no room for the rope part (\(ropeDimensionCount))")
        }
        if ropeScalingType == "yarn", yarnBetaFast != nil || yarnBetaSlow != nil {
            let fast = yarnBetaFast.map { "\($0)" } ?? "absent"
            let slow = yarnBetaSlow.map { "\($0)" } ?? "absent"
            notes.append("YaRN beta_fast \(fast) / beta_slow \(slow) are in the file, but llama.cpp's deepseek2 loader ignores them (uses 32 / 1) unless passed with --yarn-beta-fast / --yarn-beta-slow")
        }
        if expertGatingFunc == nil {
            notes.append("expert_gating_func absent: llama.cpp assumes softmax (DeepSeek-V3 and Kimi use sigmoid, 2)")
        }
        if expertGroupCount == nil || expertGroupUsedCount == nil {
            notes.append("expert_group_count / expert_group_used_count absent: no group-limited routing")
        }
        self.notes = notes
    }
}
