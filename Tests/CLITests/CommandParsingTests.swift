import PackFormat
import ArgumentParser
import Shard
import Testing

@testable import K2PackCLI

/// Parses a command line as the executable would (no run): the command it selects, with `validate()` done.
private func parse(_ arguments: [String]) throws -> any ParsableCommand {
    try K2Pack.parseAsRoot(arguments)
}

/// The message the executable prints for a command line that does not parse or validate (nil when it does).
private func refusal(_ arguments: [String]) -> String? {
    do {
        _ = try K2Pack.parseAsRoot(arguments)
        return nil
    } catch {
        return K2Pack.message(for: error)
    }
}

@Suite("command line parsing, in-process")
struct CommandParsingTests {
    @Test("inspect, verify, convert, export, quantize, dequantize, compare, tokenize parse to their commands")
    func readersAndWriters() throws {
        let inspect = try #require(try parse(["inspect", "m", "--gpus", "4", "--json"]) as? InspectCommand)
        #expect(inspect.checkpoint == "m" && inspect.gpus == 4 && inspect.reporting.json)
        let verify = try #require(try parse(["verify", "m", "--requantize", "--bf16", "b", "--threads", "2", "--quiet"]) as? VerifyCommand)
        #expect(verify.requantize && verify.bf16 == "b" && verify.threads == 2 && verify.reporting.quiet)
        let convert = try #require(try parse(["convert", "in", "out", "--compress", "--level", "19", "--resume"]) as? ConvertCommand)
        #expect(convert.input == "in" && convert.output == "out" && convert.compress && convert.level == 19 && convert.resume)
        let export = try #require(try parse(["export", "p", "o", "--json"]) as? ExportCommand)
        #expect(export.input == "p" && export.output == "o" && export.reporting.json)
        let quantize = try #require(try parse(["quantize", "b", "o", "--format", "k2pack", "--scheme", "s.json"]) as? QuantizeCommand)
        #expect(quantize.format == .k2pack && quantize.scheme == "s.json")
        let dequantize = try #require(try parse(["dequantize", "i", "o", "--exact"]) as? DequantizeCommand)
        #expect(dequantize.exact && dequantize.format == .hf)
        let compare = try #require(try parse(["compare", "r.h5:/g", "t", "--json", "--threads", "1"]) as? CompareCommand)
        #expect(compare.reference == "r.h5:/g" && compare.test == "t" && compare.reporting.json && compare.forward.threads == 1)
        let tokenize = try #require(try parse(["tokenize", "m", "--text", "f", "--decode", "--json"]) as? TokenizeCommand)
        #expect(tokenize.text == "f" && tokenize.input == nil && tokenize.decode && tokenize.reporting.json)
    }

    @Test(
        "bad option values and combinations are refused by validate(), with these messages",
        arguments: [
            (["inspect", "m", "--gpus", "0"], "--gpus 0: expected 1 to 4096"),
            (["verify", "m", "--threads", "0"], "--threads 0: expected 1 to 4096"),
            (["verify", "m", "--requantize"], "--requantize and --bf16 DIR go together"),
            (["verify", "m", "--bf16", "b"], "--requantize and --bf16 DIR go together"),
            (["convert", "i", "o", "--compress", "--level", "20"], "--level 20: zstd levels 1 to 19"),
            (["convert", "i", "o", "--level", "0"], "--level 0: zstd levels 1 to 19"),
            (["tokenize", "m"], "give the text either as an argument or with --text FILE (not both)"),
            (["tokenize", "m", "hello", "--text", "f"], "give the text either as an argument or with --text FILE (not both)"),
            (["compare", "r.h5", "t", "--threads", "5000"], "--threads 5000: expected 1 to 4096"),
        ])
    func refusals(_ arguments: [String], _ message: String) {
        #expect(refusal(arguments)?.hasPrefix(message) == true, "\(arguments): \(refusal(arguments) ?? "accepted")")
    }

    @Test("parity: dump and shards subcommands, and the old spellings through the hidden default")
    func parity() throws {
        let dump = try #require(try parse(["parity", "dump", "m", "--reference", "r.h5:/exact", "--layers", "1..2", "--plot", "p.svg"]) as? ParityDumpCommand)
        #expect(dump.model == "m" && dump.reference == "r.h5:/exact" && dump.shards == nil && dump.dump.plot == "p.svg")
        #expect(try dump.dump.layerRange() == 1...2)
        let sharded = try #require(try parse(["parity", "dump", "--shards", "s", "--reference", "r.h5"]) as? ParityDumpCommand)
        #expect(sharded.model == nil && sharded.shards == "s")
        let shards = try #require(try parse(["parity", "shards", "m", "s", "--tokens", "4", "--atol", "1e-6"]) as? ParityShardsCommand)
        #expect(shards.model == "m" && shards.shards == "s" && shards.tokens == 4 && shards.tolerance.atol == 1e-6)

        let old = try #require(try parse(["parity", "m", "--reference", "r.h5:/exact", "--quiet"]) as? LegacyParityCommand)
        #expect(old.model == "m" && old.reference == "r.h5:/exact" && old.reporting.quiet)
        let oldFirstFlag = try #require(try parse(["parity", "--json", "m", "--reference", "r.h5"]) as? LegacyParityCommand)
        #expect(oldFirstFlag.model == "m" && oldFirstFlag.reporting.json)
        let oldShards = try #require(try parse(["parity", "--shards", "s", "m"]) as? LegacyParityCommand)
        #expect(oldShards.model == "m" && oldShards.shards == "s" && oldShards.reference == nil)
        let oldDumpShards = try #require(try parse(["parity", "--shards", "s", "--reference", "r.h5"]) as? LegacyParityCommand)
        #expect(oldDumpShards.model == nil && oldDumpShards.shards == "s")
    }

