import ArgumentParser
import Forward
import Foundation
import ModelStore
import PackFormat
import Parity
import Shard
import TensorCore
import Vision

extension Dequantization: ExpressibleByArgument {}

/// Options shared by the commands that run the reference forward pass.
struct ForwardOptions: ParsableArguments {
    @Option(help: "INT4 dequantization: exact (q·scale in float32) or bf16 (bf16(q·scale), as transformers loads it). Default: what the reference dump declares, else exact.")
    var dequant: Dequantization?

    @Option(help: "Threads for matrix products and weight decoding.")
    var threads = ProcessInfo.processInfo.activeProcessorCount

    /// Largest `--threads` accepted (far above any machine's cores; a thread pool of 2⁶² would never start).
    static let maxThreads = 4096

    func validate() throws {
        guard threads >= 1, threads <= Self.maxThreads else {
            throw ValidationError("--threads \(threads): expected 1 to \(Self.maxThreads) (this machine has \(ProcessInfo.processInfo.activeProcessorCount) cores)")
        }
    }

    /// Tokens (B × T) above which the reference pass is slow enough to warn about, and tokens per sequence above
    /// which its attention (quadratic in T) is.
    static let warnRows = 8192
    static let warnTokens = 4096

    /// Prints a warning with the projected work when a dump asks for a long float32 forward pass.
    func warnAboutWork(tokens batch: ForwardPass.Batch, layers: Int, source: String) {
        guard batch.rows > Self.warnRows || batch.tokens > Self.warnTokens else { return }
        let message = "warning: \(displayed(source)): input_ids holds \(batch.rows) tokens (\(batch.sequences) × \(batch.tokens)); the float32 reference pass "
            + "runs every one through \(layers) layers, with attention quadratic in the \(batch.tokens) tokens of each sequence "
            + "(\(batch.sequences) × \(batch.tokens)² = \(Double(batch.sequences) * Double(batch.tokens) * Double(batch.tokens)) query-key pairs per layer): "
            + "expect a long run; a dump of a few hundred tokens checks parity as well\n"
        FileHandle.standardError.write(Data(message.utf8))
    }

    func forwardPass(model: String, declared: String?) throws -> ForwardPass {
        let opened = try ModelStore.open(model)
        let mode = dequant ?? declared.flatMap(Dequantization.init(rawValue:)) ?? .exact
        let weights = try ModelWeights(config: opened.config, store: opened.store, dequant: mode)
        return ForwardPass(weights: weights, threads: threads)
    }

    func sharded(_ folder: String, declared: String?) throws -> ShardedForward {
        try ShardSet.open(folder: folder, dequant: dequant ?? declared.flatMap(Dequantization.init(rawValue:)) ?? .exact, threads: threads)
    }
}

