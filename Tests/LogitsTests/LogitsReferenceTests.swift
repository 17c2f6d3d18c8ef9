import Forward
import Foundation
import ModelStore
import Parity
import ReferenceLogits
import TestSupport
import Testing

/// Fixture models, their dumps' groups and how each group dequantized.
enum LogitsFixtures {
    static let cases: [(model: String, group: String, dequant: Dequantization)] = [
        ("k25-tiny", "/exact", .exact), ("k25-tiny", "/bf16", .bf16), ("k2-thinking-tiny", "/exact", .exact),
        ("k2-thinking-tiny", "/bf16", .bf16), ("deepseek-v3-tiny", "/fp32", .exact),
    ]

    static func dump(_ model: String, _ group: String) -> String {
        TestPaths.fixtures.appendingPathComponent("references/\(model).h5").path + ":" + group
    }

    static func pass(_ model: String, _ dequant: Dequantization) throws -> ForwardPass {
        ForwardPass(weights: try ModelStore.open(TestPaths.fixture(model)).weights(dequant: dequant), threads: 2)
    }

    static func maxAbs(_ a: [Float], _ b: [Float]) -> Float { zip(a, b).reduce(0) { max($0, abs($1.0 - $1.1)) } }

    /// Files in `folder` (to prove nothing partial is left).
    static func files(_ folder: String) -> [String] { (try? FileManager.default.contentsOfDirectory(atPath: folder).sorted()) ?? [] }
}

@Suite("Token windows")
struct TokenWindowTests {
    @Test("consecutive windows, the tail dropped; with a BOS token each window starts with it")
    func cut() throws {
        let w = try TokenWindows.cut(Array(10..<21), context: 4, bos: nil, source: "t.txt")
        #expect(w.windows == 2 && w.tokens == 4 && w.droppedTokens == 3)
        #expect(w.ids == [10, 11, 12, 13, 14, 15, 16, 17])
        let b = try TokenWindows.cut(Array(10..<21), context: 4, bos: 99, source: "t.txt")
        #expect(b.windows == 3 && b.droppedTokens == 2)
        #expect(b.ids == [99, 10, 11, 12, 99, 13, 14, 15, 99, 16, 17, 18])
        let exact = try TokenWindows.cut(Array(0..<8), context: 8, bos: nil, source: "t.txt")
        #expect(exact.windows == 1 && exact.droppedTokens == 0)
    }

    @Test("refused: --ctx 0, --ctx larger than the text, --ctx 1 with --bos", arguments: [
        (0, false, LogitsError.contextZero, "--ctx 0: a window needs at least one token"),
        (12, false, LogitsError.contextTooLarge(context: 12, tokens: 11, source: "t.txt"),
         "--ctx 12 is larger than the 11 tokens of t.txt: not one whole window (give a smaller --ctx or a longer text)"),
        (13, true, LogitsError.contextTooLarge(context: 13, tokens: 12, source: "t.txt"),
         "--ctx 13 is larger than the 12 tokens of t.txt: not one whole window (give a smaller --ctx or a longer text)"),
        (1, true, LogitsError.bosLeavesNoText, "--ctx 1 with --bos leaves no room for a text token after the BOS token: give --ctx 2 or more"),
    ])
    func refusals(_ context: Int, _ bos: Bool, _ error: LogitsError, _ message: String) {
        #expect(throws: error) { try TokenWindows.cut(Array(0..<11), context: context, bos: bos ? 99 : nil, source: "t.txt") }
        #expect(error.description == message)
    }

    @Test("an id outside the model's vocabulary is refused with its window and place")
    func outsideVocabulary() throws {
        let w = try TokenWindows.cut([1, 2, 3, 4, 5, 300, 7, 8], context: 4, bos: nil, source: "t.txt")
        let error = LogitsError.idOutsideVocabulary(source: "t.txt", window: 1, token: 1, id: 300, vocabulary: 256)
        #expect(throws: error) { try w.check(vocabulary: 256) }
        #expect(error.description == "t.txt: token id 300 at window 1, token 1 is outside the model's vocabulary of 256")
        // A share names the window's number in the whole input.
        #expect(throws: error) { try w.share(rank: 1, world: 2).check(vocabulary: 256) }
    }