    @Test(
        "parity: bad combinations are refused, old and new spellings alike",
        arguments: [
            (["parity"], "give --reference DUMP (and a model or --shards), or a model and --shards"),
            (["parity", "m"], "give --reference DUMP (and a model or --shards), or a model and --shards"),
            (["parity", "m", "--shards", "s", "--plot", "p.svg"], "--plot charts the error per layer against a dump: it needs --reference"),
            (["parity", "m", "--shards", "s", "--reference", "r.h5"], "with --reference, give either a model folder or --shards, not both"),
            (["parity", "--reference", "r.h5"], "with --reference, give either a model folder or --shards, not both"),
            (["parity", "m", "--shards", "s", "--tokens", "0"], "--tokens must be in 1...4096"),
            (["parity", "m", "--reference", "r.h5", "--atol", "nan"], "--atol nan: expected a finite number ≥ 0"),
            (["parity", "m", "--reference", "r.h5", "--rtol=-1"], "--rtol -1.0: expected a finite number ≥ 0"),
            (["parity", "m", "--reference", "r.h5", "--routing-margin", "inf"], "--routing-margin inf: expected a finite number ≥ 0"),
            (["parity", "m", "--reference", "r.h5", "--threads", "0"], "--threads 0: expected 1 to 4096"),
            (["parity", "m", "--reference", "r.h5", "--layers", "3..1"], "--layers 3..1: expected A..B with 0 ≤ A ≤ B, or a single layer"),
            (["parity", "dump", "m", "--shards", "s", "--reference", "r.h5"], "with --reference, give either a model folder or --shards, not both"),
            (["parity", "dump", "--reference", "r.h5"], "with --reference, give either a model folder or --shards, not both"),
            (["parity", "dump", "m", "--reference", "r.h5", "--layers", "x"], "--layers x: expected A..B with 0 ≤ A ≤ B, or a single layer"),
            (["parity", "dump", "m"], "Missing expected argument '--reference <reference>'"),
            (["parity", "shards", "m", "s", "--tokens", "5000"], "--tokens must be in 1...4096"),
            (["parity", "shards", "m", "s", "--rtol", "nan"], "--rtol nan: expected a finite number ≥ 0"),
            (["parity", "shards", "m"], "Missing expected argument '<shards>'"),
        ])
    func parityRefusals(_ arguments: [String], _ message: String) {
        #expect(refusal(arguments)?.hasPrefix(message) == true, "\(arguments): \(refusal(arguments) ?? "accepted")")
    }

    @Test("parity, old spelling: --layers is not read when no dump is given (as before)")
    func parityLayersIgnoredWithoutDump() throws {
        #expect(try parse(["parity", "m", "--shards", "s", "--layers", "x"]) is LegacyParityCommand)
    }

    @Test("shard: plan, write and merge subcommands, and the old spellings through the hidden default")
    func shard() throws {
        let plan = try #require(try parse(["shard", "plan", "m", "--gpus", "4", "--tp", "2", "--json"]) as? ShardPlanCommand)
        #expect(try plan.layout.resolved().layout == ShardLayout(tp: 2, ep: 2) && plan.reporting.json)
        let write = try #require(try parse(["shard", "write", "m", "o", "--gpus", "4", "--ep", "4", "--rank", "3", "--vision", "rank0"]) as? ShardWriteCommand)
        #expect(write.rank == 3)
        #expect(try write.layout.resolved().layout == ShardLayout(tp: 1, ep: 4, visionOnEveryRank: false))
        let merge = try #require(try parse(["shard", "merge", "s", "o", "--quiet"]) as? ShardMergeCommand)
        #expect(merge.shards == "s" && merge.output == "o" && merge.reporting.quiet)
        #expect(try parse(["shard", "merge", "s", "--dry-run"]) is ShardMergeCommand)

        let old = try #require(try parse(["shard", "--quiet", "--gpus", "2", "--ep", "2", "m", "o"]) as? LegacyShardCommand)
        #expect(old.model == "m" && old.output == "o" && !old.merge)
        #expect(try old.layout.resolved().layout == ShardLayout(tp: 1, ep: 2))
        let oldPlan = try #require(try parse(["shard", "m", "--gpus", "2", "--dry-run", "--rank", "9"]) as? LegacyShardCommand)
        #expect(oldPlan.dryRun)
        let oldMerge = try #require(try parse(["shard", "--merge", "--quiet", "s", "o"]) as? LegacyShardCommand)
        #expect(oldMerge.merge && oldMerge.model == "s" && oldMerge.output == "o")
        #expect(try parse(["shard", "--merge", "s", "--dry-run"]) is LegacyShardCommand)
    }

