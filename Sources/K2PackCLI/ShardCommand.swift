import PackFormat
import ArgumentParser
import Foundation
import TensorCore
import Inspection
import LoadedModel
import Shard

/// `shard`: three modes, one subcommand each — `shard plan`, `shard write` and `shard merge`. The old spellings
/// (`shard MODEL OUT --gpus N`, `shard MODEL --gpus N --dry-run`, `shard --merge SET OUT`) still work: they are
/// the hidden default subcommand, which picks the mode from the flags as before.
struct ShardCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shard",
        abstract: "Split a checkpoint into per-GPU rank folders (tensor and expert parallel), or merge them back.",
        discussion: """
            --gpus N splits into tp × ep = N ranks (default: tp = N); rank r is tensor-parallel rank r % tp of expert \
            group r / tp. The rules come from the architecture manifest: MLA heads, MLPs and the vocabulary in equal \
            blocks over tp; routed experts in contiguous blocks over ep (split by their tp rule when ep = 1); norms, \
            q_a/kv_a and the router on every rank. Each rank folder (OUT/rank-NNNN) is a k2pack folder in the \
            checkpoint's own layout. Impossible splits are refused, naming the tensor.

            By default every rank is written. --rank R writes rank R alone; under a launcher, RANK/WORLD_SIZE or \
            SLURM_PROCID/SLURM_NTASKS make process i of W write ranks i, i+W, …, reading only the bytes they need. \
            `shard merge SHARDS OUT` rebuilds the original checkpoint byte for byte.

            `shard MODEL OUT --gpus N`, `shard MODEL --gpus N --dry-run` and `shard --merge SHARDS OUT` (the forms \
            before these subcommands) still work.
            """,
        subcommands: [ShardPlanCommand.self, ShardWriteCommand.self, ShardMergeCommand.self, LegacyShardCommand.self],
        defaultSubcommand: LegacyShardCommand.self)
}

/// Where the vision tower goes.
enum VisionPlacement: String, ExpressibleByArgument, CaseIterable { case every, rank0 }

/// `--gpus`, `--tp`, `--ep`, `--vision`: the split, checked as a whole.
struct LayoutOptions: ParsableArguments {
    @Option(help: "GPUs (ranks) in all.")
    var gpus: Int?

    @Option(help: "Tensor-parallel size (default: gpus / ep).")
    var tp: Int?

    @Option(help: "Expert-parallel size (default: gpus / tp).")
    var ep: Int?

    @Option(help: "Where the vision tower goes: every (every rank) or rank0.")
    var vision: VisionPlacement = .every

    /// The split these options describe, or the error naming what is wrong with them.
    func resolved() throws -> (layout: ShardLayout, gpus: Int) {
        let cap = ShardLayout.maxRanks
        guard let gpus, gpus >= 1, gpus <= cap else { throw ValidationError("--gpus N (1 to \(cap)) is required") }
        guard (tp ?? 1) >= 1, (tp ?? 1) <= cap, (ep ?? 1) >= 1, (ep ?? 1) <= cap else {
            throw ValidationError("--tp and --ep must be between 1 and \(cap)")
        }
        let tp = self.tp ?? (ep.map { gpus / max($0, 1) } ?? gpus)
        let ep = self.ep ?? gpus / max(tp, 1)
        guard tp * ep == gpus else { throw ValidationError("--tp \(tp) × --ep \(ep) must equal --gpus \(gpus)") }
        return (ShardLayout(tp: tp, ep: ep, visionOnEveryRank: vision == .every), gpus)
    }

    /// The flags given, by name (merge reads its layout from the set and refuses them).
    var given: [String] {
        [("--gpus", gpus != nil), ("--tp", tp != nil), ("--ep", ep != nil)].filter(\.1).map(\.0)
    }
}

/// `shard plan MODEL --gpus N`: print the plan, write nothing.
struct ShardPlanCommand: ParsableCommand, ReadsFolders, Reports {
    static let configuration = CommandConfiguration(commandName: "plan", abstract: "Print the per-rank plan of a split; write nothing.")

    @Argument(help: "The Hugging Face checkpoint folder.")
    var model: String

    @OptionGroup var layout: LayoutOptions
    @OptionGroup var reporting: ReportOptions
    @OptionGroup var folders: FolderOptions