    @Test("a rank's share is every world-th window; a bad rank or an empty share is refused")
    func shares() throws {
        let w = try TokenWindows.cut(Array(0..<10), context: 2, bos: nil, source: "t.txt")
        let s = try w.share(rank: 1, world: 3)
        #expect(s.indices == [1, 4] && s.ids == [2, 3, 8, 9] && s.windows == 2)
        #expect(throws: LogitsError.rank(rank: 3, world: 3)) { try w.share(rank: 3, world: 3) }
        #expect(LogitsError.rank(rank: 3, world: 3).description == "--rank 3 --world 3: expected 0 ≤ rank < world")
        #expect(throws: LogitsError.emptyShare(rank: 6, world: 7, windows: 5)) { try w.share(rank: 6, world: 7) }
        #expect(LogitsError.emptyShare(rank: 6, world: 7, windows: 5).description == "rank 6 of 7 has no window of the 5 (every 7-th window from window 6)")
    }

    @Test("--ctx with --ids must be the dump's window length")
    func dumpContext() throws {
        let dump = try ReferenceDump(spec: LogitsFixtures.dump("k25-tiny", "/exact"))
        #expect(try TokenWindows.of(dump, context: nil).ids == dump.inputIDs)
        #expect(try TokenWindows.of(dump, context: 8).windows == 2)
        let error = LogitsError.contextMismatch(context: 4, dump: dump.label, tokens: 8)
        #expect(throws: error) { try TokenWindows.of(dump, context: 4) }
        #expect(error.description.hasSuffix("k25-tiny.h5:/exact, whose windows are 8 tokens: leave --ctx out or give 8"))
        #expect(throws: LogitsError.contextZero) { try TokenWindows.of(dump, context: 0) }
    }
}

@Suite("Reference logits")
struct LogitsReferenceTests {
    @Test("--full on a dump's input_ids reproduces its logits within 1e-4, and compare of the model against it gives KLD ≤ 1e-9",
          arguments: 0..<5)
    func reproducesDumps(_ index: Int) throws {
        let (model, group, dequant) = LogitsFixtures.cases[index]
        let dump = try ReferenceDump(spec: LogitsFixtures.dump(model, group))
        let pass = try LogitsFixtures.pass(model, dequant)
        let dir = TemporaryDirectory()
        let out = dir.path + "/ref.h5:/mine"
        let result = try LogitsReference.make(
            pass: pass, input: try TokenWindows.of(dump, context: nil), form: .full, output: out, inputs: [TestPaths.fixture(model)], memoryBudget: 1 << 30)
        #expect(result.windows == 2 && result.tokens == 8 && result.predictions == 14)
        let written = try ReferenceDump(spec: out)
        #expect(written.inputIDs == dump.inputIDs)
        let ours = try #require(try written.logits())
        let theirs = try #require(try dump.logits())
        let difference = LogitsFixtures.maxAbs(ours.values, theirs.values)
        print("logits --full \(model)\(group): max-abs \(difference) against the transformers dump")
        #expect(ours.vocab == theirs.vocab && difference <= 1e-4)
        // The model against its own reference: the pass compare runs (layer-major, one window per batch).
        let again = try LayerMajorForward(pass: pass).logits(ids: written.inputIDs, windows: 2, tokens: 8)
        let stats = try LogitStatistics(ids: written.inputIDs, sequences: 2, tokens: 8, reference: ours.values, test: again, vocab: ours.vocab)
        #expect(stats.kld.max <= 1e-9 && stats.kld.mean <= 1e-9)
        #expect(abs(stats.perplexityReference - result.perplexity) <= 1e-9 * result.perplexity)
        #expect(LogitsFixtures.files(dir.path) == ["ref.h5"])
    }

    @Test("the compact form: compare against it matches the full form's statistics (K covers the vocabulary: exact)")
    func compactExact() throws {
        let dump = try ReferenceDump(spec: LogitsFixtures.dump("k25-tiny", "/exact"))
        let pass = try LogitsFixtures.pass("k25-tiny", .exact)
        let dir = TemporaryDirectory()
        let input = try TokenWindows.of(dump, context: nil)
        let full = try LogitsReference.make(pass: pass, input: input, form: .full, output: dir.path + "/full.h5", inputs: [], memoryBudget: 1 << 30)
        let compact = try LogitsReference.make(
            pass: pass, input: input, form: .compact(k: 10_000), output: dir.path + "/compact.h5", inputs: [], memoryBudget: 1 << 30)
        let vocab = try FixtureRecord.vocabularySize("k25-tiny")
        #expect(compact.topK == vocab && abs(compact.perplexity - full.perplexity) <= 1e-12 * full.perplexity)
        let ref = try ReferenceDump(spec: dir.path + "/compact.h5")
        let stored = try #require(try CompactLogits.read(ref, vocab: vocab))
        let fullRef = try #require(try ReferenceDump(spec: dir.path + "/full.h5").logits())
        // The test: the bf16 dump's logits.
        let test = try #require(try ReferenceDump(spec: LogitsFixtures.dump("k25-tiny", "/bf16")).logits()).values
        let a = try LogitStatistics(ids: dump.inputIDs, sequences: 2, tokens: 8, reference: fullRef.values, test: test, vocab: vocab)
        let b = try LogitStatistics(ids: dump.inputIDs, sequences: 2, tokens: 8, reference: stored, test: .values(test, vocab: vocab, label: "test"))
        #expect(abs(a.kld.mean - b.kld.mean) <= 1e-12 + 1e-9 * a.kld.mean)
        #expect(abs(a.deltaP.mean - b.deltaP.mean) <= 1e-12)
        #expect(a.sameTop1 == b.sameTop1 && a.top5Overlap == b.top5Overlap)
        #expect(abs(a.perplexityTest - b.perplexityTest) <= 1e-12 * a.perplexityTest)
        #expect(abs(a.perplexityReference - b.perplexityReference) <= 1e-12 * a.perplexityReference)
    }

