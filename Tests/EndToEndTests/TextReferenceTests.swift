import Foundation
import Parity
import TestSupport
import Testing

/// Issue 16's acceptance on the Kimi fixtures, from text: `k2pack logits --text` through the model's own tokenizer
/// (the fixture's tiktoken.model + tokenizer_config.json) against the transformers reference that
/// scripts/fixtures/make_fixtures.py made of the same committed text, cut into the same windows
/// (Fixtures/references/<model>.text.h5:/exact; the windows are `--ctx 32`, no BOS, the tail dropped).
@Suite("Text references of the Kimi fixtures")
struct TextReferenceTests {
    static let text = TestPaths.fixture("references/kimi-text.txt")
    static let context = 32
    static let models = ["k25-tiny", "k2-thinking-tiny"]

    static func reference(_ model: String) -> String { TestPaths.fixture("references/\(model).text.h5") + ":/exact" }

    static func json(_ text: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
    }

    /// The largest |a − b| and its place (window, token, vocabulary index).
    static func largestDifference(_ a: [Float], _ b: [Float], tokens: Int, vocab: Int) -> (value: Float, window: Int, token: Int, index: Int) {
        var worst: (value: Float, at: Int) = (0, 0)
        for i in a.indices where abs(a[i] - b[i]) > worst.value { worst = (abs(a[i] - b[i]), i) }
        let position = worst.at / vocab
        return (worst.value, position / tokens, position % tokens, worst.at % vocab)
    }

    @Test("logits --text --ctx 32 --full: the reference's input_ids exactly and its logits within 1e-4; compare of the model against it: KLD ≤ 1e-9, the same perplexity",
          arguments: TextReferenceTests.models)
    func fromText(_ model: String) throws {
        let dir = TemporaryDirectory()
        let out = dir.path + "/ref.h5"
        let folder = TestPaths.fixture(model)
        let r = try run(["logits", folder, "--text", Self.text, "--ctx", "\(Self.context)", "--out", out, "--full", "--json"])
        #expect(r.status == 0, "\(r.err)")
        let made = try Self.json(r.out)
        let reference = try ReferenceDump(spec: Self.reference(model))
        #expect(reference.batch == .init(sequences: 6, tokens: Self.context))
        #expect(made["windows"] as? Int == reference.batch.sequences, "\(r.out)")
        let written = try ReferenceDump(spec: out)
        #expect(written.batch == reference.batch)
        #expect(written.inputIDs == reference.inputIDs)
        let theirs = try #require(try reference.logits()), ours = try #require(try written.logits())
        #expect(ours.vocab == 768 && theirs.vocab == 768 && ours.values.count == theirs.values.count)
        let worst = Self.largestDifference(ours.values, theirs.values, tokens: Self.context, vocab: ours.vocab)
        print("logits --text \(model): largest |ours − transformers| \(worst.value) at window \(worst.window), token \(worst.token), logit \(worst.index)")
        #expect(worst.value <= 1e-4)

        let compare = try run(["compare", "--json", Self.reference(model), folder])
        #expect(compare.status == 0, "\(compare.err)")
        let stats = try Self.json(compare.out)
        let kld = try #require(stats["kld"] as? [String: Any])
        #expect((kld["max"] as? Double ?? 1) <= 1e-9 && (kld["mean"] as? Double ?? 1) <= 1e-9, "\(compare.out)")
        #expect(stats["positions"] as? Int == 6 * Self.context)
        let pplRef = try #require(stats["ppl_ref"] as? Double), pplTest = try #require(stats["ppl_test"] as? Double)
        let perplexity = try #require(made["perplexity"] as? Double)
        #expect(pplRef.isFinite && pplRef > 1 && abs(pplRef - pplTest) <= 1e-6 * pplRef)
        #expect(abs(perplexity - pplRef) <= 1e-4 * pplRef, "\(r.out) \(compare.out)")
        let plain = try run(["compare", Self.reference(model), folder])
        #expect(plain.status == 0 && plain.out.contains("PPL(ref):") && plain.out.contains("PPL(test):"), "\(plain.out)")
        #expect(Set(try FileManager.default.contentsOfDirectory(atPath: dir.path)) == ["ref.h5"])
    }

    @Test("tokenize <fixture> --text: the reference's ids (with the dropped tail), and --decode gives the text back byte for byte",
          arguments: TextReferenceTests.models)
    func tokenizeRoundTrip(_ model: String) throws {
        let folder = TestPaths.fixture(model)
        let ids = try run(["tokenize", "--json", folder, "--text", Self.text])
        #expect(ids.status == 0, "\(ids.err)")
        let list = try #require(try Self.json(ids.out)["ids"] as? [Int])
        let reference = try ReferenceDump(spec: Self.reference(model))
        #expect(list.count == 211)
        #expect(Array(list.prefix(reference.inputIDs.count)) == reference.inputIDs.map { Int($0) })
        // The text holds "[EOS]": a special id, right after the ranks.
        #expect(list.contains(513) && list.allSatisfy { $0 >= 0 && $0 < 768 })
        let dir = TemporaryDirectory()
        let idsFile = dir.write("ids.json", Array(ids.out.utf8))
        let back = try run(["tokenize", "--decode", "--json", folder, "--text", idsFile])
        #expect(back.status == 0, "\(back.err)")
        let text = try String(contentsOfFile: Self.text, encoding: .utf8)
        #expect(try Self.json(back.out)["text"] as? String == text)
        #expect(text.unicodeScalars.contains("\r") && text.unicodeScalars.contains { $0.value > 0xFFFF })
    }
}
