import JSONCore
@testable import ModelConfig
import Testing

/// compressed-tensors' group choice and field types (issue 15, item 6).
@Suite("quantization groups as compressed-tensors chooses them")
struct QuantizationGroupTests {
    func scheme(_ groups: String, ignore: String = "[]") throws -> QuantizationScheme {
        let json = #"{"quant_method": "compressed-tensors", "format": "pack-quantized", "ignore": \#(ignore), "config_groups": {\#(groups)}}"#
        let value = try JSONDocument.parse(Array(json.utf8))
        return try QuantizationScheme.parse(value, location: "top level", file: "config.json")
    }

    func group(_ name: String, targets: [String], groupSize: Int) -> String {
        let list = targets.map { "\"\($0.replacingOccurrences(of: "\\", with: "\\\\"))\"" }.joined(separator: ", ")
        return #""\#(name)": {"targets": [\#(list)], "weights": {"num_bits": 4, "type": "int", "symmetric": true, "strategy": "group", "group_size": \#(groupSize)}}"#
    }

    @Test("an exact name beats a re: pattern, which beats the class name, whatever the group order")
    func ranking() throws {
        let exact = "model.layers.1.mlp.down_proj"
        // Every order of the three groups chooses the same one for each module.
        let parts = [group("by_class", targets: ["Linear"], groupSize: 32), group("by_regex", targets: ["re:.*mlp.*"], groupSize: 64),
                     group("by_name", targets: [exact], groupSize: 128)]
        for order in [[0, 1, 2], [2, 1, 0], [1, 0, 2], [2, 0, 1]] {
            let s = try scheme(order.map { parts[$0] }.joined(separator: ", "))
            #expect(s.group(for: exact, className: "Linear")?.name == "by_name", "\(order)")
            #expect(s.group(for: "model.layers.1.mlp.up_proj", className: "Linear")?.name == "by_regex", "\(order)")
            #expect(s.group(for: "model.layers.1.self_attn.o_proj", className: "Linear")?.name == "by_class", "\(order)")
            #expect(s.group(for: "model.layers.1.self_attn.o_proj", className: "Embedding") == nil, "\(order)")
        }
    }