    @Test("hidden states that do not fit --memory wait in a temporary file: the same logits, nothing left behind")
    func spilled() throws {
        let pass = try LogitsFixtures.pass("k25-tiny", .exact)
        let dir = TemporaryDirectory()
        let input = try TokenWindows.cut(ModelAgreement.probeIDs(count: 96, vocab: 256).map { Int($0) }, context: 8, bos: nil, source: "t")
        let config = pass.forward
        let inMemory = try #require(LogitsReference.estimatedBytes(config: config, windows: 12, tokens: 8, form: .compact(k: 16), windowsPerBatch: 1))
        let spilled = try #require(LogitsReference.estimatedBytes(config: config, windows: 12, tokens: 8, form: .compact(k: 16), windowsPerBatch: 1, spilled: true))
        #expect(spilled < inMemory)
        let a = try LogitsReference.make(pass: pass, input: input, form: .full, output: dir.path + "/a.h5", inputs: [], memoryBudget: 1 << 30)
        let b = try LogitsReference.make(
            pass: pass, input: input, form: .full, output: dir.path + "/b.h5", inputs: [],
            memoryBudget: try #require(LogitsReference.estimatedBytes(config: config, windows: 12, tokens: 8, form: .full, windowsPerBatch: 1, spilled: true)))
        #expect(!a.spilled && b.spilled)
        #expect(a.perplexity == b.perplexity)
        #expect(try ReferenceDump(spec: dir.path + "/a.h5").logits()?.values == ReferenceDump(spec: dir.path + "/b.h5").logits()?.values)
        #expect(LogitsFixtures.files(dir.path) == ["a.h5", "b.h5"])
        // The driver alone, two windows per batch: spilled or not, the same arithmetic.
        let together = try LayerMajorForward(pass: pass, windowsPerBatch: 2).logits(ids: input.ids, windows: 12, tokens: 8)
        let viaFile = try LayerMajorForward(pass: pass, windowsPerBatch: 2, spillFolder: dir.path).logits(ids: input.ids, windows: 12, tokens: 8)
        #expect(together == viaFile)
        #expect(LogitsFixtures.files(dir.path) == ["a.h5", "b.h5"])
        #expect(throws: ForwardError.io("/nonexistent-k2pack: cannot create a temporary file for the activations: No such file or directory")) {
            try LayerMajorForward(pass: pass, spillFolder: "/nonexistent-k2pack").logits(ids: input.ids, windows: 12, tokens: 8)
        }
    }