    func validate() throws { _ = try layout.resolved() }

    func run() throws { try ShardRuns.plan(model: model, layout: layout.resolved().layout, reporting: reporting) }
}

/// `shard write MODEL OUT --gpus N [--rank R]`: write the rank folders.
struct ShardWriteCommand: ParsableCommand, ReadsFolders, Reports {
    static let configuration = CommandConfiguration(commandName: "write", abstract: "Write the rank folders of a split (all, --rank R, or this process's share under a launcher).")

    @Argument(help: "The Hugging Face checkpoint folder.")
    var model: String

    @Argument(help: "The output folder.")
    var output: String

    @OptionGroup var layout: LayoutOptions

    @Option(help: "Write only this rank (default: all, or this process's share under RANK/WORLD_SIZE or SLURM_PROCID/SLURM_NTASKS).")
    var rank: Int?

    @OptionGroup var reporting: ReportOptions
    @OptionGroup var folders: FolderOptions

    func validate() throws {
        let (_, gpus) = try layout.resolved()
        try ShardRuns.checkRank(rank, total: gpus)
    }

    func run() throws {
        let (layout, gpus) = try layout.resolved()
        try ShardRuns.write(model: model, output: output, layout: layout, gpus: gpus, rank: rank, reporting: reporting)
    }
}

/// `shard merge SHARDS OUT`: rebuild the unsharded checkpoint (`--dry-run`: check and print only).
struct ShardMergeCommand: ParsableCommand, ReadsFolders, Reports {
    static let configuration = CommandConfiguration(commandName: "merge", abstract: "Rebuild the unsharded checkpoint from a shard set, byte for byte.")

    @Argument(help: "The shard set's folder.")
    var shards: String

    @Argument(help: "The output folder (not needed with --dry-run).")
    var output: String?

    @Flag(help: "Check the set and print what would be merged; write nothing.")
    var dryRun = false

    @OptionGroup var reporting: ReportOptions
    @OptionGroup var folders: FolderOptions

    func validate() throws {
        if !dryRun, output == nil { throw ValidationError("--merge needs the shard set's folder and an output folder") }
    }

    func run() throws { try ShardRuns.merge(shards: shards, output: output, dryRun: dryRun, reporting: reporting) }
}

/// The spelling before `shard plan` / `write` / `merge`: the mode is chosen by --merge and --dry-run. Hidden;
/// kept so that README, docs, scripts and tests stay true.
struct LegacyShardCommand: ParsableCommand, ReadsFolders, Reports {
    static let configuration = CommandConfiguration(
        commandName: "legacy", abstract: "shard MODEL OUT --gpus N, shard MODEL --gpus N --dry-run, or shard --merge SHARDS OUT.",
        usage: """
            k2pack shard <model> [<output>] --gpus <gpus> [--tp <tp>] [--ep <ep>] [--vision <vision>] [--rank <rank>] [--dry-run] [--json] [--quiet] [--allow-outside-symlinks]
            k2pack shard --merge <shards> [<output>] [--dry-run] [--json] [--quiet] [--allow-outside-symlinks]
            """,
        shouldDisplay: false)

    @Argument(help: "The Hugging Face checkpoint folder (with --merge: the shard set's folder).")
    var model: String

    @Argument(help: "The output folder (not needed with --dry-run).")
    var output: String?

    @OptionGroup var layout: LayoutOptions

    @Option(help: "Write only this rank (default: all, or this process's share under RANK/WORLD_SIZE or SLURM_PROCID/SLURM_NTASKS).")
    var rank: Int?

    @Flag(help: "Print the plan; write nothing (with --merge: check the set and print what would be merged).")
    var dryRun = false

    @Flag(help: "Rebuild the unsharded checkpoint from a shard set, byte for byte.")
    var merge = false

    @OptionGroup var reporting: ReportOptions
    @OptionGroup var folders: FolderOptions

    func validate() throws {
        if merge {
            for flag in layout.given + (rank != nil ? ["--rank"] : []) {
                throw ValidationError("\(flag) does not apply to --merge (the set's layout is read from its shards.json)")
            }
            if !dryRun, output == nil { throw ValidationError("--merge needs the shard set's folder and an output folder") }
            return
        }
        let (_, gpus) = try layout.resolved()
        if dryRun { return }
        guard output != nil else { throw ValidationError("give an output folder, or --dry-run to print the plan") }
        try ShardRuns.checkRank(rank, total: gpus)
    }

