import JSONCore
@testable import ModelConfig
import Testing

/// The one config validator (`ModelConfig.parse`, driven by the manifest's `config_keys`): every value the forward
/// pass, the expected tensor list or a shard plan relies on is checked when config.json is read, so `verify` refuses
/// exactly what the other commands would refuse, and nothing wrong-typed silently becomes a default.
@Suite("config.json validation")
struct ConfigValidationTests {
    /// A flat K2 config with `key` set to the raw JSON `value` (or removed when nil).
    func k2(_ key: String, _ value: String?) -> String {
        "{\"model_type\": \"kimi_k2\", \(textMembers(extra: value.map { "\"\(key)\": \($0)" } ?? "", dropping: key))}"
    }

    func refused(_ key: String, _ value: String, _ reason: String, sourceLocation: SourceLocation = #_sourceLocation) {
        expectConfigError(k2(key, value), .invalidValue(file: "config.json", section: "config", key: key, reason: reason), sourceLocation: sourceLocation)
    }

    func wrongType(_ key: String, _ value: String, expected: String, found: String, sourceLocation: SourceLocation = #_sourceLocation) {
        expectConfigError(
            k2(key, value), .wrongType(file: "config.json", section: "config", key: key, expected: expected, found: found),
            sourceLocation: sourceLocation)
    }

    @Test("routing: zero experts per token, top-k beyond the experts or beyond the kept groups")
    func routingCounts() {
        refused("num_experts_per_tok", "0", "must be at least 1 when n_routed_experts is 8, found 0")
        refused("num_experts_per_tok", "9", "9 exceeds n_routed_experts 8")
        // 8 experts in 4 groups of 2, 1 group kept: at most 2 experts reachable.
        expectConfigError(
            "{\"model_type\": \"kimi_k2\", \(textMembers(dropping: "n_group").replacingOccurrences(of: "\"topk_group\": 1", with: "\"topk_group\": 1, \"n_group\": 4").replacingOccurrences(of: "\"num_experts_per_tok\": 2", with: "\"num_experts_per_tok\": 3"))}",
            .invalidValue(file: "config.json", section: "config", key: "num_experts_per_tok", reason: "3 exceeds the 2 experts in the topk_group 1 kept groups of 2"))
        // A dense model (no routed experts) needs no routing settings.
        let dense = "{\"model_type\": \"kimi_k2\", \(textMembers(dropping: "n_routed_experts").replacingOccurrences(of: "\"num_experts_per_tok\": 2", with: "\"num_experts_per_tok\": 0")), \"n_routed_experts\": 0}"
        #expect(throws: Never.self) { _ = try parse(dense) }
    }

    @Test("routing groups: n_group must divide the experts, topk_group within 1...n_group, two experts per group")
    func routingGroups() {
        refused("n_group", "3", "3 groups do not divide n_routed_experts 8")
        refused("n_group", "8", "8 groups of 1 expert: each group needs at least 2 (its score is the sum of its top 2)")
        refused("n_group", "0", "must be at least 1, found 0")
        refused("topk_group", "0", "must be at least 1, found 0")
        refused("topk_group", "2", "2 exceeds n_group 1")
        // Absent keys take transformers' defaults (n_group 8, topk_group 4), which 8 experts cannot satisfy.
        expectConfigError(
            "{\"model_type\": \"kimi_k2\", \(textMembers(dropping: "n_group").replacingOccurrences(of: ", \"topk_group\": 1", with: ""))}",
            .invalidValue(file: "config.json", section: "config", key: "n_group", reason: "8 groups of 1 expert: each group needs at least 2 (its score is the sum of its top 2)"))
    }

    @Test("activation and scoring the reference pass does not implement are refused, naming what it does")
    func unsupportedFunctions() {
        refused("hidden_act", "\"gelu\"", "found \"gelu\", expected \"silu\" (the reference forward pass implements silu)")
        refused("hidden_act", "\"SiLU\"", "found \"SiLU\", expected \"silu\" (the reference forward pass implements silu)")
        refused("scoring_func", "\"softmax\"", "found \"softmax\", expected \"sigmoid\" (the reference forward pass implements sigmoid routing)")
        // A control character in the value is shown escaped.
        refused("hidden_act", "\"si\\u001b[2Jlu\"", "found \"si\\x1B[2Jlu\", expected \"silu\" (the reference forward pass implements silu)")
    }

    @Test("epsilon and scaling factor must be positive float32 numbers")
    func numbers() {
        refused("rms_norm_eps", "0", "must be greater than 0, found 0")
        refused("rms_norm_eps", "-1e-6", "must be greater than 0, found -1e-6")
        refused("rms_norm_eps", "1e-60", "1e-60 is too small for float32 (under 1.1754944e-38, it would lose its precision or become 0)")
        refused("rms_norm_eps", "1e-40", "1e-40 is too small for float32 (under 1.1754944e-38, it would lose its precision or become 0)")
        refused("routed_scaling_factor", "1e7", "must be at most 1000000, found 1e7")
        refused("rope_theta", "1e13", "must be at most 1000000000000, found 1e13")
        refused("rms_norm_eps", "1e999", "1e999 is not a finite float32 number (the forward pass computes in float32)")
        refused("rms_norm_eps", "2", "must be at most 1, found 2")
        refused("routed_scaling_factor", "0", "must be greater than 0, found 0")
        refused("routed_scaling_factor", "1e39", "1e39 is not a finite float32 number (the forward pass computes in float32)")
        refused("rope_theta", "1", "must be greater than 1, found 1")
    }

    @Test("dimensions: zero head dims, odd rope dims and zero sizes are refused")
    func dimensions() {
        refused("qk_nope_head_dim", "0", "must be at least 1, found 0")
        refused("v_head_dim", "0", "must be at least 1, found 0")
        refused("qk_rope_head_dim", "0", "must be at least 2, found 0")
        refused("qk_rope_head_dim", "7", "must be a multiple of 2, found 7")
        refused("num_attention_heads", "0", "must be at least 1, found 0")
        refused("hidden_size", "0", "must be at least 1, found 0")
        refused("vocab_size", "0", "must be at least 1, found 0")
        refused("num_hidden_layers", "0", "must be at least 1, found 0")
        refused("moe_layer_freq", "0", "must be at least 1, found 0")
        refused("n_shared_experts", "-1", "must not be negative, found -1")
    }

    @Test("wrong-typed optional keys are refused, never turned into defaults")
    func wrongTypedOptionals() {
        wrongType("tie_word_embeddings", "\"false\"", expected: "a boolean (true or false)", found: "a string \"false\"")
        wrongType("norm_topk_prob", "1", expected: "a boolean (true or false)", found: "the number 1")
        wrongType("n_group", "\"1\"", expected: "an integer", found: "a string \"1\"")
        wrongType("rms_norm_eps", "\"1e-6\"", expected: "a number", found: "a string")
        wrongType("hidden_act", "[\"silu\"]", expected: "a string", found: "an array")
        wrongType("rope_scaling", "\"yarn\"", expected: "an object", found: "a string \"yarn\"")
        wrongType("moe_layer_freq", "1.0", expected: "an integer", found: "1.0, a whole number written with a fraction or exponent (write 1)")
        wrongType("hidden_size", "6.4e1", expected: "an integer", found: "6.4e1, a whole number written with a fraction or exponent (write 64)")
        wrongType("hidden_size", "1e30", expected: "an integer", found: "1e30, which does not fit in a 64-bit integer")
        wrongType("first_k_dense_replace", "true", expected: "an integer", found: "a boolean")
    }

    @Test("rope_scaling: bad types, non-positive factors, unknown rope types and a missing YaRN length are named")
    func rope() {
        func yarn(_ members: String) -> String {
            k2("rope_scaling", "{\"type\": \"yarn\", \"original_max_position_embeddings\": 4096, \(members)}")
        }
        func invalid(_ key: String, _ reason: String) -> ConfigError { .invalidValue(file: "config.json", section: "config", key: key, reason: reason) }
        expectConfigError(yarn("\"factor\": 0"), invalid("rope_scaling.factor", "must be greater than 0, found 0"))
        expectConfigError(yarn("\"factor\": -40"), invalid("rope_scaling.factor", "must be greater than 0, found -40"))
        expectConfigError(
            yarn("\"factor\": \"40\""),
            .wrongType(file: "config.json", section: "config", key: "rope_scaling.factor", expected: "a number", found: "a string"))
        expectConfigError(
            yarn("\"truncate\": \"no\""),
            .wrongType(file: "config.json", section: "config", key: "rope_scaling.truncate", expected: "a boolean (true or false)", found: "a string \"no\""))
        expectConfigError(yarn("\"beta_fast\": -1"), invalid("rope_scaling.beta_fast", "must be at least 0, found -1"))
        // Bounds that keep frequencies, amplitude and softmax scale finite in float32.
        expectConfigError(yarn("\"mscale_all_dim\": 1e30"), invalid("rope_scaling.mscale_all_dim", "must be at most 1000, found 1e30"))
        expectConfigError(yarn("\"mscale\": -1"), invalid("rope_scaling.mscale", "must be at least 0, found -1"))
        expectConfigError(yarn("\"factor\": 1e-40"), invalid("rope_scaling.factor", "1e-40 is too small for float32 (under 1.1754944e-38, it would lose its precision or become 0)"))
        expectConfigError(yarn("\"factor\": 1e7"), invalid("rope_scaling.factor", "must be at most 1000000, found 1e7"))
        expectConfigError(
            k2("rope_scaling", "{\"type\": \"yarn\", \"factor\": 4}"),
            .missingKey(file: "config.json", section: "config.rope_scaling", key: "original_max_position_embeddings"))
        expectConfigError(
            k2("rope_scaling", "{\"rope_type\": \"dynamic\", \"factor\": 4}"),
            invalid("rope_scaling.rope_type", "found \"dynamic\", expected \"default\" or \"yarn\" (the rope types the reference forward pass implements)"))
        expectConfigError(
            k2("rope_parameters", "{\"rope_type\": \"yarn\", \"factor\": 4, \"original_max_position_embeddings\": 4096, \"rope_theta\": 0.5}"),
            invalid("rope_parameters.rope_theta", "must be greater than 1, found 0.5"))
        expectConfigError(
            k2("rope_scaling", "{\"type\": 7}"),
            .wrongType(file: "config.json", section: "config", key: "rope_scaling.type", expected: "a string", found: "the number 7"))
    }

    @Test("K2.5's nested text_config is checked the same way, naming its section")
    func nestedSection() {
        let vision = #""vision_config": {}"#
        expectConfigError(
            "{\"model_type\": \"kimi_k25\", \"text_config\": {\(textMembers(dropping: "num_experts_per_tok")), \"num_experts_per_tok\": 0}, \(vision)}",
            .invalidValue(file: "config.json", section: "text_config", key: "num_experts_per_tok", reason: "must be at least 1 when n_routed_experts is 8, found 0"))
        expectConfigError(
            "{\"model_type\": \"kimi_k25\", \"text_config\": {\(textMembers()), \"hidden_act\": \"gelu\"}, \(vision)}",
            .invalidValue(file: "config.json", section: "text_config", key: "hidden_act", reason: "found \"gelu\", expected \"silu\" (the reference forward pass implements silu)"))
    }

    @Test("defaults come from the manifest and are visible to every consumer")
    func defaults() throws {
        let config = try parse("{\"model_type\": \"kimi_k2\", \(textMembers())}")
        #expect(config.text.rmsNormEps == 1e-6)
        #expect(config.text.routedScalingFactor == 2.5)
        #expect(config.text.normalizeTopK)
        #expect(config.text.ropeInterleave)
        #expect(config.text.rope.kind == .plain && config.text.rope.theta == 10000)
        #expect(config.text.resolved["hidden_act"] == .string("silu"))
        // null means absent: the default applies.
        #expect(try parse(k2("rope_interleave", "null")).text.ropeInterleave)
        let rules = try ManifestLibrary.configRules(named: "deepseek_v3_text")
        #expect(rules.contains { $0.key == "num_experts_per_tok" && $0.required == true })
        #expect(Set(rules.map(\.key)).count == rules.count, "each key has one rule")
        // Messages name the file, the key and what was found against what was expected.
        let message = ConfigError.invalidValue(file: "config.json", section: "config", key: "n_group", reason: "3 groups do not divide n_routed_experts 8").description
        #expect(message == "config.json: config key \"n_group\": 3 groups do not divide n_routed_experts 8")
    }
}
