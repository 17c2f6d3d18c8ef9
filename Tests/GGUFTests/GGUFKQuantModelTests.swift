import Checkpoint
import Forward
import Foundation
import GGUF
import GGUFModel
import Parity
import Testing
import TestSupport

/// `kquant-tiny.K-mix` / `.IQ-mix` (scripts/fixtures/make_gguf_kquants.py): a tiny deepseek2 model whose matrices
/// ggml's own quantizer (`ggml_quantize_chunk`, through llama-cpp-python's bundled library) stored in every K-,
/// TQ- and IQ-type, with gguf-py's dequantization hashed per tensor and transformers' float64 logits of it.
@Suite("GGUF K- and IQ-type models (ggml's quantizer)")
struct GGUFKQuantModelTests {
    static let expectedPath = TestPaths.fixture("gguf-models/kquants.expected.json")
    static let references = TestPaths.fixture("references/gguf-kquants.h5")
    static let files = ["kquant-tiny.K-mix", "kquant-tiny.IQ-mix"]

    static func expected() throws -> [String: Any] {
        let data = try Data(contentsOf: URL(fileURLWithPath: expectedPath))
        let root = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        return try #require(root["files"] as? [String: Any])
    }

    static func record(_ name: String) throws -> [String: Any] {
        try #require(try expected()[name + ".gguf"] as? [String: Any], "\(name).gguf in kquants.expected.json")
    }

    @Test("the two files hold every K-, TQ- and IQ-type ggml quantizes")
    func coverage() throws {
        var types = Set<String>()
        for name in Self.files {
            let file = try GGUFFile(path: TestPaths.fixture("gguf-models/\(name).gguf"))
            types.formUnion(file.tensors.map(\.type.name))
        }
        let wanted = ["Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "TQ1_0", "TQ2_0", "IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS",
                      "IQ2_S", "IQ3_XXS", "IQ3_S", "IQ4_NL", "IQ4_XS"]
        #expect(Set(wanted).isSubset(of: types), "missing \(Set(wanted).subtracting(types).sorted())")
    }

    /// Every tensor of both files dequantizes to gguf-py's float32 values bit for bit (compared by SHA-256 of the
    /// float32 bytes, the hashes the script recorded).
    @Test("every tensor dequantizes bit-identical to gguf-py (SHA-256 of the float32 values)", arguments: files)
    func dequantizationMatchesGGUFPy(name: String) throws {
        let file = try GGUFFile(path: TestPaths.fixture("gguf-models/\(name).gguf"))
        let tensors = try #require(try Self.record(name)["tensors"] as? [String: [String: Any]])
        #expect(tensors.count == file.tensors.count, "\(name): \(file.tensors.count) tensors, the record lists \(tensors.count)")
        for t in file.tensors {
            let entry = try #require(tensors[t.name], "\(name): \(t.name) not recorded")
            #expect(entry["type"] as? String == t.type.name, "\(name): \(t.name) is \(t.type.name), recorded \(entry["type"] ?? "nil")")
            let values = try GGUFDequantizer.dequantize(t, of: file)
            #expect(values.count == entry["elements"] as? Int, "\(name): \(t.name) gives \(values.count) values")
            let hash = values.withUnsafeBytes { SHA256Digest.hex(of: $0) }
            #expect(hash == entry["sha256"] as? String, "\(name): tensor \(t.name) (\(t.type.name)) differs from gguf-py's dequantization")
        }
    }

    /// compare against the unquantized model's float32 reference: the float64 oracle's logits, its mean KLD and its
    /// same-top-1, within 1 % relative.
    @Test("compare: mean KLD and same top-1 as the float64 oracle (1 %), its logits within 1e-5", arguments: files)
    func statistics(name: String) throws {
        let record = try Self.record(name)
        let kld = try #require(record["mean_kld"] as? Double)
        let top1 = try #require(record["same_top1"] as? Double)
        try expectQuantStatistics(
            gguf: TestPaths.fixture("gguf-models/\(name).gguf"), reference: Self.references + ":/fp32",
            oracle: Self.references + ":/" + name, kld: kld, top1: top1, label: name)
    }

    @Test("parity of the K-mix file passes layer by layer against a dump of its dequantized weights")
    func parity() throws {
        let ref = try ReferenceDump(spec: Self.references + ":/kquant-tiny.K-mix")
        let pass = ForwardPass(weights: try ForwardModel.open(TestPaths.fixture("gguf-models/kquant-tiny.K-mix.gguf")).weights, threads: 2)
        let report = try ParityRun.run(model: "kquant-tiny.K-mix.gguf", forward: pass, reference: ref)
        #expect(report.pass, "\(report.renderText())")
    }
}
