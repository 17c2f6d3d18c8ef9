import Foundation
import GGUF
import JSONCore
import ModelConfig

/// The `deepseek2` metadata as the text config the forward pass reads: the config.json transformers' DeepseekV3
/// model would have, checked by the same rules as any config.json (`Manifests/json/deepseek_v3_text.json`).
///
/// What the file does not store is filled in as llama.cpp reads it: every layer after the leading dense ones is
/// a MoE layer (`moe_layer_freq` 1), no MTP layers, RoPE interleaved (the HF bytes are written unchanged),
/// YaRN's `mscale` equal to `mscale_all_dim` (llama.cpp's deepseek2 graph applies no extra rotary amplitude),
/// `topk_method` noaux_tc exactly when the first MoE layer has `exp_probs_b.bias`, the embedding tied when
/// `output.weight` is absent, and `expert_weights_scale` 1 when absent.
enum GGUFTextConfig {
    static func make(
        _ c: GGUFDeepseek2Config, file: String, vocabSize: Int, tied: Bool, routerBias: Bool, modelType: String
    ) throws(GGUFModelError) -> ModelConfig {
        func inconsistent(_ key: String, _ reason: String) -> GGUFModelError { .inconsistent(file: file, key: "deepseek2." + key, reason: reason) }
        guard let qLora = c.qLoraRank else {
            throw inconsistent("attention.q_lora_rank", "absent: a model without query compression (DeepSeek-V2-Lite) is not a DeepSeek-V3-class model")
        }
        guard let keyMLA = c.keyLengthMLA, let valueMLA = c.valueLengthMLA else {
            throw inconsistent(
                "attention.key_length_mla", "absent (with value_length_mla): the legacy layout with one attn_kv_b tensor, which k2pack does not read; reconvert with a current llama.cpp")
        }
        guard c.headCountKV == 1 else {
            throw inconsistent("attention.head_count_kv", "\(c.headCountKV) with \(c.headCount) query heads, expected 1 (MLA is stored as MQA over the latent)")
        }
        guard keyMLA > c.ropeDimensionCount else {
            throw inconsistent("attention.key_length_mla", "\(keyMLA) leaves no room for the \(c.ropeDimensionCount) rope dimensions (rope.dimension_count)")
        }
        guard c.keyLength == c.kvLoraRank + c.ropeDimensionCount else {
            throw inconsistent("attention.key_length", "\(c.keyLength), expected kv_lora_rank + rope.dimension_count = \(c.kvLoraRank + c.ropeDimensionCount)")
        }
        guard c.valueLength == c.kvLoraRank else {
            throw inconsistent("attention.value_length", "\(c.valueLength), expected kv_lora_rank = \(c.kvLoraRank)")
        }
        guard let gating = c.expertGatingFunc else {
            throw inconsistent("expert_gating_func", "absent: llama.cpp would route with softmax, the reference forward pass implements sigmoid (2)")
        }
        let scoring: String
        switch gating {
        case 1: scoring = "softmax"
        case 2: scoring = "sigmoid"
        default: throw inconsistent("expert_gating_func", "\(gating), expected 1 (softmax) or 2 (sigmoid)")
        }

        var o = JSONObject()
        func int(_ key: String, _ v: Int) { o.set(key, .number(String(v))) }
        func num(_ key: String, _ v: Double) { o.set(key, .number(Self.number(v))) }
        o.set("model_type", .string(modelType))
        int("hidden_size", c.embeddingLength)
        int("num_hidden_layers", c.blockCount)
        int("num_attention_heads", c.headCount)
        int("num_key_value_heads", c.headCount)
        int("q_lora_rank", qLora)
        int("kv_lora_rank", c.kvLoraRank)
        int("qk_nope_head_dim", keyMLA - c.ropeDimensionCount)
        int("qk_rope_head_dim", c.ropeDimensionCount)
        int("v_head_dim", valueMLA)
        int("intermediate_size", c.feedForwardLength)
        int("moe_intermediate_size", c.expertFeedForwardLength)
        int("n_routed_experts", c.expertCount)
        int("num_experts_per_tok", c.expertUsedCount)
        int("n_shared_experts", c.expertSharedCount)
        int("first_k_dense_replace", c.leadingDenseBlockCount)
        int("vocab_size", vocabSize)
        int("moe_layer_freq", 1)
        int("num_nextn_predict_layers", 0)
        int("n_group", c.expertGroupCount ?? 1)
        int("topk_group", c.expertGroupUsedCount ?? 1)
        o.set("norm_topk_prob", .bool(c.expertWeightsNorm))
        num("routed_scaling_factor", c.expertWeightsScale ?? 1)
        num("rms_norm_eps", c.rmsNormEpsilon)
        num("rope_theta", c.ropeFreqBase)
        o.set("rope_interleave", .bool(true))
        o.set("hidden_act", .string("silu"))
        o.set("scoring_func", .string(scoring))
        o.set("topk_method", .string(routerBias ? "noaux_tc" : "greedy"))
        o.set("tie_word_embeddings", .bool(tied))
        int("max_position_embeddings", c.contextLength)
        o.set("torch_dtype", .string("float32"))
        if let type = c.ropeScalingType, type != "none" {
            var r = JSONObject()
            r.set("type", .string(type))
            if let f = c.ropeScalingFactor { r.set("factor", .number(Self.number(f))) }
            if let n = c.ropeOriginalContextLength { r.set("original_max_position_embeddings", .number(String(n))) }
            if let b = c.yarnBetaFast { r.set("beta_fast", .number(Self.number(b))) }
            if let b = c.yarnBetaSlow { r.set("beta_slow", .number(Self.number(b))) }
            // The file holds 0.1 · mscale_all_dim as a float32: recover it at that precision.
            if let m = c.mscaleAllDim {
                let all = Double(Float(m))
                r.set("mscale_all_dim", .number(Self.number(all)))
                r.set("mscale", .number(Self.number(all)))
            }
            o.set("rope_scaling", .object(r))
        }
        do {
            return try ModelConfig.parse(Array(JSONValue.object(o).serialized(indent: nil).utf8), file: file)
        } catch {
            throw .config(file: file, reason: error.description)
        }
    }

    /// JSON text of a finite double (Swift's shortest round-trip form, valid JSON).
    static func number(_ v: Double) -> String {
        if v == v.rounded(), abs(v) < 1e15 { return String(Int64(v)) }
        return "\(v)"
    }
}