    @Test(
        "shard: bad splits and combinations are refused, old and new spellings alike",
        arguments: [
            (["shard", "m", "o"], "--gpus N (1 to 4096) is required"),
            (["shard", "m", "o", "--gpus", "5000"], "--gpus N (1 to 4096) is required"),
            (["shard", "m", "o", "--gpus", "4", "--tp", "0"], "--tp and --ep must be between 1 and 4096"),
            (["shard", "m", "o", "--gpus", "4", "--tp", "3"], "--tp 3 × --ep 1 must equal --gpus 4"),
            (["shard", "m", "o", "--gpus", "4", "--tp", "2", "--ep", "4"], "--tp 2 × --ep 4 must equal --gpus 4"),
            (["shard", "m", "--gpus", "2"], "give an output folder, or --dry-run to print the plan"),
            (["shard", "m", "o", "--gpus", "2", "--rank", "2"], "--rank 2 is outside 0..<2"),
            (["shard", "--merge", "s", "o", "--gpus", "2"], "--gpus does not apply to --merge (the set's layout is read from its shards.json)"),
            (["shard", "--merge", "s", "o", "--ep", "2"], "--ep does not apply to --merge (the set's layout is read from its shards.json)"),
            (["shard", "--merge", "s", "o", "--rank", "0"], "--rank does not apply to --merge (the set's layout is read from its shards.json)"),
            (["shard", "--merge", "s"], "--merge needs the shard set's folder and an output folder"),
            (["shard", "plan", "m"], "--gpus N (1 to 4096) is required"),
            (["shard", "plan", "m", "--gpus", "6", "--ep", "4"], "--tp 1 × --ep 4 must equal --gpus 6"),
            (["shard", "write", "m", "o", "--gpus", "4", "--rank=-1"], "--rank -1 is outside 0..<4"),
            (["shard", "write", "m", "--gpus", "4"], "Missing expected argument '<output>'"),
            (["shard", "merge", "s"], "--merge needs the shard set's folder and an output folder"),
            (["shard", "merge", "s", "o", "--gpus", "2"], "Unknown option '--gpus'"),
        ])
    func shardRefusals(_ arguments: [String], _ message: String) {
        #expect(refusal(arguments)?.hasPrefix(message) == true, "\(arguments): \(refusal(arguments) ?? "accepted")")
    }

    @Test("every command takes --json and --quiet from the one ReportOptions group")
    func oneOutputGroup() throws {
        let lines: [[String]] = [
            ["inspect", "m"], ["verify", "m"], ["convert", "i", "o"], ["export", "p", "o"], ["quantize", "i", "o"], ["dequantize", "i", "o"],
            ["compare", "r", "t"], ["tokenize", "m", "x"], ["parity", "m", "--reference", "r"], ["parity", "dump", "m", "--reference", "r"],
            ["parity", "shards", "m", "s"], ["shard", "m", "o", "--gpus", "1"], ["shard", "plan", "m", "--gpus", "1"],
            ["shard", "write", "m", "o", "--gpus", "1"], ["shard", "merge", "s", "o"], ["logits", "m", "--text", "t", "--out", "o"],
        ]
        for line in lines {
            let command = try parse(line + ["--json", "--quiet"])
            let reporter = try #require(command as? any Reports, "\(line)")
            #expect(reporter.reporting.json && reporter.reporting.quiet, "\(line)")
        }
    }

    /// Every command with `--allow-outside-symlinks` is one `runCommand` applies it for (ReadsFolders): a command
    /// that forgot the conformance would silently ignore the flag.
    @Test("every command that takes --allow-outside-symlinks is a ReadsFolders command")
    func folderOptionsApplied() throws {
        let lines: [[String]] = [
            ["inspect", "m"], ["verify", "m"], ["convert", "i", "o"], ["quantize", "i", "o"], ["dequantize", "i", "o"],
            ["compare", "r", "t"], ["parity", "m", "--reference", "r"], ["parity", "dump", "m", "--reference", "r"], ["parity", "shards", "m", "s"],
            ["shard", "m", "o", "--gpus", "1"], ["shard", "plan", "m", "--gpus", "1"], ["shard", "write", "m", "o", "--gpus", "1"], ["shard", "merge", "s", "o"],
            ["logits", "m", "--text", "t", "--out", "o"],
        ]
        for line in lines {
            let command = try parse(line + ["--allow-outside-symlinks"])
            let reader = try #require(command as? any ReadsFolders, "\(line)")
            #expect(reader.folders.allowOutsideSymlinks, "\(line)")
        }
        for line in [["export", "p", "o"], ["tokenize", "m", "x"]] {
            let command = try parse(line)
            #expect(!Mirror(reflecting: command).children.contains { $0.label == "_folders" }, "\(line)")
        }
    }
}
