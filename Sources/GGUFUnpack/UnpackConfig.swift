import GGUF
import GGUFModel
import JSONCore
import ModelConfig
import TensorCore

/// Which Hugging Face layout a GGUF is written back as. llama.cpp's `deepseek2` files do not say which model
/// they came from, so this is chosen: `--layout`, else the `k2pack.source.model_type` key k2pack's own GGUF
/// writer records, else a flat DeepSeek-V3 config (`deepseek_v3`, what transformers loads without remote code).
public enum UnpackLayout: String, Sendable, CaseIterable, Codable {
    /// Flat config, `model_type` deepseek_v3, architectures DeepseekV3ForCausalLM.
    case deepseekV3 = "deepseek-v3"
    /// Flat config, `model_type` kimi_k2 (Kimi K2 / K2-Thinking), architectures DeepseekV3ForCausalLM.
    case k2
    /// Kimi K2.5 (`language_model.` prefix, nested `text_config`): a text GGUF has no vision tower, so its
    /// vision config and tensors come from a K2.5 folder (`--vision-from`); refused without one (a file recording
    /// K2.5 as its source gets `k2` then, with a note).
    case k25

    /// The metadata key k2pack's GGUF writer may add: the source config.json's `model_type` (a string).
    public static let sourceModelTypeKey = "k2pack.source.model_type"

    var modelType: String {
        switch self {
        case .deepseekV3: "deepseek_v3"
        case .k2: "kimi_k2"
        case .k25: "kimi_k25"
        }
    }

    /// The layout for `model`: `requested`, else from `k2pack.source.model_type`, else deepseek-v3.
    static func resolve(_ requested: UnpackLayout?, model: GGUF.GGUFModel, visionFrom: String?) throws(GGUFUnpackError) -> (UnpackLayout, String?) {
        let file = model.first.path
        if let visionFrom {
            guard requested == nil || requested == .k25 else {
                throw .layout(file: file, reason: "--vision-from \(visionFrom) supplies K2.5's vision tower; it does not apply to the \(requested?.rawValue ?? "") layout")
            }
            return (.k25, nil)
        }
        var layout = requested
        var note: String?
        if layout == nil, let recorded = model[sourceModelTypeKey]?.stringValue {
            layout = allCases.first { $0.modelType == recorded }
            if layout == .k25 {
                layout = .k2
                note = "\(sourceModelTypeKey) is \"\(recorded)\" (Kimi K2.5): its text model is written with the k2 layout (a text GGUF holds no vision tower)"
            } else if layout == nil {
                note = "\(sourceModelTypeKey) is \"\(recorded)\", which k2pack does not write back; using the flat deepseek-v3 layout"
            }
        }
        let chosen = layout ?? .deepseekV3
        if chosen == .k25 {
            throw .layout(
                file: file,
                reason: "the k25 layout (Kimi K2.5: language_model. prefix, text_config and vision_config) needs a vision tower, which a text GGUF does not hold (llama.cpp keeps it in a separate mmproj file): give --vision-from a K2.5 folder to take its vision config and tensors from, or use --layout k2 or deepseek-v3 for the text model")
        }
        return (chosen, note)
    }
}

/// config.json for the unpacked checkpoint: the text config the weight source made from the deepseek2 metadata
/// (`GGUFTextConfig`: YaRN factor, original length, betas, mscale and mscale_all_dim = yarn_log_multiplier / 0.1,
/// scoring_func from expert_gating_func, n_group, topk_group, routed_scaling_factor, norm_topk_prob, topk_method
/// from the router bias, tied embedding), with the model type of the layout, the architectures transformers
/// instantiates, the dtype written, the token ids the file records, and the quantization_config when the
/// routed experts are written as INT4. Numbers the file stores as float32 are written as the float32 holds
/// them (e.g. routed_scaling_factor 2.8269999027252197 for 2.827): the values llama.cpp and k2pack compute with.
enum UnpackConfig {
    static func make(
        source base: JSONObject, model: GGUF.GGUFModel, layout: UnpackLayout, dtype: DType, quantization: JSONValue?
    ) -> JSONObject {
        var o = JSONObject()
        o.append("architectures", .array([.string("DeepseekV3ForCausalLM")]))
        o.append("model_type", .string(layout.modelType))
        for (key, value) in base.entries where key != "model_type" && key != "torch_dtype" {
            o.append(key, value)
        }
        o.append("attention_bias", .bool(false))
        o.append("attention_dropout", .number("0.0"))
        for (key, name) in [("bos_token_id", "bos_token_id"), ("eos_token_id", "eos_token_id"), ("pad_token_id", "padding_token_id")] {
            if let id = model["tokenizer.ggml.\(name)"]?.intValue { o.append(key, .number(String(id))) }
        }
        o.append("torch_dtype", .string(dtype == .f32 ? "float32" : "bfloat16"))
        if let quantization { o.append("quantization_config", quantization) }
        return o
    }

    /// K2.5's nested config: `vision`'s config.json (a K2.5 folder's) with its text_config replaced by `text`
    /// (model_type kimi_k2, as K2.5 ships it; the quantization_config inside it, where K2.5 keeps it), and the
    /// top-level dtype and tie_word_embeddings following the text model written.
    static func nested(text: JSONObject, vision: JSONObject, textKey: String) -> JSONObject {
        var inner = text
        inner.set("model_type", .string(UnpackLayout.k2.modelType))
        var top = JSONObject()
        for (key, value) in vision.entries {
            switch key {
            case textKey: top.append(key, .object(inner))
            case "quantization_config": continue
            case "dtype", "torch_dtype": top.append(key, text["torch_dtype"] ?? value)
            case "tie_word_embeddings": top.append(key, text["tie_word_embeddings"] ?? value)
            default: top.append(key, value)
            }
        }
        return top
    }

    static func bytes(_ o: JSONObject) -> [UInt8] {
        Array((JSONValue.object(o).serialized() + "\n").utf8)
    }
}
