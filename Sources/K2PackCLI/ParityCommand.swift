import ArgumentParser
import FileIO
import Forward
import Foundation
import ModelStore
import PackFormat
import Parity
import TensorCore
import Vision

/// `parity`: two modes, one subcommand each — `parity dump` (the forward pass against a reference dump) and
/// `parity shards` (a shard set's pass against the unsharded one). The old spellings, `parity MODEL --reference
/// DUMP`, `parity --shards SET --reference DUMP` and `parity MODEL --shards SET`, still work: they are the
/// hidden default subcommand, which picks the mode from the flags as before.
struct ParityCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "parity",
        abstract: "Run the float32 reference forward pass and compare it, layer by layer, with a reference dump.",
        discussion: """
            The dump (HDF5, docs/REFERENCE-DUMPS.md) needs input_ids; every other dataset is compared when present. \
            Each layer is compared twice: in our own chain from the embedding, and alone, fed the reference's layer_in, \
            so one bad layer does not hide the rest. A part passes when its largest difference is within --atol and \
            within --rtol times the reference's largest magnitude. Exit status 1 when anything fails.

            `parity MODEL --reference DUMP` and `parity MODEL --shards SET` (the forms before these subcommands) still work.
            """,
        subcommands: [ParityDumpCommand.self, ParityShardsCommand.self, LegacyParityCommand.self],
        defaultSubcommand: LegacyParityCommand.self)
}

/// `--atol` and `--rtol`, checked finite and ≥ 0.
struct ToleranceOptions: ParsableArguments {
    @Option(help: "Largest absolute difference allowed (default 1e-4 against a dump; 1e-5 on logits, shards against the unsharded pass).")
    var atol: Double?

    @Option(help: "Largest difference allowed relative to the reference tensor's largest magnitude.")
    var rtol = Tolerance().rtol

    func validate() throws {
        for (name, value) in [("--atol", atol), ("--rtol", rtol)] {
            try Self.check(name, value)
        }
    }

    static func check(_ name: String, _ value: Double?) throws {
        if let value, !(value.isFinite && value >= 0) {
            throw ValidationError("\(name) \(value): expected a finite number ≥ 0")
        }
    }
}

/// What only a run against a dump uses: the layer range, the routing margin, the isolated runs and the chart.
struct DumpRunOptions: ParsableArguments {
    @Option(help: "Run only layers A..B (from the dump's layers/A/layer_in).")
    var layers: String?

    @Option(help: "Expert sets may differ where our k-th and (k+1)-th selection scores are closer than this.")
    var routingMargin = Tolerance().routingMargin

    @Flag(help: "Skip the per-layer runs fed the reference's own layer_in (half the time).")
    var chainedOnly = false

    @Option(help: "Write an SVG chart of the error per layer.")
    var plot: String?

    func validate() throws {
        try ToleranceOptions.check("--routing-margin", routingMargin)
    }

    /// `--layers`: "A..B" or a single layer "A"; nil when not given.
    func layerRange() throws -> ClosedRange<Int>? {
        guard let text = layers else { return nil }
        let pieces = text.components(separatedBy: "..")
        guard pieces.count <= 2, let a = Int(pieces[0]), let b = Int(pieces[pieces.count - 1]), a >= 0, a <= b else {
            throw ValidationError("--layers \(displayed(text)): expected A..B with 0 ≤ A ≤ B, or a single layer")
        }
        return a...b
    }
}

/// The probe tokens of a shard set against the unsharded pass.
enum ProbeTokens {
    static let range = 1...4096

    static func check(_ tokens: Int) throws {
        guard range.contains(tokens) else { throw ValidationError("--tokens must be in \(range)") }
    }
}

/// `parity dump [MODEL] --reference DUMP [--shards SET]`: the forward pass (of a model folder or of a shard set)
/// against a reference dump, layer by layer.
struct ParityDumpCommand: ParsableCommand, ReadsFolders, Reports {
    static let configuration = CommandConfiguration(
        commandName: "dump",
        abstract: "Compare the forward pass of a model folder (or of a shard set, --shards) with a reference dump, layer by layer.")

    @Argument(help: "The model: a Hugging Face checkpoint folder, a k2pack folder or a GGUF file (or give --shards).")
    var model: String?

