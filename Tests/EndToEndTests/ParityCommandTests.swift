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
        // The counts compressed-tensors gives (quantize/k2-thinking-tiny.requantize.json, per module).
        let pinned = try #require(try JSONSerialization.jsonObject(
            with: Data(contentsOf: TestPaths.fixtures.appendingPathComponent("quantize/k2-thinking-tiny.requantize.json"))) as? [String: [String: Int]])
        func total(_ key: String) -> Int { pinned.values.reduce(0) { $0 + ($1[key] ?? 0) } }
        #expect(r.out.contains("codes:  \(total("codes_differing")) of \(total("codes")) differ") && r.out.contains("scales: \(total("scales_differing")) of \(total("scales")) differ"), "\(r.out)")
        let bad = try run(["verify", "--requantize", TestPaths.fixture("k2-thinking-tiny")])
        #expect(bad.status != 0 && bad.err.contains("--requantize and --bf16 DIR go together"))
        let twice = try run(["quantize", TestPaths.fixture("k2-thinking-tiny"), dir.path + "/t"])
        #expect(twice.status == 1 && twice.err.contains("is already quantized"), "\(twice.err)")
    }
}

@Suite("shard on the command line")
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
        let none = try run(["shard", TestPaths.fixture("k25-tiny"), "--gpus", "2"])
        #expect(none.status != 0 && none.err.contains("give an output folder, or --dry-run"), "\(none.err)")
    }

    @Test("shard, verify, parity --shards (against the unsharded pass and a dump), merge: the whole round on the command line")
    func round() throws {
        let dir = TemporaryDirectory()
        let fixture = TestPaths.fixture("k25-tiny"), set = dir.path + "/set"
        let w = try run(["shard", fixture, set, "--gpus", "4", "--tp", "2", "--ep", "2", "--vision", "rank0"])
        #expect(w.status == 0, "\(w.err)")
        #expect(w.out.contains("wrote all 4 ranks of tp 2 × ep 2"), "\(w.out)")
        let v = try run(["verify", set])
        #expect(v.status == 0 && v.out.contains("OK: no problems found"), "\(v.out)")
        let p = try run(["parity", fixture, "--shards", set, "--quiet"])
        #expect(p.status == 0 && p.out.contains("PASS: logits max-abs") && p.out.contains("within 1e-05, or 1e-05 × the largest logit"), "\(p.out)\(p.err)")
        let j = try run(["parity", fixture, "--shards", set, "--json"])
        let object = try #require(try JSONSerialization.jsonObject(with: Data(j.out.utf8)) as? [String: Any])
        #expect(object["pass"] as? Bool == true && ((object["logits"] as? [String: Any])?["max_abs"] as? Double ?? 1) <= 1e-5, "\(j.out)")
        let d = try run(["parity", "--shards", set, "--reference", TestPaths.fixture("references/k25-tiny.h5") + ":/exact", "--quiet"])
        #expect(d.status == 0 && d.out.contains("PASS"), "\(d.out)\(d.err)")
        let i = try run(["inspect", set])
        #expect(i.status == 0 && i.out.contains("4 ranks = tp 2 × ep 2; vision tower on rank 0") && i.out.contains("experts 4..<8"), "\(i.out)\(i.err)")
        let ir = try run(["inspect", set + "/rank-0003"])
        #expect(ir.status == 0 && ir.out.contains("rank           3 of tp 2 × ep 2 (tp rank 1, ep rank 1); routed experts 4..<8; vision tower no"), "\(ir.out)")
        let e = try run(["export", set + "/rank-0001", dir.path + "/e"])
        #expect(e.status != 0 && e.err.contains("this is rank 1 of a shard set; rebuild the checkpoint with `k2pack shard --merge`"), "\(e.err)")
        let single = try run(["parity", set + "/rank-0000", "--reference", TestPaths.fixture("references/k25-tiny.h5") + ":/exact"])
        #expect(single.status != 0 && single.err.contains("is rank 0 of a shard set: run the forward pass from the whole set"), "\(single.err)")
        let m = try run(["shard", "--merge", set, dir.path + "/merged"])
        #expect(m.status == 0 && m.out.contains("merged 4 ranks into 6 shards"), "\(m.out)\(m.err)")
        #expect(try folderContents(dir.path + "/merged") == folderContents(fixture))
        let both = try run(["parity", fixture, "--shards", set, "--reference", TestPaths.fixture("references/k25-tiny.h5")])
        #expect(both.status != 0 && both.err.contains("either a model folder or --shards, not both"), "\(both.err)")
    }

    @Test("--rank and the launchers' variables: each process writes its own ranks; together they are the whole set")
    func launchers() throws {
        let dir = TemporaryDirectory()
        let fixture = TestPaths.fixture("k2-thinking-tiny")
        let whole = dir.path + "/whole", torch = dir.path + "/torch", slurm = dir.path + "/slurm", manual = dir.path + "/manual"
        #expect(try run(["shard", fixture, whole, "--gpus", "4", "--ep", "4", "--quiet"]).status == 0)
        // Two torchrun-style processes at the same time, into one folder.
        let executable = try #require(TestPaths.executable)
        let processes = (0..<2).map { rank -> Process in
            let p = Process()
            p.executableURL = executable
            p.arguments = ["shard", "--quiet", fixture, torch, "--gpus", "4", "--ep", "4"]
            p.environment = launcherFree(["RANK": "\(rank)", "WORLD_SIZE": "2"])
            p.standardOutput = FileHandle.nullDevice
            return p
        }
        for p in processes { try p.run() }
        for p in processes {
            p.waitUntilExit()
            #expect(p.terminationStatus == 0)
        }
        let named = try run(["shard", fixture, dir.path + "/named", "--gpus", "4", "--ep", "4"], environment: ["RANK": "1", "WORLD_SIZE": "2"])
        #expect(named.status == 0 && named.out.contains("wrote ranks 1,3 of tp 1 × ep 4"), "\(named.out)\(named.err)")
        for process in 0..<4 {
            let r = try run(["shard", fixture, slurm, "--gpus", "4", "--ep", "4", "--quiet"], environment: ["SLURM_PROCID": "\(process)", "SLURM_NTASKS": "4"])
            #expect(r.status == 0, "\(r.err)")
        }
        for rank in [2, 3, 0, 1] {
            let r = try run(["shard", fixture, manual, "--gpus", "4", "--ep", "4", "--rank", "\(rank)"], environment: ["RANK": "0", "WORLD_SIZE": "1"])
            #expect(r.status == 0 && r.out.contains("wrote rank \(rank) of"), "\(r.out)\(r.err)")
        }
        let expected = try folderContents(whole)
        #expect(try folderContents(torch) == expected)
        #expect(try folderContents(slurm) == expected)
        #expect(try folderContents(manual) == expected)

        let outside = try run(["shard", fixture, manual, "--gpus", "4", "--ep", "4", "--rank", "4"])
        #expect(outside.status != 0 && outside.err.contains("--rank 4 is outside 0..<4"), "\(outside.err)")
        let again = try run(["shard", fixture, manual, "--gpus", "4", "--ep", "4", "--rank", "1"])
        #expect(again.status == 1 && again.err.contains("rank-0001: already exists (written before, or being written by another process)"), "\(again.err)")
        let half = try run(["shard", fixture, dir.path + "/x", "--gpus", "4", "--ep", "4"], environment: ["RANK": "1"])
        #expect(half.status != 0 && half.err.contains("RANK=1 with WORLD_SIZE=unset is not a process of a launch"), "\(half.err)")
        let idle = try run(["shard", fixture, dir.path + "/y", "--gpus", "2", "--ep", "2"], environment: ["SLURM_PROCID": "3", "SLURM_NTASKS": "4"])
        #expect(idle.status != 0 && idle.err.contains("SLURM_PROCID 3 of 4 processes has no rank to write: there are 2"), "\(idle.err)")
        let unfinished = try run(["shard", "--merge", dir.path + "/nothing", dir.path + "/z"])
        #expect(unfinished.status == 1 && unfinished.err.contains("shards.json: missing: not a shard set"), "\(unfinished.err)")
    }
}
