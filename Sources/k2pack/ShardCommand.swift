import ArgumentParser
import Inspection
import Shard

struct ShardCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shard",
        abstract: "Plan per-GPU shards for a node (tensor and expert parallel) from the architecture manifest's rules.",
        discussion: """
            --gpus N splits into tp × ep = N ranks (default: tp = N). Prints bytes per rank, the balance, and what each \
            rank holds; refuses impossible splits (heads, experts or quantization groups that do not divide). This build \
            prints the plan only (--dry-run); writing the rank files comes next.
            """)

    @Argument(help: "The Hugging Face checkpoint folder.")
    var model: String

    @Argument(help: "The output folder for the rank files.")
    var output: String?

    @Option(help: "GPUs (ranks) in all.")
    var gpus: Int

    @Option(help: "Tensor-parallel size (default: gpus / ep).")
    var tp: Int?

    @Option(help: "Expert-parallel size (default: gpus / tp).")
    var ep: Int?

    @Flag(help: "Print the plan; write nothing.")
    var dryRun = false

    @Flag(help: "Print the plan as JSON.")
    var json = false

    @OptionGroup var folders: FolderOptions

    func run() throws {
        folders.apply()
        guard gpus >= 1 else { throw ValidationError("--gpus must be at least 1") }
        let tp = self.tp ?? (ep.map { gpus / max($0, 1) } ?? gpus)
        let ep = self.ep ?? gpus / max(tp, 1)
        guard tp * ep == gpus else { throw ValidationError("--tp \(tp) × --ep \(ep) must equal --gpus \(gpus)") }
        guard dryRun else { throw ValidationError("writing rank files is not built yet: use --dry-run to print the plan") }
        let plan = try ShardPlan(LoadedCheckpoint(path: model), layout: ShardLayout(tp: tp, ep: ep))
        if json { try printJSON(plan) } else { print(plan.renderText(), terminator: "") }
    }
}
