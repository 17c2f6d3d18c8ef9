import Foundation
import Parity
import TestSupport
import Testing

@Suite("k2pack logits")
struct LogitsCommandTests {
    static func dump(_ model: String, _ group: String) -> String {
        TestPaths.fixtures.appendingPathComponent("references/\(model).h5").path + ":" + group
    }

    static func json(_ text: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
    }

    /// A copy of a fixture model carrying a byte-level Kimi tokenizer instead of its own: the 256 single bytes as
    /// ranks 0…255 (no merges), so a text's ids are its bytes; the specials from 256 on.
    static func modelWithByteTokenizer(_ dir: TemporaryDirectory, _ fixture: String = "k2-thinking-tiny") -> String {
        let model = dir.copy(fixture: fixture)
        let ranks = (0..<256).map { Data([UInt8($0)]).base64EncodedString() + " \($0)" }.joined(separator: "\n") + "\n"
        try! Data(ranks.utf8).write(to: URL(fileURLWithPath: model + "/tiktoken.model"))
        let config = #"{"added_tokens_decoder": {"256": {"content": "[BOS]"}, "257": {"content": "[EOS]"}}, "bos_token": "[BOS]", "eos_token": "[EOS]"}"#
        try! Data(config.utf8).write(to: URL(fileURLWithPath: model + "/tokenizer_config.json"))
        return model
    }

    @Test("--full --ids reproduces the dump, compare of the model against it gives KLD ≤ 1e-9; the compact form is accepted by compare")
    func idsRoundTrip() throws {
        let dir = TemporaryDirectory()
        let model = TestPaths.fixture("k25-tiny")
        let full = dir.path + "/full.h5:/mine"
        let r = try run(["logits", model, "--ids", Self.dump("k25-tiny", "/exact"), "--out", full, "--full", "--quiet"])
        #expect(r.status == 0, "\(r.err)")
        #expect(r.out.hasPrefix("perplexity ") && r.out.contains("over 14 predictions (2 windows of 8 tokens)"), "\(r.out)")
        // Against the transformers dump (logits within 1e-4): compare's max-free statistics and parity's numbers.
        let reference = try #require(try ReferenceDump(spec: Self.dump("k25-tiny", "/exact")).logits()).values
        let ours = try #require(try ReferenceDump(spec: full).logits()).values
        #expect(zip(reference, ours).allSatisfy { abs($0 - $1) <= 1e-4 })
        let own = try run(["compare", "--json", full, model])
        #expect(own.status == 0, "\(own.err)")
        let kld = try #require(try Self.json(own.out)["kld"] as? [String: Any])
        #expect((kld["max"] as? Double ?? 1) <= 1e-9, "\(own.out)")
        // The test model's logits through a temporary file (over --memory): the same report.
        let onDisk = try run(["compare", "--json", full, model, "--memory", "1K"])
        #expect(onDisk.status == 0 && onDisk.out == own.out, "\(onDisk.err)")
        let bf16 = try run(["compare", "--json", Self.dump("k25-tiny", "/bf16"), model])
        let bf16OnDisk = try run(["compare", "--json", Self.dump("k25-tiny", "/bf16"), model, "--memory", "1K"])
        #expect(bf16.status == 0 && bf16OnDisk.out == bf16.out, "\(bf16OnDisk.err)")

        let compact = dir.path + "/compact.h5"
        let c = try run(["logits", model, "--ids", Self.dump("k25-tiny", "/exact"), "--out", compact, "--json", "--top-k", "16"])
        #expect(c.status == 0, "\(c.err)")
        let made = try Self.json(c.out)
        #expect(made["form"] as? String == "compact" && made["top_k"] as? Int == 16)
        let againstModel = try run(["compare", "--json", compact, model])
        #expect(againstModel.status == 0, "\(againstModel.err)")
        let reported = try Self.json(againstModel.out)
        #expect(reported["ref_top_k"] as? Int == 16 && (reported["ref_tail_mass"] as? Double ?? 0) > 0.5, "\(againstModel.out)")
        #expect((try Self.json(againstModel.out)["kld"] as? [String: Any])?["max"] as? Double ?? 1 <= 1e-9)
        let againstDump = try run(["compare", compact, Self.dump("k25-tiny", "/bf16")])
        #expect(againstDump.status == 0, "\(againstDump.err)")
        #expect(againstDump.out.contains("Compact reference: top 16, mean tail mass "), "\(againstDump.out)")
        #expect(Set(try FileManager.default.contentsOfDirectory(atPath: dir.path)) == ["full.h5", "compact.h5"])
    }

