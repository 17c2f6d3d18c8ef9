import ArgumentParser
import Foundation
import TensorCore
import Inspection
import Shard
import PackFormat

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
            --merge SHARDS OUT rebuilds the original checkpoint byte for byte.
            """)

    @Argument(help: "The Hugging Face checkpoint folder (with --merge: the shard set's folder).")
    var model: String

    @Argument(help: "The output folder (not needed with --dry-run).")
    var output: String?

    @Option(help: "GPUs (ranks) in all.")
    var gpus: Int?

    @Option(help: "Tensor-parallel size (default: gpus / ep).")
    var tp: Int?

    @Option(help: "Expert-parallel size (default: gpus / tp).")
    var ep: Int?

    @Option(help: "Write only this rank (default: all, or this process's share under RANK/WORLD_SIZE or SLURM_PROCID/SLURM_NTASKS).")
    var rank: Int?

    @Option(help: "Where the vision tower goes: every (every rank) or rank0.")
    var vision: VisionPlacement = .every

    @Flag(help: "Print the plan; write nothing (with --merge: check the set and print what would be merged).")
    var dryRun = false

    @Flag(help: "Rebuild the unsharded checkpoint from a shard set, byte for byte.")
    var merge = false

    @OptionGroup var reporting: ReportOptions

    @OptionGroup var folders: FolderOptions

    enum VisionPlacement: String, ExpressibleByArgument, CaseIterable { case every, rank0 }

    func run() throws {
        folders.apply()
        if merge { return try runMerge() }
        guard let gpus, gpus >= 1, gpus <= 4096 else { throw ValidationError("--gpus N (1 to 4096) is required") }
        guard (tp ?? 1) >= 1, (tp ?? 1) <= 4096, (ep ?? 1) >= 1, (ep ?? 1) <= 4096 else {
            throw ValidationError("--tp and --ep must be between 1 and 4096")
        }
        let tp = self.tp ?? (ep.map { gpus / max($0, 1) } ?? gpus)
        let ep = self.ep ?? gpus / max(tp, 1)
        guard tp * ep == gpus else { throw ValidationError("--tp \(tp) × --ep \(ep) must equal --gpus \(gpus)") }
        let layout = ShardLayout(tp: tp, ep: ep, visionOnEveryRank: vision == .every)
        if dryRun {
            let plan = try ShardPlan(LoadedCheckpoint(path: model), layout: layout)
            if reporting.json { try printJSON(plan) } else { print(terminalText(plan.renderText()), terminator: "") }
            return
        }
        guard let output else { throw ValidationError("give an output folder, or --dry-run to print the plan") }
        let ranks = try ranksToWrite(total: gpus)
        let (bar, progress) = reporting.progress("shard")
        let report = try ShardWriter.write(
            input: model, output: output, options: ShardWriter.Options(layout: layout, ranks: ranks), progress: killSwitch(progress))
        bar?.finish()
        if reporting.json { try printJSON(report); return }
        let which = ranks.map { $0.count == 1 ? "rank \($0[0])" : "ranks \($0.map(String.init).joined(separator: ","))" } ?? "all \(gpus) ranks"
        print("wrote \(which) of tp \(tp) × ep \(ep): \(report.files) files, \(formatBytes(report.bytes)) in \(String(format: "%.2f s", report.seconds))")
    }

    /// --rank, else this process's share under a launcher's environment, else nil (all ranks).
    func ranksToWrite(total: Int) throws -> [Int]? {
        if let rank {
            guard rank >= 0, rank < total else { throw ValidationError("--rank \(rank) is outside 0..<\(total)") }
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

    func runMerge() throws {
        for (flag, given) in [("--gpus", gpus != nil), ("--tp", tp != nil), ("--ep", ep != nil), ("--rank", rank != nil)] where given {
            throw ValidationError("\(flag) does not apply to --merge (the set's layout is read from its shards.json)")
        }
        if dryRun {
            // Plan only: every check merge makes, nothing written.
            let report = try ShardMerger.plan(input: model, output: output)
            if reporting.json { try printJSON(report); return }
            print("would merge \(report.ranks) ranks into \(report.files.count) shards, \(formatBytes(report.bytes))\(output.map { " in \($0)" } ?? ""); nothing written (--dry-run)")
            return
        }
        guard let output else { throw ValidationError("--merge needs the shard set's folder and an output folder") }
        let (bar, progress) = reporting.progress("merge")
        let report = try ShardMerger.merge(input: model, output: output, progress: killSwitch(progress))
        bar?.finish()
        if reporting.json { try printJSON(report); return }
        print("merged \(report.ranks) ranks into \(report.files.count) shards, \(formatBytes(report.bytes)) in \(String(format: "%.2f s", report.seconds))")
    }
}