    func run() throws {
        if merge { return try ShardRuns.merge(shards: model, output: output, dryRun: dryRun, reporting: reporting) }
        let (layout, gpus) = try layout.resolved()
        if dryRun { return try ShardRuns.plan(model: model, layout: layout, reporting: reporting) }
        guard let output else { throw ValidationError("give an output folder, or --dry-run to print the plan") }
        try ShardRuns.write(model: model, output: output, layout: layout, gpus: gpus, rank: rank, reporting: reporting)
    }
}

/// The three shard runs, shared by the subcommands and the old spelling.
enum ShardRuns {
    static func plan(model: String, layout: ShardLayout, reporting: ReportOptions) throws {
        let plan = try ShardPlan(LoadedCheckpoint(path: model), layout: layout)
        if reporting.json { try printJSON(plan) } else { print(terminalText(plan.renderText()), terminator: "") }
    }

    static func checkRank(_ rank: Int?, total: Int) throws {
        if let rank, rank < 0 || rank >= total { throw ValidationError("--rank \(rank) is outside 0..<\(total)") }
    }

    static func write(model: String, output: String, layout: ShardLayout, gpus: Int, rank: Int?, reporting: ReportOptions) throws {
        let ranks = try ranksToWrite(rank: rank, total: gpus)
        let (bar, progress) = reporting.progress("shard")
        let report = try ShardWriter.write(
            input: model, output: output, options: ShardWriter.Options(layout: layout, ranks: ranks), progress: killSwitch(progress))
        bar?.finish()
        if reporting.json { try printJSON(report); return }
        let which = ranks.map { $0.count == 1 ? "rank \($0[0])" : "ranks \($0.map(String.init).joined(separator: ","))" } ?? "all \(gpus) ranks"
        print("wrote \(which) of tp \(layout.tp) × ep \(layout.ep): \(report.files) files, \(formatBytes(report.bytes)) in \(String(format: "%.2f s", report.seconds))")
    }

    /// --rank, else this process's share under a launcher's environment, else nil (all ranks).
    static func ranksToWrite(rank: Int?, total: Int) throws -> [Int]? {
        if let rank {
            try checkRank(rank, total: total)
            return [rank]
        }
        let env = ProcessInfo.processInfo.environment
        for (rankKey, sizeKey) in [("RANK", "WORLD_SIZE"), ("SLURM_PROCID", "SLURM_NTASKS")] {
            guard let text = env[rankKey] else { continue }
            guard let process = Int(text), let sizeText = env[sizeKey], let size = Int(sizeText), size >= 1, process >= 0, process < size else {
                throw ValidationError("\(rankKey)=\(displayed(text)) with \(sizeKey)=\(displayed(env[sizeKey] ?? "unset")) is not a process of a launch; set both, or pass --rank")
            }
            let mine = Array(stride(from: process, to: total, by: size))
            guard !mine.isEmpty else { throw ValidationError("\(rankKey) \(process) of \(size) processes has no rank to write: there are \(total)") }
            return mine
        }
        return nil
    }

    static func merge(shards: String, output: String?, dryRun: Bool, reporting: ReportOptions) throws {
        if dryRun {
            // Plan only: every check merge makes, nothing written.
            let report = try ShardMerger.plan(input: shards, output: output)
            if reporting.json { try printJSON(report); return }
            print("would merge \(report.ranks) ranks into \(report.files.count) shards, \(formatBytes(report.bytes))\(output.map { " in \($0)" } ?? ""); nothing written (--dry-run)")
            return
        }
        guard let output else { throw ValidationError("--merge needs the shard set's folder and an output folder") }
        let (bar, progress) = reporting.progress("merge")
        let report = try ShardMerger.merge(input: shards, output: output, progress: killSwitch(progress))
        bar?.finish()
        if reporting.json { try printJSON(report); return }
        print("merged \(report.ranks) ranks into \(report.files.count) shards, \(formatBytes(report.bytes)) in \(String(format: "%.2f s", report.seconds))")
    }
}