    @Test("--shards: a shard set's pass makes the dump's logits too")
    func shardSet() throws {
        let dir = TemporaryDirectory()
        let set = dir.path + "/set"
        let shard = try run(["shard", TestPaths.fixture("k25-tiny"), set, "--gpus", "4", "--tp", "2", "--quiet"])
        #expect(shard.status == 0, "\(shard.err)")
        let out = dir.path + "/ref.h5"
        let r = try run(["logits", "--shards", set, "--ids", Self.dump("k25-tiny", "/exact"), "--out", out, "--full", "--quiet"])
        #expect(r.status == 0, "\(r.err)")
        let reference = try #require(try ReferenceDump(spec: Self.dump("k25-tiny", "/exact")).logits()).values
        let ours = try #require(try ReferenceDump(spec: out).logits()).values
        #expect(ours.count == reference.count && zip(reference, ours).allSatisfy { abs($0 - $1) <= 1e-4 })
    }

    @Test("--text: the model's own tokenizer, windows of --ctx, perplexity printed; --rank/--world and RANK/WORLD_SIZE take every N-th window")
    func text() throws {
        let dir = TemporaryDirectory()
        let model = Self.modelWithByteTokenizer(dir)
        let text = dir.write("t.txt", Array("The quick brown fox jumps over the lazy dog. 0123456789".utf8))
        let out = dir.path + "/ref.h5"
        let r = try run(["logits", model, "--text", text, "--out", out, "--ctx", "16", "--full", "--json"])
        #expect(r.status == 0, "\(r.err)")
        #expect(try Self.json(r.out)["windows"] as? Int == 3)
        let written = try ReferenceDump(spec: out)
        #expect(written.batch == .init(sequences: 3, tokens: 16))
        #expect(written.inputIDs.prefix(4) == [84, 104, 101, 32])  // "The " as bytes
        let part = dir.path + "/part1.h5"
        let p = try run(["logits", model, "--text", text, "--out", part, "--ctx", "16", "--full", "--quiet"], environment: ["RANK": "1", "WORLD_SIZE": "2"])
        #expect(p.status == 0, "\(p.err)")
        let share = try ReferenceDump(spec: part)
        #expect(share.inputIDs == Array(written.inputIDs[16..<32]))
        let shareLogits = try #require(try share.logits()).values, allLogits = try #require(try written.logits()).values
        let vocab = try FixtureRecord.vocabularySize("k2-thinking-tiny")
        #expect(shareLogits == Array(allLogits[(16 * vocab)..<(32 * vocab)]))
        let flag = try run(["logits", model, "--text", text, "--out", part, "--ctx", "16", "--full", "--rank", "1", "--world", "2", "--quiet"])
        #expect(flag.status == 0)
        #expect(try ReferenceDump(spec: part).inputIDs == share.inputIDs)
    }