    @Test("attributes are written on the output's group, or on the root")
    func attributes() throws {
        let pass = try LogitsFixtures.pass("k25-tiny", .exact)
        let dir = TemporaryDirectory()
        let input = try TokenWindows.cut(Array(0..<16), context: 8, bos: nil, source: "t")
        for out in [dir.path + "/a.h5:/mine", dir.path + "/b.h5"] {
            _ = try LogitsReference.make(
                pass: pass, input: input, form: .compact(k: 16), output: out, inputs: [], memoryBudget: 1 << 30, attributes: ["dequant": "exact"])
            #expect(try ReferenceDump(spec: out).dequant == "exact")
        }
        let file = try HDF5File.create(dir.path + "/c.h5")
        #expect(throws: HDF5File.HDF5Error(path: dir.path + "/c.h5", reason: "/nope: cannot write the attribute dequant")) {
            try file.writeStringAttribute("dequant", "exact", of: "/nope")
        }
    }

    @Test("the same content gives the same file bytes, whenever it is written (no HDF5 object times)")
    func sameBytes() throws {
        let pass = try LogitsFixtures.pass("k25-tiny", .exact)
        let dir = TemporaryDirectory()
        let input = try TokenWindows.cut(Array(0..<16), context: 8, bos: nil, source: "t")
        for name in ["a", "b"] {
            if name == "b" { Thread.sleep(forTimeInterval: 1.1) }  // a second later: a stored time would differ
            _ = try LogitsReference.make(
                pass: pass, input: input, form: .full, output: dir.path + "/\(name).h5:/g", inputs: [], memoryBudget: 1 << 30, attributes: ["dequant": "exact"])
        }
        #expect(try Data(contentsOf: URL(fileURLWithPath: dir.path + "/a.h5")) == Data(contentsOf: URL(fileURLWithPath: dir.path + "/b.h5")))
    }

    /// A pass that fails at one layer (a read error in the middle of a run).
    final class FailingPass: LanguageModelPass {
        let inner: ForwardPass
        let failAt: Int
        init(_ inner: ForwardPass, failAt: Int) { self.inner = inner; self.failAt = failAt }
        var forward: ForwardConfig { inner.forward }
        var dequant: Dequantization { inner.dequant }
        func embed(_ ids: [Int32]) throws(ForwardError) -> [Float] { try inner.embed(ids) }
        func layer(_ index: Int, input h: [Float], batch: ForwardPass.Batch) throws(ForwardError) -> ForwardPass.LayerResult {
            try inner.layer(index, input: h, batch: batch)
        }
        func finalNorm(_ h: [Float]) throws(ForwardError) -> [Float] { try inner.finalNorm(h) }
        func logits(_ normed: [Float]) throws(ForwardError) -> [Float] { try inner.logits(normed) }
        func layerGroups(_ index: Int, groups: [[Float]], batches: [ForwardPass.Batch], release: Bool) throws(ForwardError) -> [[Float]] {
            if index == failAt { throw .io("layer \(index): read failed") }
            return try inner.layerGroups(index, groups: groups, batches: batches, release: release)
        }
    }

    @Test("a run that fails in the middle leaves nothing, spilled or not", arguments: [false, true])
    func failureLeavesNothing(_ spill: Bool) throws {
        let pass = FailingPass(try LogitsFixtures.pass("k25-tiny", .exact), failAt: 1)
        let dir = TemporaryDirectory()
        let input = try TokenWindows.cut(Array(0..<32), context: 8, bos: nil, source: "t")
        let budget = spill
            ? try #require(LogitsReference.estimatedBytes(config: pass.forward, windows: 4, tokens: 8, form: .full, windowsPerBatch: 1, spilled: true))
            : 1 << 30
        #expect(throws: ForwardError.io("layer 1: read failed")) {
            try LogitsReference.make(pass: pass, input: input, form: .full, output: dir.path + "/ref.h5", inputs: [], memoryBudget: budget)
        }
        #expect(LogitsFixtures.files(dir.path).isEmpty)
    }

    @Test("nothing is written when the run is refused: ids outside the vocabulary, over the memory budget, --top-k too small")
    func refusedLeavesNothing() throws {
        let pass = try LogitsFixtures.pass("k25-tiny", .exact)
        let dir = TemporaryDirectory()
        let out = dir.path + "/ref.h5"
        let vocab = try FixtureRecord.vocabularySize("k25-tiny")
        let outside = try TokenWindows.cut([1, 2, 3, vocab, 5, 6], context: 3, bos: nil, source: "t.txt")
        #expect(throws: LogitsError.idOutsideVocabulary(source: "t.txt", window: 1, token: 0, id: vocab, vocabulary: vocab)) {
            try LogitsReference.make(pass: pass, input: outside, form: .full, output: out, inputs: [], memoryBudget: 1 << 30)
        }
        let input = try TokenWindows.cut(Array(0..<64), context: 16, bos: nil, source: "t.txt")
        let needed = LogitsReference.estimatedBytes(config: pass.forward, windows: 4, tokens: 16, form: .full, windowsPerBatch: 1, spilled: true)
        let error = LogitsError.memory(needed: needed, budget: 1000, windows: 4, tokens: 16)
        #expect(throws: error) { try LogitsReference.make(pass: pass, input: input, form: .full, output: out, inputs: [], memoryBudget: 1000) }
        #expect(error.description.hasPrefix("4 windows of 16 tokens need about "))
        #expect(error.description.hasSuffix(", over the --memory budget of 1000 B: use fewer or shorter windows, the compact form (no --full), or a larger --memory"))
        #expect(throws: LogitsError.topK(4, minimum: 5)) {
            try LogitsReference.make(pass: pass, input: input, form: .compact(k: 4), output: out, inputs: [], memoryBudget: 1 << 30)
        }
        #expect(LogitsError.topK(4, minimum: 5).description == "--top-k 4: expected at least 5 (compare's top-5 overlap needs five)")
        #expect(LogitsFixtures.files(dir.path).isEmpty)
    }
}