struct ParityCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "parity",
        abstract: "Run the float32 reference forward pass and compare it, layer by layer, with a reference dump.",
        discussion: """
            The dump (HDF5, docs/REFERENCE-DUMPS.md) needs input_ids; every other dataset is compared when present. \
            Each layer is compared twice: in our own chain from the embedding, and alone, fed the reference's layer_in, \
            so one bad layer does not hide the rest. A part passes when its largest difference is within --atol and \
            within --rtol times the reference's largest magnitude. Exit status 1 when anything fails.
            """)

    @Argument(help: "The model: a Hugging Face checkpoint folder or a k2pack folder.")
    var model: String?

    @Option(help: "The reference dump: FILE.h5 or FILE.h5:/group.")
    var reference: String?

    @Option(help: "Run from a shard set's rank files (k2pack shard), all-reduce and all-gather simulated: against the dump, or without one against MODEL's unsharded pass (the logits then pass within --atol, default 1e-5, or within --rtol times the largest logit, and the same experts must be chosen).")
    var shards: String?

    @Option(help: "With --shards and a model: how many probe tokens (spread over the vocabulary) both passes run.")
    var tokens = 16

    @OptionGroup var forward: ForwardOptions

    @Option(help: "Run only layers A..B (from the dump's layers/A/layer_in).")
    var layers: String?

    @Option(help: "Largest absolute difference allowed (default 1e-4 against a dump; 1e-5 on logits, shards against the unsharded pass).")
    var atol: Double?

    @Option(help: "Largest difference allowed relative to the reference tensor's largest magnitude.")
    var rtol = Tolerance().rtol

    @Option(help: "Expert sets may differ where our k-th and (k+1)-th selection scores are closer than this.")
    var routingMargin = Tolerance().routingMargin

    @Flag(help: "Skip the per-layer runs fed the reference's own layer_in (half the time).")
    var chainedOnly = false

    @Option(help: "Write an SVG chart of the error per layer.")
    var plot: String?

    @OptionGroup var reporting: ReportOptions

    @OptionGroup var folders: FolderOptions

    func validate() throws {
        for (name, value) in [("--atol", atol), ("--rtol", rtol), ("--routing-margin", routingMargin)] {
            if let value, !(value.isFinite && value >= 0) {
                throw ValidationError("\(name) \(value): expected a finite number ≥ 0")
            }
        }
    }

    func run() throws {
        folders.apply()
        guard let reference else {
            guard let shards, let model else { throw ValidationError("give --reference DUMP (and a model or --shards), or a model and --shards") }
            guard plot == nil else { throw ValidationError("--plot charts the error per layer against a dump: it needs --reference") }
            return try runAgainstUnsharded(model: model, shards: shards)
        }
        guard (model == nil) != (shards == nil) else { throw ValidationError("with --reference, give either a model folder or --shards, not both") }
        // Checked before the run (and again when written): never a link, device or folder, never inside an input.
        let plotInputs = [model, shards, ReferenceDump.filePath(of: reference)].compactMap { $0 }
        if let plot { try OutputPaths.checkFile(plot, inputs: plotInputs) }
        if VisionDump.isVisionDump(reference) {  // the vision tower, merger and projector (rank 0 of a shard set holds them whole)
            let rank0 = try shards.map { try PackTensorStore(folder: $0 + "/" + ShardSetManifest.rankFolder(0), asRank: true) }
            let opened = try rank0 == nil ? ModelStore.open(model!) : nil
            let tower = try VisionTower(model: rank0?.config ?? opened!.config, store: rank0 ?? opened!.store, threads: forward.threads)
            let report = try VisionParity.run(tower: tower, reference: reference, tolerance: Tolerance(atol: atol ?? Tolerance().atol, rtol: rtol), model: shards ?? model!)
            if reporting.json { try printJSON(report) } else { print(terminalText(report.renderText())) }
            if !report.pass { throw ExitCode(1) }
            return
        }
        let dump = try ReferenceDump(spec: reference)
        let pass: any LanguageModelPass = try shards.map { try forward.sharded($0, declared: dump.dequant) }
            ?? forward.forwardPass(model: model!, declared: dump.dequant)
        if !reporting.quiet { forward.warnAboutWork(tokens: dump.batch, layers: pass.forward.numLayers, source: dump.label) }
        let slice = try layers.map(parseLayers)
        let bar = reporting.quiet || reporting.json ? nil : ProgressBar(label: "parity", unit: "layers")
        let report = try ParityRun.run(
            model: shards ?? model!, forward: pass, reference: dump,
            tolerance: Tolerance(atol: atol ?? Tolerance().atol, rtol: rtol, routingMargin: routingMargin), layers: slice, isolated: !chainedOnly,
            progress: bar.map { bar in { bar.update($0, of: $1) } })
        bar?.finish()
        if let plot {
            try OutputPaths.checkFile(plot, inputs: plotInputs)
            try AtomicFile.write(Array(report.renderSVG().utf8), to: plot)
        }
        if reporting.json { try printJSON(report) } else { print(terminalText(report.renderText())) }
        if !report.pass { throw ExitCode(1) }
    }

    /// The sharded pass against the unsharded one on probe tokens: logits within --atol (default 1e-5 here) or
    /// --rtol times the largest logit.
    func runAgainstUnsharded(model: String, shards: String) throws {
        guard tokens >= 1, tokens <= 4096 else { throw ValidationError("--tokens must be in 1...4096") }
        let whole = try forward.forwardPass(model: model, declared: nil)
        let sharded = try forward.sharded(shards, declared: nil)
        let ids = ModelAgreement.probeIDs(count: tokens, vocab: whole.forward.vocabSize)
        let bar = reporting.quiet || reporting.json ? nil : ProgressBar(label: "parity", unit: "layers")
        let atol = self.atol ?? 1e-5
        let report = try ModelAgreement.run(
            sharded, against: whole, ids: ids, atol: atol, rtol: rtol, progress: bar.map { bar in { bar.update($0, of: $1) } })
        bar?.finish()
        if reporting.json { try printJSON(report) } else { print(terminalText(report.renderText(test: shards, reference: model)), terminator: "") }
        if !report.pass { throw ExitCode(1) }
    }

    /// "A..B" or a single layer "A".
    func parseLayers(_ text: String) throws -> ClosedRange<Int> {
        let pieces = text.components(separatedBy: "..")
        guard pieces.count <= 2, let a = Int(pieces[0]), let b = Int(pieces[pieces.count - 1]), a >= 0, a <= b else {
            throw ValidationError("--layers \(displayed(text)): expected A..B with 0 ≤ A ≤ B, or a single layer")
        }
        return a...b
    }
}

