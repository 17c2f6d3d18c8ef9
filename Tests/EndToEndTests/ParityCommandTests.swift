import Foundation
import TestSupport
import Testing

@Suite("parity and compare on the command line")
struct ParityCommandTests {
    let ref = TestPaths.fixtures.appendingPathComponent("references").path

    @Test("parity passes on a fixture, writes the plot, and its JSON names the first failing layer (none)")
    func pass() throws {
        let temp = TemporaryDirectory()
        let plot = temp.path + "/error.svg"
        let r = try run(["parity", TestPaths.fixture("k25-tiny"), "--reference", ref + "/k25-tiny.h5:/exact", "--plot", plot, "--quiet"])
        #expect(r.status == 0, "\(r.out)\(r.err)")
        #expect(r.out.contains("PASS: 3 layer(s) and logits within tolerance"))
        #expect(r.out.contains("16/16 tokens with the reference's expert set"))
        let svg = try String(contentsOfFile: plot, encoding: .utf8)
        #expect(svg.hasPrefix("<svg") && svg.contains("polyline"))
        let j = try run(["parity", "--json", TestPaths.fixture("deepseek-v3-tiny"), "--reference", ref + "/deepseek-v3-tiny.h5:/fp32"])
        #expect(j.status == 0, "\(j.err)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(j.out.utf8)) as? [String: Any])
        #expect(object["pass"] as? Bool == true)
        #expect(object["first_failing_layer"] == nil)
        #expect((object["layers"] as? [Any])?.count == 3)
    }

    @Test("parity of another model's weights fails at layer 0 with exit status 1")
    func fail() throws {
        let r = try run(["parity", TestPaths.fixture("k2-thinking-tiny"), "--reference", ref + "/k25-tiny.h5:/exact"])
        #expect(r.status == 1, "\(r.out)\(r.err)")
        #expect(r.out.contains("FAIL: first failing layer 0"))
    }

    @Test("compare of two dumps and of a model folder")
    func compare() throws {
        let r = try run(["compare", "--json", ref + "/k25-tiny.h5:/exact", ref + "/k25-tiny.h5:/bf16"])
        #expect(r.status == 0, "\(r.err)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [String: Any])
        #expect(object["same_top1"] as? Double == 1)
        let kld = try #require(object["kld"] as? [String: Any])
        #expect((kld["mean"] as? Double ?? 1) < 1e-7)
        let m = try run(["compare", ref + "/k25-tiny.h5:/exact", TestPaths.fixture("k25-tiny")])
        #expect(m.status == 0, "\(m.err)")
        #expect(m.out.contains("Mean KLD:") && m.out.contains("Same top-1:      100.0000%"))
        let bad = try run(["compare", ref + "/k25-tiny.h5:/exact", ref + "/k25-tiny.h5:/nope"])
        #expect(bad.status == 1)
        #expect(bad.err.contains("k25-tiny.h5: no group /nope"), "\(bad.err)")
    }
}

@Suite("convert --compress on the command line")
struct ArchiveCommandTests {
    @Test("convert --compress reports its ratio, inspect shows it, parity refuses the archive and says why")
    func archive() throws {
        let dir = TemporaryDirectory()
        let folder = dir.path + "/z"
        let c = try run(["convert", "--compress", "--quiet", TestPaths.fixture("k25-tiny"), folder])
        #expect(c.status == 0, "\(c.err)")
        #expect(c.out.contains("zstd level 3:") && c.out.contains("ratio"))
        let i = try run(["inspect", folder])
        #expect(i.out.contains("zstd archive, ratio"), "\(i.out)")
        let v = try run(["verify", folder])
        #expect(v.status == 0 && v.out.contains("OK: no problems found"), "\(v.out)")
        let p = try run(["parity", folder, "--reference", TestPaths.fixtures.appendingPathComponent("references/k25-tiny.h5").path + ":/exact"])
        #expect(p.status == 1 && p.err.contains("is a zstd archive (convert --compress)"), "\(p.err)")
        let bad = try run(["convert", "--compress", "--level", "40", TestPaths.fixture("k25-tiny"), dir.path + "/y"])
        #expect(bad.status != 0 && bad.err.contains("--level 40: zstd levels 1 to 19"), "\(bad.err)")
    }
}

@Suite("quantize, dequantize and verify --requantize on the command line")
struct QuantizeCommandTests {
    @Test("quantize → verify → parity; dequantize → verify --requantize reports the pinned counts")
    func roundTrip() throws {
        let dir = TemporaryDirectory()
        let q = try run(["quantize", "--json", TestPaths.fixture("quantize/k2-thinking-bf16"), dir.path + "/q"])
        #expect(q.status == 0, "\(q.err)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(q.out.utf8)) as? [String: Any])
        #expect(object["quantized_modules"] as? Int == 48)
        #expect(try run(["verify", "--quiet", dir.path + "/q"]).status == 0)
        let p = try run(["parity", dir.path + "/q", "--reference", TestPaths.fixtures.appendingPathComponent("references/k2-thinking-tiny.h5").path + ":/exact"])
        #expect(p.status == 0, "\(p.out)")
        let d = try run(["dequantize", "--quiet", TestPaths.fixture("k2-thinking-tiny"), dir.path + "/d"])
        #expect(d.status == 0 && d.out.contains("dequantized 48 modules to BF16"), "\(d.err)")
        let r = try run(["verify", "--requantize", TestPaths.fixture("k2-thinking-tiny"), "--bf16", dir.path + "/d"])
        #expect(r.status == 0, "\(r.err)")
        #expect(r.out.contains("codes:  937 of 98304 differ") && r.out.contains("scales: 3072 of 3072 differ"), "\(r.out)")
        let bad = try run(["verify", "--requantize", TestPaths.fixture("k2-thinking-tiny")])
        #expect(bad.status != 0 && bad.err.contains("--requantize and --bf16 DIR go together"))
        let twice = try run(["quantize", TestPaths.fixture("k2-thinking-tiny"), dir.path + "/t"])
        #expect(twice.status == 1 && twice.err.contains("is already quantized"), "\(twice.err)")
    }
}

@Suite("shard --dry-run on the command line")
struct ShardCommandTests {
    @Test("the plan prints per rank; impossible splits and missing --dry-run are clear errors")
    func plan() throws {
        let r = try run(["shard", TestPaths.fixture("k25-tiny"), "--gpus", "2", "--ep", "2", "--tp", "1", "--dry-run"])
        #expect(r.status == 0, "\(r.err)")
        #expect(r.out.contains("2 ranks = tp 1 × ep 2") && r.out.contains("experts 4..<8") && r.out.contains("balance"), "\(r.out)")
        let j = try run(["shard", TestPaths.fixture("deepseek-v3-tiny"), "--gpus", "4", "--tp", "2", "--dry-run", "--json"])
        #expect(j.status == 0, "\(j.err)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(j.out.utf8)) as? [String: Any])
        #expect((object["ranks"] as? [Any])?.count == 4)
        let bad = try run(["shard", TestPaths.fixture("k25-tiny"), "--gpus", "3", "--ep", "3", "--dry-run"])
        #expect(bad.status == 1 && bad.err.contains("8 routed experts do not divide into 3 expert-parallel groups"), "\(bad.err)")
        let write = try run(["shard", TestPaths.fixture("k25-tiny"), "out", "--gpus", "2"])
        #expect(write.status != 0 && write.err.contains("use --dry-run"), "\(write.err)")
    }
}