    @Option(help: "The reference dump: FILE.h5 or FILE.h5:/group.")
    var reference: String

    @Option(help: "Run from a shard set's rank files (k2pack shard), all-reduce and all-gather simulated.")
    var shards: String?

    @OptionGroup var forward: ForwardOptions
    @OptionGroup var tolerance: ToleranceOptions
    @OptionGroup var dump: DumpRunOptions
    @OptionGroup var reporting: ReportOptions
    @OptionGroup var folders: FolderOptions

    func validate() throws {
        guard (model == nil) != (shards == nil) else { throw ValidationError("with --reference, give either a model folder or --shards, not both") }
        _ = try dump.layerRange()
    }

    func run() throws {
        try ParityRuns.againstDump(
            model: model, shards: shards, reference: reference, forward: forward, tolerance: tolerance, dump: dump, reporting: reporting)
    }
}

/// `parity shards MODEL SET`: a shard set's pass against MODEL's unsharded pass on probe tokens.
struct ParityShardsCommand: ParsableCommand, ReadsFolders, Reports {
    static let configuration = CommandConfiguration(
        commandName: "shards",
        abstract: "Run a shard set (k2pack shard) against its model's unsharded pass on probe tokens, all-reduce and all-gather simulated.",
        discussion: "The logits pass within --atol (default 1e-5) or within --rtol times the largest logit, and the same experts must be chosen.")

    @Argument(help: "The model: a Hugging Face checkpoint folder or a k2pack folder.")
    var model: String

    @Argument(help: "The shard set's folder.")
    var shards: String

    @Option(help: "How many probe tokens (spread over the vocabulary) both passes run.")
    var tokens = 16

    @OptionGroup var forward: ForwardOptions
    @OptionGroup var tolerance: ToleranceOptions
    @OptionGroup var reporting: ReportOptions
    @OptionGroup var folders: FolderOptions

    func validate() throws { try ProbeTokens.check(tokens) }

    func run() throws {
        try ParityRuns.againstUnsharded(model: model, shards: shards, tokens: tokens, forward: forward, tolerance: tolerance, reporting: reporting)
    }
}

/// The spelling before `parity dump` / `parity shards`: the mode is chosen by which of --reference and --shards
/// are given. Hidden; kept so that README, docs, scripts and tests stay true.
struct LegacyParityCommand: ParsableCommand, ReadsFolders, Reports {
    static let configuration = CommandConfiguration(
        commandName: "legacy",
        abstract: "parity MODEL --reference DUMP, parity --shards SET --reference DUMP, or parity MODEL --shards SET.",
        usage: """
            k2pack parity [<model>] --reference <dump> [--shards <set>] [--layers A..B] [--atol <atol>] [--rtol <rtol>] [--plot <file>] [--json] [--quiet] …
            k2pack parity <model> --shards <set> [--tokens <tokens>] [--atol <atol>] [--rtol <rtol>] [--json] [--quiet] …
            """,
        shouldDisplay: false)

    @Argument(help: "The model: a Hugging Face checkpoint folder, a k2pack folder or a GGUF file.")
    var model: String?

    @Option(help: "The reference dump: FILE.h5 or FILE.h5:/group.")
    var reference: String?

    @Option(help: "Run from a shard set's rank files (k2pack shard), all-reduce and all-gather simulated: against the dump, or without one against MODEL's unsharded pass (the logits then pass within --atol, default 1e-5, or within --rtol times the largest logit, and the same experts must be chosen).")
    var shards: String?

    @Option(help: "With --shards and a model: how many probe tokens (spread over the vocabulary) both passes run.")
    var tokens = 16

    @OptionGroup var forward: ForwardOptions
    @OptionGroup var tolerance: ToleranceOptions
    @OptionGroup var dump: DumpRunOptions
    @OptionGroup var reporting: ReportOptions
    @OptionGroup var folders: FolderOptions

    func validate() throws {
        guard reference != nil else {
            guard shards != nil, model != nil else { throw ValidationError("give --reference DUMP (and a model or --shards), or a model and --shards") }
            guard dump.plot == nil else { throw ValidationError("--plot charts the error per layer against a dump: it needs --reference") }
            try ProbeTokens.check(tokens)
            return
        }
        guard (model == nil) != (shards == nil) else { throw ValidationError("with --reference, give either a model folder or --shards, not both") }
        _ = try dump.layerRange()
    }