    @Test("parts made by --rank/--world combine in compare --part: the statistics of the whole, exactly", arguments: [true, false])
    func parts(_ full: Bool) throws {
        let dir = TemporaryDirectory()
        let model = Self.modelWithByteTokenizer(dir)
        let text = dir.write("t.txt", Array("The quick brown fox jumps over the lazy dog. 0123456789".utf8))
        let form = full ? ["--full"] : ["--top-k", "16"]
        for (name, share) in [("whole", [String]()), ("part0", ["--rank", "0", "--world", "2"]), ("part1", ["--rank", "1", "--world", "2"])] {
            let r = try run(["logits", model, "--text", text, "--out", dir.path + "/\(name).h5", "--ctx", "16", "--quiet"] + form + share)
            #expect(r.status == 0, "\(r.err)")
        }
        // Another model as the test, so that the divergences are not zero.
        let test = TestPaths.fixture("k25-tiny")
        let whole = try run(["compare", "--json", dir.path + "/whole.h5", test])
        let parts = try run(["compare", "--json", dir.path + "/part0.h5", test, "--part", dir.path + "/part1.h5"])
        #expect(whole.status == 0 && parts.status == 0, "\(whole.err)\(parts.err)")
        let a = try Self.json(whole.out), b = try Self.json(parts.out)
        #expect(a["positions"] as? Int == 48 && b["positions"] as? Int == 48)
        let ka = try #require(a["kld"] as? [String: Any]), kb = try #require(b["kld"] as? [String: Any])
        #expect((ka["mean"] as? Double ?? 0) > 1e-6)
        for key in ["max", "min"] { #expect(ka[key] as? Double == kb[key] as? Double, "\(key)") }
        #expect(ka["percentiles"] as? [String: Double] == kb["percentiles"] as? [String: Double])
        for key in ["mean", "stderr"] {
            let x = try #require(ka[key] as? Double), y = try #require(kb[key] as? Double)
            #expect(abs(x - y) <= 1e-12 * abs(x), "\(key)")
        }
        for key in ["ppl_ref", "ppl_test", "same_top1", "top5_overlap"] {
            let x = try #require(a[key] as? Double), y = try #require(b[key] as? Double)
            #expect(abs(x - y) <= 1e-12 * abs(x), "\(key)")
        }
        let dumpTest = try run(["compare", dir.path + "/part0.h5", dir.path + "/whole.h5", "--part", dir.path + "/part1.h5"])
        #expect(dumpTest.status != 0 && dumpTest.err.contains("--part needs a model (a folder or a GGUF file) as the test"), "\(dumpTest.err)")
    }

    @Test("refused, each by name, nothing written: no tokenizer files, text not UTF-8, ids outside the vocabulary, --ctx 0 or too large")
    func refusals() throws {
        let dir = TemporaryDirectory()
        let outs = dir.path + "/out"
        try FileManager.default.createDirectory(atPath: outs, withIntermediateDirectories: true)
        let out = outs + "/ref.h5"
        let text = dir.write("t.txt", Array("hello world".utf8))

        let bare = dir.copy(fixture: "deepseek-v3-tiny")
        let none = try run(["logits", bare, "--text", text, "--out", out])
        #expect(none.status != 0 && none.err.contains("\(bare): no tiktoken.model"), "\(none.err)")

        let model = Self.modelWithByteTokenizer(dir)
        let bad = dir.write("bad.txt", [0x68, 0x69, 0xC3, 0x28])
        let notUTF8 = try run(["logits", model, "--text", bad, "--out", out])
        #expect(notUTF8.status != 0 && notUTF8.err.contains("\(bad): not UTF-8 at byte offset 2 (byte 0xc3)"), "\(notUTF8.err)")

        // A tokenizer larger than the model (Fixtures/tokenizer over k25-tiny): its BOS id, right after its ranks, is
        // outside the model's vocabulary.
        let larger = dir.copy(fixture: "k25-tiny")
        for file in ["tiktoken.model", "tokenizer_config.json"] {
            try FileManager.default.removeItem(atPath: larger + "/" + file)
            try FileManager.default.copyItem(atPath: TestPaths.fixture("tokenizer/" + file), toPath: larger + "/" + file)
        }
        let bos = try String(contentsOfFile: larger + "/tiktoken.model", encoding: .utf8).split(separator: "\n").count
        let vocab = try FixtureRecord.vocabularySize("k25-tiny")
        #expect(bos >= vocab)
        let outside = try run(["logits", larger, "--text", text, "--out", out, "--ctx", "4", "--bos"])
        #expect(outside.status != 0 && outside.err.contains("\(text): token id \(bos) at window 0, token 0 is outside the model's vocabulary of \(vocab)"), "\(outside.err)")

        let zero = try run(["logits", model, "--text", text, "--out", out, "--ctx", "0"])
        #expect(zero.status != 0 && zero.err.contains("--ctx 0: a window needs at least one token"), "\(zero.err)")
        let large = try run(["logits", model, "--text", text, "--out", out, "--ctx", "12"])
        #expect(large.status != 0 && large.err.contains("--ctx 12 is larger than the 11 tokens of \(text)"), "\(large.err)")
        let idsContext = try run(["logits", model, "--ids", Self.dump("k2-thinking-tiny", "/exact"), "--out", out, "--ctx", "4"])
        #expect(idsContext.status != 0 && idsContext.err.contains("whose windows are 8 tokens: leave --ctx out or give 8"), "\(idsContext.err)")
        let memory = try run(["logits", model, "--text", text, "--out", out, "--ctx", "4", "--memory", "1K"])
        #expect(memory.status != 0 && memory.err.contains("over the --memory budget of 1.00 KiB"), "\(memory.err)")
        let badMemory = try run(["logits", model, "--text", text, "--out", out, "--memory", "lots"])
        #expect(badMemory.status != 0 && badMemory.err.contains("--memory lots: expected a positive size such as 24G, 512M or a number of bytes"), "\(badMemory.err)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: outs).isEmpty)
    }

    @Test("--resume: a whole run writes the same bytes and leaves no record; a record of another run is refused by field, exit 1")
    func resume() throws {
        let dir = TemporaryDirectory()
        let model = TestPaths.fixture("k25-tiny")
        let plain = try run(["logits", model, "--ids", Self.dump("k25-tiny", "/exact"), "--out", dir.path + "/plain.h5", "--full", "--quiet"])
        #expect(plain.status == 0, "\(plain.err)")
        let resumable = try run(["logits", model, "--ids", Self.dump("k25-tiny", "/exact"), "--out", dir.path + "/ref.h5", "--full", "--quiet", "--resume"])
        #expect(resumable.status == 0 && resumable.out == plain.out.replacingOccurrences(of: "/plain.h5", with: "/ref.h5"), "\(resumable.err)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: dir.path + "/ref.h5")) == Data(contentsOf: URL(fileURLWithPath: dir.path + "/plain.h5")))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted() == ["plain.h5", "ref.h5"])
        // A record left by a run of the compact form: the full form is refused by its form.
        let stopped = dir.path + "/stopped"
        try FileManager.default.createDirectory(atPath: stopped, withIntermediateDirectories: false)
        let record = #"{"version": 1, "identity": {"form": "compact top 800"}, "layer": 0, "states": ".ref.h5.resume-state-0", "bytes": 0, "sha256": ""}"#
        try Data(record.utf8).write(to: URL(fileURLWithPath: stopped + "/.ref.h5.resume.json"))
        let other = try run(["logits", model, "--ids", Self.dump("k25-tiny", "/exact"), "--out", stopped + "/ref.h5", "--full", "--resume"])
        #expect(other.status == 1, "\(other.err)")
        #expect(other.err.contains("--resume: \(stopped)/.ref.h5.resume.json is the record of another run: its ctx is absent, this run's is 8; remove "), "\(other.err)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: stopped) == [".ref.h5.resume.json"])
    }

    @Test("the output's dequant attribute: exact (or bf16) for INT4 checkpoints, none without INT4, ggml for a GGUF")
    func dequantAttribute() throws {
        let dir = TemporaryDirectory()
        let ids = Self.dump("k25-tiny", "/exact")
        let cases: [(model: String, extra: [String], ids: String, expected: String)] = [
            (TestPaths.fixture("k25-tiny"), [], ids, "exact"),
            (TestPaths.fixture("k25-tiny"), ["--dequant", "bf16"], ids, "bf16"),
            (TestPaths.fixture("deepseek-v3-tiny"), [], Self.dump("deepseek-v3-tiny", "/fp32"), "none"),
            (TestPaths.fixtures.appendingPathComponent("gguf-models/k25-tiny.Q8_0.gguf").path, [], ids, "ggml"),
        ]
        for (n, c) in cases.enumerated() {
            let out = dir.path + "/ref\(n).h5:/g"
            let r = try run(["logits", c.model, "--ids", c.ids, "--out", out, "--quiet", "--top-k", "16"] + c.extra)
            #expect(r.status == 0, "\(r.err)")
            #expect(try ReferenceDump(spec: out).dequant == c.expected, "\(c.model) \(c.extra)")
        }
    }
}