    @Test("the same target in two groups belongs to the last; at equal rank the first-listed target wins")
    func identicalTargets() throws {
        let s = try scheme([group("a", targets: ["Linear"], groupSize: 32), group("b", targets: ["Linear"], groupSize: 64)].joined(separator: ", "))
        #expect(s.group(for: "x.q_proj", className: "Linear")?.name == "b")
        let three = try scheme([group("a", targets: ["re:.*proj", "Linear"], groupSize: 32), group("b", targets: ["re:x.*"], groupSize: 64),
                                group("c", targets: ["re:.*proj"], groupSize: 128)].joined(separator: ", "))
        // re:.*proj was listed first (by a) and now belongs to c; re:x.* (b) comes after it.
        #expect(three.group(for: "x.q_proj", className: "Linear")?.name == "c")
        #expect(three.group(for: "x.norm", className: "Linear")?.name == "b")
        #expect(three.group(for: "y.norm", className: "Linear")?.name == "a")
        // ignore wins over every target.
        let ignored = try scheme(group("a", targets: ["x.q_proj"], groupSize: 32), ignore: #"["re:x\\..*"]"#)
        #expect(ignored.group(for: "x.q_proj", className: "Linear") == nil)
        // Names are compared as bytes: an NFD spelling is not the NFC module's exact name.
        let nfd = try scheme(group("a", targets: ["caf\u{65}\u{301}"], groupSize: 32))
        #expect(nfd.group(for: "caf\u{E9}", className: "Linear") == nil)
        #expect(nfd.group(for: "caf\u{65}\u{301}", className: "Linear")?.name == "a")
    }

    @Test("wrong-typed fields are refused by name, never read as a default")
    func wrongTypes() {
        let base = #"{"targets": ["Linear"], "weights": {"num_bits": 4, "type": "int", "symmetric": true, "strategy": "group", "group_size": 32}}"#
        let w = "quantization_config.config_groups.g.weights"
        let cases: [(String, ConfigError)] = [
            (base.replacingOccurrences(of: "\"symmetric\": true", with: "\"symmetric\": \"false\""),
             .wrongType(file: "config.json", section: w, key: "symmetric", expected: "true or false", found: "the string \"false\"")),
            (base.replacingOccurrences(of: "\"symmetric\": true", with: "\"symmetric\": 0"),
             .wrongType(file: "config.json", section: w, key: "symmetric", expected: "true or false", found: "a number")),
            (base.replacingOccurrences(of: "\"num_bits\": 4", with: "\"num_bits\": \"4\""),
             .wrongType(file: "config.json", section: w, key: "num_bits", expected: "an integer", found: "a string")),
            (base.replacingOccurrences(of: "\"group_size\": 32", with: "\"group_size\": 32.5"),
             .wrongType(file: "config.json", section: w, key: "group_size", expected: "an integer", found: "32.5")),
            (base.replacingOccurrences(of: "\"strategy\": \"group\"", with: "\"strategy\": [\"group\"]"),
             .wrongType(file: "config.json", section: w, key: "strategy", expected: "a string", found: "an array")),
            (base.replacingOccurrences(of: "\"type\": \"int\"", with: "\"type\": true"),
             .wrongType(file: "config.json", section: w, key: "type", expected: "a string", found: "a boolean")),
            (base.replacingOccurrences(of: "[\"Linear\"]", with: "\"Linear\""),
             .wrongType(file: "config.json", section: "quantization_config.config_groups.g", key: "targets", expected: "an array of strings", found: "a string")),
            (base.replacingOccurrences(of: "[\"Linear\"]", with: "[\"Linear\", 7]"),
             .wrongType(file: "config.json", section: "quantization_config.config_groups.g", key: "targets", expected: "an array of strings", found: "an array holding a number")),
            (base.replacingOccurrences(of: "\"targets\": [\"Linear\"], ", with: ""),
             .missingKey(file: "config.json", section: "quantization_config.config_groups.g", key: "targets")),
            (#"{"targets": ["Linear"], "weights": [4]}"#,
             .wrongType(file: "config.json", section: "quantization_config.config_groups.g", key: "weights", expected: "an object", found: "an array")),
        ]
        for (groupJSON, expected) in cases {
            let json = #"{"quant_method": "compressed-tensors", "format": "pack-quantized", "config_groups": {"g": \#(groupJSON)}}"#
            #expect(throws: expected, "\(groupJSON)") {
                _ = try QuantizationScheme.parse(try JSONDocument.parse(Array(json.utf8)), location: "top level", file: "config.json")
            }
        }
        let top: [(String, ConfigError)] = [
            (#""ignore": "lm_head""#, .wrongType(file: "config.json", section: "quantization_config", key: "ignore", expected: "an array of strings", found: "a string")),
            (#""ignore": [null]"#, .wrongType(file: "config.json", section: "quantization_config", key: "ignore", expected: "an array of strings", found: "an array holding null")),
            (#""format": 4"#, .wrongType(file: "config.json", section: "quantization_config", key: "format", expected: "a string", found: "a number")),
        ]
        for (member, expected) in top {
            let json = #"{"quant_method": "compressed-tensors", \#(member), "config_groups": {"g": \#(base)}}"#
            #expect(throws: expected, "\(member)") {
                _ = try QuantizationScheme.parse(try JSONDocument.parse(Array(json.utf8)), location: "top level", file: "config.json")
            }
        }
    }
}

/// When one choice of group holds for every layer and expert of a name template.
@Suite("the matcher decides alike for names differing only in digits")
struct MatcherUniformityTests {
    func matcher(ignore: String, targets: String = #"["Linear"]"#) throws -> QuantizationScheme.Matcher {
        let json = #"{"quant_method": "compressed-tensors", "format": "pack-quantized", "ignore": \#(ignore), "config_groups": {"g": {"targets": \#(targets), "weights": {"num_bits": 4, "type": "int", "symmetric": true, "strategy": "group", "group_size": 32}}}}"#
        let value = try JSONDocument.parse(Array(json.utf8))
        return QuantizationScheme.Matcher(try QuantizationScheme.parse(value, location: "top level", file: "config.json"))
    }

    @Test("digit-free substring and prefix patterns, and exact names of another shape, cannot tell layers apart")
    func alike() throws {
        let sample = "model.layers.3.mlp.experts.17.gate_proj"
        let k2 = try matcher(ignore: #"["lm_head", "re:.*self_attn.*", "re:.*shared_experts.*", "re:.*mlp\\.(gate|up|gate_up|down)_proj.*"]"#)
        #expect(k2.decidesAlike(namesLike: sample))
        #expect(try matcher(ignore: #"["re:model\\.layers.*", "model.layers.x.mlp"]"#).decidesAlike(namesLike: sample))
        #expect(try matcher(ignore: "[]", targets: #"["re:.*experts.*", "Linear"]"#).decidesAlike(namesLike: sample))
    }

    @Test("a literal holding a digit, a regular expression or an exact name of the same shape may: not alike")
    func notAlike() throws {
        let sample = "model.layers.3.mlp.experts.17.gate_proj"
        #expect(try !matcher(ignore: #"["re:.*layers\\.3\\..*"]"#).decidesAlike(namesLike: sample))
        #expect(try !matcher(ignore: #"["re:.*experts\\.[0-9]+\\.gate.*"]"#).decidesAlike(namesLike: sample))
        #expect(try !matcher(ignore: #"["model.layers.1.mlp.experts.2.gate_proj"]"#).decidesAlike(namesLike: sample))
        #expect(try !matcher(ignore: "[]", targets: #"["model.layers.60.mlp.experts.0.gate_proj"]"#).decidesAlike(namesLike: sample))
        #expect(QuantizationScheme.Matcher.digitRunShape("a1.b22.c") == QuantizationScheme.Matcher.digitRunShape("a7.b3.c"))
        #expect(QuantizationScheme.Matcher.digitRunShape("a1.b") != QuantizationScheme.Matcher.digitRunShape("a.b"))
    }
}

/// The expected tensor list (what inspect, verify, quantize and dequantize expect) chooses groups by the same rule.
@Suite("expected tensors follow the group ranking")
struct ExpectedTensorGroupRankingTests {
    func config(groups: String) throws -> ModelConfig {
        let q = #""quantization_config": {"quant_method": "compressed-tensors", "format": "pack-quantized", "config_groups": {\#(groups)}, "ignore": ["lm_head", "re:.*self_attn.*", "re:.*shared_experts.*", "re:.*mlp\\.(gate|up|gate_up|down)_proj.*"]}"#
        return try ModelConfig.parse(Array("{\"model_type\": \"kimi_k2\", \(textMembers(extra: q))}".utf8))
    }

    func group(_ name: String, _ targets: [String], groupSize: Int) -> String {
        let list = targets.map { "\"\($0.replacingOccurrences(of: "\\", with: "\\\\"))\"" }.joined(separator: ", ")
        return #""\#(name)": {"targets": [\#(list)], "weights": {"num_bits": 4, "type": "int", "symmetric": true, "strategy": "group", "group_size": \#(groupSize)}}"#
    }

    @Test("a class-name group listed first loses to a later exact-name group, and to a later re: group")
    func classListedFirst() throws {
        let exact = "model.layers.2.mlp.experts.7.down_proj"
        let list = try ExpectedTensorList(config: config(groups: [
            group("by_class", ["Linear"], groupSize: 32), group("by_regex", [#"re:.*experts\.6\..*"#], groupSize: 16),
            group("by_name", [exact], groupSize: 8),
        ].joined(separator: ", ")))
        // down_proj: 64 out, 32 in. One scale column per group.
        #expect(list["\(exact).weight_scale"]?.shape == [64, 4])
        #expect(list["\(exact).weight_packed"]?.method == .packQuantized(bits: 4, groupSize: 8, symmetric: true))
        #expect(list["model.layers.2.mlp.experts.6.down_proj.weight_scale"]?.shape == [64, 2])
        #expect(list["model.layers.2.mlp.experts.6.gate_proj.weight_scale"]?.shape == [32, 4], "gate_proj: 64 in, groups of 16")
        #expect(list["model.layers.2.mlp.experts.5.down_proj.weight_scale"]?.shape == [64, 1])
        #expect(list["model.layers.1.mlp.experts.7.down_proj.weight_scale"]?.shape == [64, 1], "only layer 2's expert 7 is named")
    }

    @Test("each module's group is the one its own name gets, whether chosen once per name template or name by name")
    func sharedChoiceAgreesWithPerName() throws {
        let cases: [(label: String, groups: String, ignore: String)] = [
            ("the K2 ignore list", group("g", ["Linear"], groupSize: 32), #"["lm_head", "re:.*self_attn.*", "re:.*shared_experts.*", "re:.*mlp\\.(gate|up|gate_up|down)_proj.*"]"#),
            ("prefix patterns", group("g", ["Linear"], groupSize: 32), #"["re:lm_head", "re:model\\.embed.*"]"#),
            ("a substring holding a digit picks out a layer", group("g", ["Linear"], groupSize: 32), #"["re:.*layers\\.2\\..*"]"#),
            ("a regular expression picks out an expert", group("g", ["Linear"], groupSize: 32), #"["re:.*experts\\.[3-5]\\.up.*"]"#),
            ("an exact name picks out one module", group("g", ["Linear"], groupSize: 32), #"["model.layers.1.mlp.experts.4.gate_proj"]"#),
            ("a regular-expression target", group("g", [#"re:.*experts\.(1|7)\.down_proj$"#], groupSize: 16), "[]"),
        ]
        for (label, groups, ignore) in cases {
            let q = #""quantization_config": {"quant_method": "compressed-tensors", "format": "pack-quantized", "config_groups": {\#(groups)}, "ignore": \#(ignore)}"#
            let config = try ModelConfig.parse(Array("{\"model_type\": \"kimi_k2\", \(textMembers(extra: q))}".utf8))
            let scheme = try #require(config.quantization)
            let list = try ExpectedTensorList(config: config)
            var quantized = 0
            for (i, t) in list.tensors.enumerated() {
                guard let module = t.module else { continue }
                let method = scheme.group(for: module, className: "Linear")?.method
                #expect(list.method(at: i) == method, "\(label): \(t.name)")
                if method != nil { quantized += 1 }
            }
            #expect(quantized > 0, "\(label): something is quantized")
        }
    }

    @Test("a target named by two groups belongs to the last one in the expected list too")
    func lastGroupOwnsTarget() throws {
        let list = try ExpectedTensorList(config: config(groups: [
            group("a", ["Linear"], groupSize: 32), group("b", ["Linear"], groupSize: 16),
        ].joined(separator: ", ")))
        #expect(list["model.layers.1.mlp.experts.0.up_proj.weight_scale"]?.shape == [32, 4])
        #expect(list["model.layers.1.mlp.experts.0.down_proj.weight_scale"]?.shape == [64, 2])
    }

}