    func run() throws {
        if let reference {
            try ParityRuns.againstDump(
                model: model, shards: shards, reference: reference, forward: forward, tolerance: tolerance, dump: dump, reporting: reporting)
        } else if let model, let shards {
            try ParityRuns.againstUnsharded(model: model, shards: shards, tokens: tokens, forward: forward, tolerance: tolerance, reporting: reporting)
        }
    }
}

/// The two parity runs, shared by the subcommands and the old spelling.
enum ParityRuns {
    /// The pass of `model` (or of the shard set `shards`; exactly one is given) against the dump `reference`.
    static func againstDump(
        model: String?, shards: String?, reference: String, forward: ForwardOptions, tolerance: ToleranceOptions, dump: DumpRunOptions,
        reporting: ReportOptions
    ) throws {
        guard let source = shards ?? model else { throw ValidationError("with --reference, give either a model folder or --shards, not both") }
        // Checked before the run (and again when written): never a link, device or folder, never inside an input.
        let plotInputs = [model, shards, ReferenceDump.filePath(of: reference)].compactMap { $0 }
        if let plot = dump.plot { try OutputPaths.checkFile(plot, inputs: plotInputs) }
        if VisionDump.isVisionDump(reference) {  // the vision tower, merger and projector (rank 0 of a shard set holds them whole)
            let rank0 = try shards.map { try PackTensorStore(folder: $0 + "/" + ShardSetManifest.rankFolder(0), asRank: true) }
            let opened = try rank0 == nil ? ModelStore.open(source) : nil
            let tower = try VisionTower(model: rank0?.config ?? opened!.config, store: rank0 ?? opened!.store, threads: forward.threads)
            let report = try VisionParity.run(
                tower: tower, reference: reference, tolerance: Tolerance(atol: tolerance.atol ?? Tolerance().atol, rtol: tolerance.rtol), model: source)
            if reporting.json { try printJSON(report) } else { print(terminalText(report.renderText())) }
            if !report.pass { throw ExitCode(1) }
            return
        }
        let referenceDump = try ReferenceDump(spec: reference)
        let pass: any LanguageModelPass = try shards.map { try forward.sharded($0, declared: referenceDump.dequant) }
            ?? forward.forwardPass(model: source, declared: referenceDump.dequant)
        if !reporting.quiet { forward.warnAboutWork(tokens: referenceDump.batch, layers: pass.forward.numLayers, source: referenceDump.label) }
        let slice = try dump.layerRange()
        let (bar, progress) = reporting.progress("parity", unit: "layers")
        let report = try ParityRun.run(
            model: source, forward: pass, reference: referenceDump,
            tolerance: Tolerance(atol: tolerance.atol ?? Tolerance().atol, rtol: tolerance.rtol, routingMargin: dump.routingMargin), layers: slice,
            isolated: !dump.chainedOnly, progress: progress)
        bar?.finish()
        if let plot = dump.plot {
            try OutputPaths.checkFile(plot, inputs: plotInputs)
            try AtomicFile.write(Array(report.renderSVG().utf8), to: plot)
        }
        if reporting.json { try printJSON(report) } else { print(terminalText(report.renderText())) }
        if !report.pass { throw ExitCode(1) }
    }

    /// The sharded pass against the unsharded one on probe tokens: logits within --atol (default 1e-5 here) or
    /// --rtol times the largest logit.
    static func againstUnsharded(
        model: String, shards: String, tokens: Int, forward: ForwardOptions, tolerance: ToleranceOptions, reporting: ReportOptions
    ) throws {
        let whole = try forward.forwardPass(model: model, declared: nil)
        let sharded = try forward.sharded(shards, declared: nil)
        let ids = ModelAgreement.probeIDs(count: tokens, vocab: whole.forward.vocabSize)
        let (bar, progress) = reporting.progress("parity", unit: "layers")
        let report = try ModelAgreement.run(sharded, against: whole, ids: ids, atol: tolerance.atol ?? 1e-5, rtol: tolerance.rtol, progress: progress)
        bar?.finish()
        if reporting.json { try printJSON(report) } else { print(terminalText(report.renderText(test: shards, reference: model)), terminator: "") }
        if !report.pass { throw ExitCode(1) }
    }
}
