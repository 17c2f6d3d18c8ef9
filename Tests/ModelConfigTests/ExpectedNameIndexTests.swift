import JSONCore
@testable import ModelConfig
import Testing

/// `ExpectedTensorList.position(of:)` reads names against the manifest's patterns instead of a table of every
/// name: it must agree with such a table on every expected name and on names the config does not imply.
@Suite("expected tensors found by name pattern")
struct ExpectedNameIndexTests {
    static let vision = #""vision_config": {"patch_size": 14, "init_pos_emb_height": 4, "init_pos_emb_width": 4, "vt_hidden_size": 32, "vt_intermediate_size": 64, "vt_num_hidden_layers": 2, "merge_kernel_size": [2, 2], "mm_hidden_size": 32, "text_hidden_size": 64}"#
    static let fp8 = #""quantization_config": {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic", "weight_block_size": [128, 128]}"#

    static func configs() throws -> [(String, ModelConfig)] {
        [
            ("flat K2, INT4", try parse("{\"model_type\": \"kimi_k2\", \(textMembers(extra: packQuantized))}")),
            ("K2.5 with vision", try parse("{\"model_type\": \"kimi_k25\", \"text_config\": {\"model_type\": \"kimi_k2\", \(textMembers(extra: packQuantized))}, \(vision)}")),
            ("DeepSeek-V3 FP8", try parse("{\"model_type\": \"deepseek_v3\", \(textMembers(extra: fp8))}")),
            ("DeepSeek-V3 with an MTP layer", try parse("{\"model_type\": \"deepseek_v3\", \(textMembers(extra: "\"num_nextn_predict_layers\": 1"))}")),
        ]
    }

    @Test("every expected name is found at its first position, through the pattern index")
    func everyName() throws {
        for (label, config) in try Self.configs() {
            let list = try ExpectedTensorList(config: config)
            #expect(list.nameIndex.usable, "\(label): the manifest's names are all whole-component patterns")
            var first: [String: Int] = [:]
            for (i, t) in list.tensors.enumerated() where first[t.name] == nil { first[t.name] = i }
            for (i, t) in list.tensors.enumerated() {
                #expect(list.position(of: t.name) == first[t.name], "\(label): \(t.name) at \(i)")
            }
            #expect(list.byName == first, "\(label): the name table agrees")
        }
    }

    @Test("the capacity reserved up front covers the whole list, vision blocks included, for every architecture")
    func estimate() throws {
        for (label, config) in try Self.configs() {
            let list = try ExpectedTensorList(config: config)
            #expect(ExpectedTensorList.estimatedCount(config: config) >= list.tensors.count, "\(label)")
            #expect(ExpectedTensorList.estimatedCount(config: config) <= ExpectedTensorList.maxTensorCount)
        }
    }

    @Test("names the config does not imply are not found, however close to an expected one")
    func unexpectedNames() throws {
        let config = try parse("{\"model_type\": \"kimi_k25\", \"text_config\": {\"model_type\": \"kimi_k2\", \(textMembers(extra: packQuantized))}, \(Self.vision)}")
        let list = try ExpectedTensorList(config: config)
        let base = "language_model.model.layers.1.mlp.experts.0.up_proj.weight_packed"
        #expect(list.position(of: base) != nil)
        for name in [
            "", ".", "language_model.model.layers.01.mlp.experts.0.up_proj.weight_packed",  // leading zero
            "language_model.model.layers.1.mlp.experts.00.up_proj.weight_packed",
            "language_model.model.layers.3.mlp.experts.0.up_proj.weight_packed",  // layer past the last
            "language_model.model.layers.0.mlp.experts.0.up_proj.weight_packed",  // a dense layer
            "language_model.model.layers.1.mlp.experts.8.up_proj.weight_packed",  // expert past the last
            "language_model.model.layers.99999999999999999999.mlp.experts.0.up_proj.weight_packed",
            "language_model.model.layers.1.mlp.experts.0.0.up_proj.weight_packed",  // one number too many
            "language_model.model.layers.1.2.3.4.5.mlp.experts.0.up_proj.weight_packed",
            "language_model.model.layers.-1.mlp.experts.0.up_proj.weight_packed",
            "language_model.model.layers.1.mlp.experts.0.up_proj.weight_packed.",
            "language_model.model.layers.1.mlp.experts.0.up_proj.weight_packe",
            "language_model.model.layers.1.mlp.experts.0.up_proj.weight_packed\u{0}",
            "language_model.model.layers.#.mlp.experts.#.up_proj.weight_packed",
            "mm_projector.proj.1.weight", "mm_projector.proj.02.weight", "vision_tower.encoder.blocks.2.wqkv.weight",
            "model.layers.1.mlp.experts.0.up_proj.weight_packed",  // without the text prefix
            "language_model.model.layers.1.mlp.experts.0.up_proj.weight_packed_ü",
        ] {
            #expect(list.position(of: name) == nil, "\(name)")
            #expect(list[name] == nil, "\(name)")
        }
        #expect(list.position(of: "mm_projector.proj.2.weight") != nil)
        #expect(list.position(of: "vision_tower.encoder.blocks.1.wqkv.bias") != nil)
    }

    @Test("a template whose placeholder is not a whole component leaves the lookup to the name table")
    func partialComponentTemplate() {
        var index = ExpectedNameIndex()
        let whole = index.pattern(NameTemplate("a.{L}.b"), suffix: ".w")
        #expect(whole != nil)
        index.add(pattern: whole, layer: 3, index: nil, position: 0)
        #expect(index.pattern(NameTemplate("a.x{L}.b"), suffix: "") == nil)
        #expect(!index.usable)
        var unrendered = ExpectedNameIndex()
        let p = unrendered.pattern(NameTemplate("a.{L}.b"), suffix: "")
        unrendered.add(pattern: p, layer: nil, index: nil, position: 0)
        #expect(!unrendered.usable, "a placeholder without a value renders as text")
        var ok = ExpectedNameIndex()
        let q = ok.pattern(NameTemplate("a.{L}.b.{E}"), suffix: ".w")
        ok.add(pattern: q, layer: 2, index: 5, position: 7)
        ok.add(pattern: q, layer: 1_000_000, index: 0, position: 8)  // sparse numbering
        ok.finish()
        #expect(ok.usable)
        #expect(ok.position(of: "a.2.b.5.w") == 7)
        #expect(ok.position(of: "a.1000000.b.0.w") == 8)
        #expect(ok.position(of: "a.2.b.4.w") == nil)
    }

    @Test("a match is confirmed from the pattern's own bytes: same skeleton and numbers is not enough")
    func confirmedFromPatternBytes() {
        var index = ExpectedNameIndex()
        // `#` as a literal component hashes like a number: "a.#.5" and "a.5.#" share a skeleton and a number.
        let hash = index.pattern(NameTemplate("a.#.{L}"), suffix: ".w")
        index.add(pattern: hash, layer: 5, index: nil, position: 0)
        // A literal number component must match as written.
        let literal = index.pattern(NameTemplate("p.{L}.proj.2"), suffix: "")
        index.add(pattern: literal, layer: 0, index: nil, position: 1)
        let both = index.pattern(NameTemplate("m.{L}.e.{E}"), suffix: ".weight_packed")
        index.add(pattern: both, layer: 3, index: 12, position: 2)
        index.finish()
        #expect(index.usable)
        #expect(index.position(of: "a.#.5.w") == 0)
        #expect(index.position(of: "a.5.#.w") == nil)
        #expect(index.position(of: "a.#.05.w") == nil)
        #expect(index.position(of: "p.0.proj.2") == 1)
        #expect(index.position(of: "p.0.proj.3") == nil)
        #expect(index.position(of: "p.0.proj.02") == nil)
        #expect(index.position(of: "m.3.e.12.weight_packed") == 2)
        #expect(index.position(of: "m.3.e.12.weight_packet") == nil)
        #expect(index.position(of: "m.3.e.12.weight_packed.") == nil)
        #expect(index.position(of: "m.3.e.12.weight_packe") == nil)
        #expect(index.position(of: "m.12.e.3.weight_packed") == nil)
        #expect(index.position(of: "n.3.e.12.weight_packed") == nil)
    }
}
