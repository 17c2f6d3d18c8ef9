import Foundation
import JSONCore
@testable import ModelConfig
import Testing

@Suite("Manifest when rules")
struct SpecConditionTests {
    @Test("a rule parses to key, value and operator, and holds as transformers' config reads")
    func parsesAndHolds() throws {
        let tied = try SpecCondition(parsing: "tie_word_embeddings != true", manifest: "m")
        #expect(tied == SpecCondition(key: "tie_word_embeddings", value: "true", negated: true))
        #expect(tied.holds { _ in .bool(false) })
        #expect(!tied.holds { _ in .bool(true) })
        let method = try SpecCondition(parsing: "topk_method == noaux_tc", manifest: "m")
        #expect(method.holds { _ in .string("noaux_tc") })
        #expect(!method.holds { _ in nil }, "an absent key reads as null")
    }

    @Test("an unparseable rule is an error naming the manifest, not silently true",
          arguments: ["topk_method = noaux_tc", "topk_method", "a == b == c", " == x", "key != ", "a == b != c", "a == two words"])
    func refused(rule: String) {
        #expect(throws: ConfigError.manifest(name: "deepseek_v3_text", reason: "when rule \"\(rule)\" is not `key == value` or `key != value`")) {
            _ = try SpecCondition(parsing: rule, manifest: "deepseek_v3_text")
        }
    }

    @Test("a manifest with a bad when rule is refused when it loads")
    func manifestRefused() throws {
        let json = #"[{"tensor": "x.weight", "role": "final_norm", "repeat": "once", "shape": ["hidden_size"], "tp": "replicate", "when": "tie_word_embeddings"}]"#
        let specs = try JSONDecoder().decode([TensorSpec].self, from: Data(json.utf8))
        #expect(throws: ConfigError.manifest(name: "bad", reason: "when rule \"tie_word_embeddings\" is not `key == value` or `key != value`")) {
            _ = try ManifestLibrary.checked(specs, manifest: "bad")
        }
        // Every shipped manifest's rules parse.
        for name in try ManifestLibrary.architectures().flatMap({ $0.parts.map(\.specs) }) {
            _ = try ManifestLibrary.specs(named: name)
        }
    }
}
