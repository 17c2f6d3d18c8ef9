import JSONCore
@testable import ModelConfig
import Testing

/// A tiny DeepSeek-V3-family text config as JSON members (without braces).
func textMembers(extra: String = "", dropping: String? = nil) -> String {
    var members = [
        "\"hidden_size\": 64", "\"num_hidden_layers\": 3", "\"num_attention_heads\": 2", "\"q_lora_rank\": 32",
        "\"kv_lora_rank\": 32", "\"qk_nope_head_dim\": 16", "\"qk_rope_head_dim\": 8", "\"v_head_dim\": 16",
        "\"intermediate_size\": 96", "\"moe_intermediate_size\": 32", "\"n_routed_experts\": 8",
        "\"num_experts_per_tok\": 2", "\"n_shared_experts\": 1", "\"first_k_dense_replace\": 1", "\"vocab_size\": 256",
        "\"topk_method\": \"noaux_tc\"", "\"torch_dtype\": \"bfloat16\"", "\"n_group\": 1", "\"topk_group\": 1",
    ]
    if let dropping { members.removeAll { $0.hasPrefix("\"\(dropping)\"") } }
    if !extra.isEmpty { members.append(extra) }
    return members.joined(separator: ", ")
}

let packQuantized = #"""
    "quantization_config": {"quant_method": "compressed-tensors", "format": "pack-quantized",
      "config_groups": {"group_0": {"targets": ["Linear"], "weights": {"num_bits": 4, "type": "int", "symmetric": true,
        "strategy": "group", "group_size": 32}}},
      "ignore": ["lm_head", "re:.*self_attn.*", "re:.*shared_experts.*", "re:.*mlp\\.(gate|up|gate_up|down)_proj.*"]}
    """#

func parse(_ json: String) throws(ConfigError) -> ModelConfig { try ModelConfig.parse(Array(json.utf8)) }

func expectConfigError(_ json: String, _ expected: ConfigError, sourceLocation: SourceLocation = #_sourceLocation) {
    do {
        _ = try parse(json)
        Issue.record("parsed without error; expected \(expected)", sourceLocation: sourceLocation)
    } catch {
        #expect(error == expected, sourceLocation: sourceLocation)
    }
}

@Suite("config.json and manifests")
struct ModelConfigTests {
    @Test("flat K2: quantization at top level covers exactly the routed experts")
    func flatK2() throws {
        let config = try parse("{\"model_type\": \"kimi_k2\", \(textMembers(extra: packQuantized))}")
        #expect(config.architecture.name == "kimi_k2")
        #expect(config.text.moeLayers == [1, 2])
        #expect(config.quantization?.location == "top level")
        let list = try ExpectedTensorList(config: config)
        let packed = list.tensors.filter { $0.form == .packed }
        #expect(packed.count == 2 * 8 * 3)
        #expect(Set(packed.map(\.role)) == ["routed_expert_gate", "routed_expert_up", "routed_expert_down"])
        let down = try #require(list["model.layers.2.mlp.experts.7.down_proj.weight_packed"])
        #expect(down.shape == [64, 4])
        #expect(list["model.layers.2.mlp.experts.7.down_proj.weight_scale"]?.shape == [64, 1])
        #expect(list["model.layers.2.mlp.experts.7.down_proj.weight_shape"]?.dtypes == [.i32, .i64])
        #expect(list["model.layers.0.mlp.gate_proj.weight"]?.shape == [96, 64])
        #expect(list["model.layers.1.self_attn.q_b_proj.weight"]?.shape == [48, 32])
        #expect(list["model.layers.1.self_attn.kv_a_proj_with_mqa.weight"]?.shape == [40, 64])
        #expect(list["model.layers.1.mlp.gate.e_score_correction_bias"]?.dtypes == [.f32])
        #expect(list["lm_head.weight"] != nil)
        #expect(list["model.layers.0.mlp.gate.weight"] == nil)
        // 3 layers × 9 (7 attention incl. norms + 2 layer norms) + 3 dense + 2 × (2 router + 3 shared + 24 × 3) + 3
        #expect(list.tensors.count == 27 + 3 + 2 * (2 + 3 + 72) + 3)
    }

    @Test("K2.5: nested text_config holds the scheme; the vision tower is never quantized")
    func nestedK25() throws {
        let vision = #""vision_config": {"patch_size": 14, "init_pos_emb_height": 4, "init_pos_emb_width": 4, "vt_hidden_size": 32, "vt_intermediate_size": 64, "vt_num_hidden_layers": 2, "merge_kernel_size": [2, 2], "mm_hidden_size": 32, "text_hidden_size": 64}"#
        let config = try parse("{\"model_type\": \"kimi_k25\", \"text_config\": {\"model_type\": \"kimi_k2\", \(textMembers(extra: packQuantized))}, \(vision)}")
        #expect(config.quantization?.location == "text_config")
        let list = try ExpectedTensorList(config: config)
        #expect(list["language_model.model.layers.1.mlp.experts.0.up_proj.weight_packed"] != nil)
        #expect(list["language_model.lm_head.weight"] != nil)
        #expect(list["vision_tower.encoder.blocks.1.wqkv.weight"]?.shape == [96, 32])
        #expect(list["vision_tower.encoder.blocks.1.wqkv.bias"]?.shape == [96])
        #expect(list["mm_projector.proj.0.weight"]?.shape == [128, 128])
        #expect(list["mm_projector.proj.2.weight"]?.shape == [64, 128])
        #expect(list["vision_tower.patch_embed.proj.weight"]?.shape == [32, 3, 14, 14])
        #expect(list.tensors.filter { $0.role == "vision_tower" }.count == 5 + 2 * 12)
    }

    @Test("DeepSeek-V3 with block FP8 stores weight_scale_inv beside every Linear but lm_head")
    func fp8() throws {
        let fp8 = #""quantization_config": {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic", "weight_block_size": [128, 128]}"#
        let config = try parse("{\"model_type\": \"deepseek_v3\", \(textMembers(extra: fp8))}")
        let list = try ExpectedTensorList(config: config)
        #expect(list["model.layers.1.mlp.experts.3.gate_proj.weight"]?.dtypes == [.f8e4m3])
        #expect(list["model.layers.1.mlp.experts.3.gate_proj.weight_scale_inv"]?.shape == [1, 1])
        #expect(list["lm_head.weight"]?.dtypes == [.bf16, .f32], "an unquantized Linear is BF16 (or lossless float32)")
        #expect(list["lm_head.weight_scale_inv"] == nil)
    }

    @Test("a missing required key names the key and the section")
    func missingKey() {
        expectConfigError(
            "{\"model_type\": \"kimi_k25\", \"text_config\": {\(textMembers(dropping: "hidden_size"))}, \"vision_config\": {}}",
            .missingKey(file: "config.json", section: "text_config", key: "hidden_size"))
        expectConfigError(
            "{\"model_type\": \"kimi_k2\", \(textMembers(dropping: "n_routed_experts"))}",
            .missingKey(file: "config.json", section: "config", key: "n_routed_experts"))
        #expect(ConfigError.missingKey(file: "config.json", section: "text_config", key: "hidden_size").description
            == "config.json: text_config is missing required key \"hidden_size\"")
    }

    @Test("wrong types, unknown architectures and bad JSON are clear errors")
    func otherErrors() {
        expectConfigError(
            "{\"model_type\": \"kimi_k2\", \(textMembers(dropping: "vocab_size", ))," + " \"vocab_size\": \"big\"}",
            .wrongType(file: "config.json", section: "config", key: "vocab_size", expected: "an integer", found: "a string \"big\""))
        expectConfigError("{\"model_type\": \"llama\"}", .unknownArchitecture(modelType: "llama", known: ["kimi_k25", "kimi_k2", "deepseek_v3"]))
        expectConfigError("{\"model_type\": ", .invalidJSON(file: "config.json", error: JSONError(offset: 15, reason: "unexpected end of input, expected a value")))
        expectConfigError(
            "{\"model_type\": \"kimi_k2\", \(textMembers()), \"quantization_config\": {\"quant_method\": \"gptq\"}}",
            .unsupportedQuantization(file: "config.json", reason: "quant_method \"gptq\" (k2pack reads compressed-tensors and fp8)"))
    }

    @Test("unknown extra keys are tolerated")
    func extraKeys() throws {
        _ = try parse("{\"model_type\": \"kimi_k2\", \(textMembers(extra: "\"some_future_key\": {\"x\": [1, 2]}"))}")
    }

    @Test("implausible counts are refused when the config is read")
    func implausibleCounts() {
        expectConfigError(
            "{\"model_type\": \"kimi_k2\", \(textMembers(dropping: "n_routed_experts")), \"n_routed_experts\": 2305843009213693952}",
            .invalidValue(file: "config.json", section: "config", key: "n_routed_experts", reason: "2305843009213693952 is implausible (k2pack accepts at most 1000000)"))
        expectConfigError(
            "{\"model_type\": \"kimi_k2\", \(textMembers(dropping: "num_hidden_layers")), \"num_hidden_layers\": 1000000000000}",
            .invalidValue(file: "config.json", section: "config", key: "num_hidden_layers", reason: "1000000000000 is implausible (k2pack accepts at most 10000)"))
        expectConfigError(
            "{\"model_type\": \"kimi_k2\", \(textMembers(dropping: "vocab_size")), \"vocab_size\": 3.0}",
            .wrongType(file: "config.json", section: "config", key: "vocab_size", expected: "an integer", found: "3.0, a whole number written with a fraction or exponent (write 3)"))
        expectConfigError(
            "{\"model_type\": \"kimi_k2\", \(textMembers(dropping: "vocab_size")), \"vocab_size\": 3.5}",
            .wrongType(file: "config.json", section: "config", key: "vocab_size", expected: "an integer", found: "3.5, which is not a whole number"))
    }

    @Test("a config implying more than a million tensors (5× the real K2.5) is refused before expanding")
    func tooManyTensors() throws {
        let config = try parse("{\"model_type\": \"kimi_k2\", \(textMembers(extra: packQuantized, dropping: "n_routed_experts").replacingOccurrences(of: "\"num_hidden_layers\": 3", with: "\"num_hidden_layers\": 10000")), \"n_routed_experts\": 1000}")
        #expect(throws: ConfigError.self) { _ = try ExpectedTensorList(config: config) }
    }

    @Test("vision values must be present and non-negative")
    func visionValues() throws {
        func k25(_ vision: String) throws(ConfigError) -> ExpectedTensorList {
            try ExpectedTensorList(config: parse("{\"model_type\": \"kimi_k25\", \"text_config\": {\(textMembers())}, \"vision_config\": {\(vision)}}"))
        }
        let good = #""patch_size": 14, "init_pos_emb_height": 4, "init_pos_emb_width": 4, "vt_hidden_size": 32, "vt_intermediate_size": 64, "vt_num_hidden_layers": 2, "merge_kernel_size": [2, 2], "mm_hidden_size": 32, "text_hidden_size": 64"#
        _ = try k25(good)
        #expect(throws: ConfigError.invalidValue(file: "config.json", section: "vision_config", key: "vt_num_hidden_layers", reason: "-1 blocks is not a plausible count")) {
            _ = try k25(good.replacingOccurrences(of: "\"vt_num_hidden_layers\": 2", with: "\"vt_num_hidden_layers\": -1"))
        }
        #expect(throws: ConfigError.invalidValue(file: "config.json", section: "vision_config", key: "vt_hidden_size", reason: "evaluates to -32; sizes cannot be negative")) {
            _ = try k25(good.replacingOccurrences(of: "\"vt_hidden_size\": 32", with: "\"vt_hidden_size\": -32"))
        }
        #expect(throws: ConfigError.missingKey(file: "config.json", section: "vision_config", key: "vt_hidden_size")) {
            _ = try k25(good.replacingOccurrences(of: "\"vt_hidden_size\": 32, ", with: ""))
        }
    }

    @Test("DeepSeek-V3's MTP layer is expected after the decoder layers, under the role mtp")
    func mtpLayer() throws {
        let config = try parse("{\"model_type\": \"deepseek_v3\", \(textMembers(extra: "\"num_nextn_predict_layers\": 1"))}")
        let list = try ExpectedTensorList(config: config)
        #expect(list["model.layers.3.eh_proj.weight"]?.shape == [64, 128])
        #expect(list["model.layers.3.mlp.experts.7.down_proj.weight"]?.role == "mtp")
        #expect(list["model.layers.3.self_attn.q_a_proj.weight"]?.role == "mtp")
        #expect(list["model.layers.3.shared_head.head.weight"]?.shape == [256, 64])
        #expect(list["model.layers.2.self_attn.q_a_proj.weight"]?.role == "attn_q_a")
    }

    @Test("regexes that backtrack catastrophically are refused")
    func redos() {
        let evil = packQuantized.replacingOccurrences(of: #""lm_head","#, with: #""lm_head", "re:(.*)*(.*)*Z","#)
        expectConfigError(
            "{\"model_type\": \"kimi_k2\", \(textMembers(extra: evil))}",
            .unsupportedQuantization(file: "config.json", reason: "ignore pattern \"re:(.*)*(.*)*Z\" is not a valid regular expression, or nests quantifiers (catastrophic backtracking)"))
        #expect(!PythonPatternProbe.nested("(a|b)*"))
        #expect(PythonPatternProbe.nested("(a+)+"))
        #expect(PythonPatternProbe.nested("((ab)*c)*"))
    }

    @Test("compressed-tensors matching: re: is anchored at the start, plain names match exactly")
    func matching() {
        #expect(QuantizationScheme.matches("model.layers.1.self_attn.o_proj", className: "Linear", target: "re:.*self_attn.*"))
        #expect(!QuantizationScheme.matches("model.layers.1.mlp.experts.0.gate_proj", className: "Linear", target: #"re:.*mlp\.(gate|up|gate_up|down)_proj.*"#))
        #expect(QuantizationScheme.matches("model.layers.0.mlp.gate_proj", className: "Linear", target: #"re:.*mlp\.(gate|up|gate_up|down)_proj.*"#))
        #expect(!QuantizationScheme.matches("xlm_head", className: "Linear", target: "lm_head"))
        #expect(!QuantizationScheme.matches("a.self_attn", className: "Linear", target: "re:self_attn"))
        #expect(QuantizationScheme.matches("anything", className: "Linear", target: "Linear"))
    }

    @Test("shape expressions evaluate with precedence, indexing and exact division")
    func expressions() throws {
        let values: [String: JSONValue] = ["a": .number("6"), "b": .number("4"), "m": .array([.number("2"), .number("3")])]
        let lookup: (String) -> JSONValue? = { values[$0] }
        #expect(try ShapeExpression.evaluate("a*(b+1)", lookup: lookup) == 30)
        #expect(try ShapeExpression.evaluate("a+b*2", lookup: lookup) == 14)
        #expect(try ShapeExpression.evaluate("a*m[0]*m[1]", lookup: lookup) == 36)
        #expect(throws: ConfigError.expression(expression: "a/b", reason: "6 is not divisible by 4")) { try ShapeExpression.evaluate("a/b", lookup: lookup) }
        #expect(throws: ConfigError.missingKey(file: "config.json", section: "config", key: "zz")) { try ShapeExpression.evaluate("zz", lookup: lookup) }
    }
}

enum PythonPatternProbe {
    static func nested(_ pattern: String) -> Bool { PythonPattern.hasNestedQuantifier(pattern) }
}
