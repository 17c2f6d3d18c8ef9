import GGUF
import JSONCore
import ModelConfig

/// The metadata llama.cpp's converter (`conversion/base.py` `TextModel.set_gguf_parameters` and
/// `conversion/deepseek.py` `DeepseekV2Model`) writes for a DeepSeek-V3-class model, in its order, each key once,
/// with gguf-py's value types; values from config.json (a nested `text_config` wins over the top level, as the
/// converter merges them). Tokenizer keys are not made here (they come from the tokenizer's own builder and are
/// passed in as extra keys).
public enum GGUFMetadataBuilder {
    public static let architecture = "deepseek2"
    /// What llama.cpp's deepseek2 loader uses for the YaRN betas whatever the file says.
    public static let llamaCppBetaFast = 32.0
    public static let llamaCppBetaSlow = 1.0

    public struct Result: Sendable {
        public var metadata: [GGUFKeyValue]
        /// Things a user of the file must know (printed as warnings).
        public var warnings: [String]
    }

    /// `name`: `general.name` (the converter falls back to the folder name when the model card names none).
    public static func metadata(config: ModelConfig, name: String, outType: GGUFOutType) -> Result {
        let text = config.text
        let p = architecture + "."
        var kv: [GGUFKeyValue] = []
        var warnings: [String] = []
        func add(_ key: String, _ value: GGUFValue) { kv.append(GGUFKeyValue(key: key, value: value)) }
        func u32(_ key: String, _ v: Int) { add(key, .u32(UInt32(clamping: v))) }
        func f32(_ key: String, _ v: Double) { add(key, .f32(Float(v))) }
        /// A raw config value: the text section first, then the top level.
        func raw(_ key: String) -> JSONValue? {
            if let v = text.values[key], !v.isNull { return v }
            if let v = config.raw[key], !v.isNull { return v }
            return nil
        }

        add("general.architecture", .string(architecture))
        add("general.type", .string("model"))
        add("general.name", .string(name))
        add("general.alignment", .u32(UInt32(GGUFFile.defaultAlignment)))

        u32(p + "block_count", text.numLayers)
        if let n = raw("max_position_embeddings")?.intValue { u32(p + "context_length", n) }
        u32(p + "embedding_length", text.hiddenSize)
        u32(p + "feed_forward_length", text.intermediateSize)
        u32(p + "attention.head_count", text.numHeads)
        // MLA is stored as MQA over the latent: one KV head.
        u32(p + "attention.head_count_kv", 1)

        let ropeBlock = (raw("rope_parameters") ?? raw("rope_scaling"))?.objectValue
        let ropeType = ropeBlock?["rope_type"]?.stringValue ?? ropeBlock?["type"]?.stringValue
        if ropeType == "yarn", let factor = ropeBlock?["factor"]?.doubleValue {
            add(p + "rope.scaling.type", .string("yarn"))
            f32(p + "rope.scaling.factor", factor)
            u32(p + "rope.scaling.original_context_length", Int(text.rope.originalMaxPositions))
            if let v = ropeBlock?["extrapolation_factor"]?.doubleValue { f32(p + "rope.scaling.yarn_ext_factor", v) }
            if let v = (ropeBlock?["attention_factor"] ?? ropeBlock?["attn_factor"])?.doubleValue { f32(p + "rope.scaling.yarn_attn_factor", v) }
            let fast = ropeBlock?["beta_fast"]?.doubleValue, slow = ropeBlock?["beta_slow"]?.doubleValue
            if let fast { f32(p + "rope.scaling.yarn_beta_fast", fast) }
            if let slow { f32(p + "rope.scaling.yarn_beta_slow", slow) }
            var flags: [String] = []
            if let fast, fast != llamaCppBetaFast { flags.append("--yarn-beta-fast \(number(fast))") }
            if let slow, slow != llamaCppBetaSlow { flags.append("--yarn-beta-slow \(number(slow))") }
            if !flags.isEmpty {
                warnings.append(
                    "the file records YaRN beta_fast \(number(fast ?? llamaCppBetaFast)) / beta_slow \(number(slow ?? llamaCppBetaSlow)), but llama.cpp's deepseek2 loader ignores these keys and uses \(number(llamaCppBetaFast)) / \(number(llamaCppBetaSlow)): "
                        + "pass \(flags.joined(separator: " ")) to llama.cpp (llama-cli, llama-server) to run the model as trained")
            }
        }
        f32(p + "rope.freq_base", text.rope.theta)
        f32(p + "attention.layer_norm_rms_epsilon", text.rmsNormEps)
        u32(p + "expert_used_count", text.numExpertsPerToken)
        u32(p + "expert_group_count", text.expertGroups)
        u32(p + "expert_group_used_count", text.topKGroups)
        // scoring_func: sigmoid (2) is the only one the config rules accept.
        let scoring = raw("scoring_func")?.stringValue ?? "sigmoid"
        u32(p + "expert_gating_func", scoring == "softmax" ? 1 : 2)
        add("general.file_type", .u32(outType.fileType))

        u32(p + "leading_dense_block_count", text.firstDenseLayers)
        u32(p + "vocab_size", text.vocabSize)
        u32(p + "attention.q_lora_rank", text.qLoraRank)
        u32(p + "attention.kv_lora_rank", text.kvLoraRank)
        u32(p + "attention.key_length", text.kvLoraRank + text.qkRopeHeadDim)
        u32(p + "attention.value_length", text.kvLoraRank)
        u32(p + "attention.key_length_mla", text.qkNopeHeadDim + text.qkRopeHeadDim)
        u32(p + "attention.value_length_mla", text.vHeadDim)
        u32(p + "expert_feed_forward_length", text.moeIntermediateSize)
        u32(p + "expert_count", text.numRoutedExperts)
        u32(p + "expert_shared_count", text.numSharedExperts)
        f32(p + "expert_weights_scale", text.routedScalingFactor)
        if text.normalizeTopK { add(p + "expert_weights_norm", .bool(true)) }
        u32(p + "rope.dimension_count", text.qkRopeHeadDim)
        // [TAG_DEEPSEEK2_YARN_LOG_MUL_FIX]: 0.1 · mscale_all_dim (the loader divides by 0.1 again).
        if let m = ropeBlock?["mscale_all_dim"]?.doubleValue { f32(p + "rope.scaling.yarn_log_multiplier", 0.1 * m) }
        add("general.quantization_version", .u32(2))
        return Result(metadata: kv, warnings: warnings)
    }

    /// A config number as a person writes it (1 rather than 1.0).
    static func number(_ v: Double) -> String {
        v == v.rounded() && abs(v) < 1e15 ? String(Int64(v)) : "\(v)"
    }
}