struct CompareCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compare",
        abstract: "Compare logits with reference logits: KL divergence, Δp, top-1 and top-5 agreement, perplexity.",
        discussion: """
            The reference is a dump (FILE.h5[:/group]) with input_ids and logits. The test is another dump with logits \
            for the same input_ids, or a model folder, which is then run on the reference's input_ids.
            """)

    @Argument(help: "Reference logits: FILE.h5 or FILE.h5:/group.")
    var reference: String

    @Argument(help: "Test logits (FILE.h5[:/group]) or a model folder (Hugging Face or k2pack).")
    var test: String

    @OptionGroup var forward: ForwardOptions

    @Flag(help: "Print the statistics as JSON.")
    var json = false

    @OptionGroup var folders: FolderOptions

    func run() throws {
        folders.apply()
        let ref = try ReferenceDump(spec: reference)
        // The shape is checked before anything is read; the logits are then read in row blocks.
        guard let vocab = try ref.logitsVocabulary() else { throw ForwardError.input("\(displayed(ref.label)) has no logits dataset") }
        let testSource: LogitStatistics.Source
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: test, isDirectory: &isDirectory), isDirectory.boolValue {
            let pass = try forward.forwardPass(model: test, declared: ref.dequant)
            guard pass.weights.forward.vocabSize == vocab else {
                throw ForwardError.input("\(displayed(test)) has a vocabulary of \(pass.weights.forward.vocabSize), the reference logits \(vocab)")
            }
            forward.warnAboutWork(tokens: ref.batch, layers: pass.weights.forward.numLayers, source: ref.label)
            let logits = try pass.logits(for: ref.inputIDs, batch: ref.batch)
            testSource = .values(logits, vocab: vocab, label: "\(displayed(test)) logits")
        } else {
            let other = try ReferenceDump(spec: test)
            guard other.batch.sequences == ref.batch.sequences, other.batch.tokens == ref.batch.tokens else {
                throw ForwardError.input(
                    "\(displayed(other.label)) has input_ids of shape [\(other.batch.sequences), \(other.batch.tokens)], \(displayed(ref.label)) [\(ref.batch.sequences), \(ref.batch.tokens)]")
            }
            guard other.inputIDs == ref.inputIDs else {
                throw ForwardError.input("\(displayed(other.label)) was made from other input_ids than \(displayed(ref.label))")
            }
            guard let otherVocab = try other.logitsVocabulary(), otherVocab == vocab else {
                throw ForwardError.input("\(displayed(other.label)) has no logits dataset of shape [\(ref.batch.sequences), \(ref.batch.tokens), \(vocab)]")
            }
            testSource = other.logitSource(vocab: vocab)
        }
        let stats = try LogitStatistics(
            ids: ref.inputIDs, sequences: ref.batch.sequences, tokens: ref.batch.tokens, vocab: vocab,
            reference: ref.logitSource(vocab: vocab), test: testSource)
        if json { try printJSON(stats) } else { print(terminalText(stats.renderText())) }
    }
}
