import ArgumentParser
import Forward
import Foundation
import GGUFModel
import ModelStore
import PackFormat
import Parity
import Shard
import TensorCore

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
        let mode = dequant ?? declared.flatMap(Dequantization.init(rawValue:)) ?? .exact
        let weights = try ForwardModel.open(model, dequant: mode).weights
        // What a GGUF lacks, or what llama.cpp would read differently, is said before the run.
        for note in (weights as? GGUFWeightSource)?.notes ?? [] {
            FileHandle.standardError.write(Data("note: \(displayed(model)): \(note)\n".utf8))
        }
        return ForwardPass(weights: weights, threads: threads)
    }

    func sharded(_ folder: String, declared: String?) throws -> ShardedForward {
        try ShardSet.open(folder: folder, dequant: dequant ?? declared.flatMap(Dequantization.init(rawValue:)) ?? .exact, threads: threads)
    }
}

struct CompareCommand: ParsableCommand, ReadsFolders, Reports {
    static let configuration = CommandConfiguration(
        commandName: "compare",
        abstract: "Compare logits with reference logits: KL divergence, Δp, top-1 and top-5 agreement, perplexity.",
        discussion: """
            The reference is a dump (FILE.h5[:/group]) with input_ids and logits, or the compact form of k2pack logits. The \
            test is another dump with logits for the same input_ids, or a model folder, which is then run (layer-major) on \
            the reference's input_ids.
            """)

    @Argument(help: "Reference logits: FILE.h5 or FILE.h5:/group.")
    var reference: String

    @Argument(help: "Test logits (FILE.h5[:/group]), a model folder (Hugging Face or k2pack) or a GGUF file (or any part of a split set).")
    var test: String

    @Option(help: "A model as the test: windows per matrix product inside a layer (1: as logits makes references, each window's arithmetic that of running it alone; more: faster).")
    var batchWindows = 1

    @Option(help: "A model as the test: largest memory for its logits (bytes, or with K, M, G or T; default 3/4 of this machine's memory); beyond it they wait in an unlinked temporary file in $TMPDIR.")
    var memory: String?

    @Option(name: .customLong("part"), help: "Another part of the reference (k2pack logits --rank R --world N), repeatable: every part's positions are pooled, so each statistic is over all of them. The test must be a model folder.")
    var parts: [String] = []

    @OptionGroup var forward: ForwardOptions

    @OptionGroup var reporting: ReportOptions

    @OptionGroup var folders: FolderOptions

    func validate() throws {
        guard batchWindows >= 1 else { throw ValidationError("--batch-windows \(batchWindows): expected 1 or more") }
        _ = try LogitsCommand.bytes(memory)
    }

    func run() throws {
        let refs = try ([reference] + parts).map { try ReferenceDump(spec: $0) }
        let ref = refs[0], tokens = ref.batch.tokens
        for part in refs.dropFirst() where part.batch.tokens != tokens {
            throw ParityError.inputShapeMismatch(
                test: part.label, found: [part.batch.sequences, part.batch.tokens], reference: ref.label, expected: [part.batch.sequences, tokens])
        }
        if refs.count > 1, !Self.isModel(test) {
            throw ValidationError("--part needs a model (a folder or a GGUF file) as the test: it is run on every part's windows")
        }
        // Every part's positions pooled, in order: the statistics are over all of them (not averages of averages).
        let ids = refs.flatMap(\.inputIDs)
        let windows = refs.reduce(0) { $0 + $1.batch.sequences }
        let stats: LogitStatistics
        if let vocab = try ref.logitsVocabulary() {
            for part in refs.dropFirst() {
                guard try part.logitsVocabulary() == vocab else {
                    throw ParityError.noMatchingLogits(dump: part.label, expected: [part.batch.sequences, tokens, vocab])
                }
            }
            stats = try LogitStatistics(
                ids: ids, sequences: windows, tokens: tokens, vocab: vocab,
                reference: Self.pooled(refs, vocab: vocab), test: testLogits(ref, ids: ids, windows: windows, vocab: vocab))
        } else if ref.has(CompactLogits.Dataset.topIDs) {
            // The compact form (k2pack logits without --full): the vocabulary is the test's; the reference is read
            // (and checked) before the test model runs.
            var compact: CompactLogits?
            let source = try testLogits(ref, ids: ids, windows: windows, vocab: nil) { vocab in
                var pieces: [CompactLogits] = []
                for part in refs {
                    guard let piece = try CompactLogits.read(part, vocab: vocab) else { throw ParityError.noLogits(dump: part.label) }
                    pieces.append(piece)
                }
                compact = try CompactLogits.joined(pieces)
            }
            stats = try LogitStatistics(ids: ids, sequences: windows, tokens: tokens, reference: compact!, test: source)
        } else {
            throw ParityError.noLogits(dump: ref.label)
        }
        if reporting.json { try printJSON(stats) } else { print(terminalText(stats.renderText())) }
    }

    /// A model to run (a folder, or a GGUF file), rather than a dump to read.
    static func isModel(_ path: String) -> Bool {
        var isDirectory: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) && (isDirectory.boolValue || ForwardModel.isGGUF(path))
    }

    /// The parts' logits as one source, rows in part order.
    static func pooled(_ refs: [ReferenceDump], vocab: Int) -> LogitStatistics.Source {
        guard refs.count > 1 else { return refs[0].logitSource(vocab: vocab) }
        let sources = refs.map { $0.logitSource(vocab: vocab) }
        var starts = [0]
        for part in refs { starts.append(starts.last! + part.batch.rows) }
        return LogitStatistics.Source(label: "\(refs[0].label) and its parts' logits") { range in
            var out: [Float] = []
            var r = range.lowerBound
            while r < range.upperBound {
                let p = starts.lastIndex { $0 <= r }!
                let end = min(range.upperBound, starts[p + 1])
                out += try sources[p].rows((r - starts[p])..<(end - starts[p]))
                r = end
            }
            return out
        }
    }

    /// The test's logits for the reference's windows (`ids`, `windows` × the reference's tokens): a model folder run
    /// layer-major over them, or another dump's. Its vocabulary must be `expected` when given; `accept` sees it
    /// before the model runs.
    func testLogits(_ ref: ReferenceDump, ids: [Int32], windows: Int, vocab expected: Int?, accept: (Int) throws -> Void = { _ in }) throws -> LogitStatistics.Source {
        if Self.isModel(test) {
            let pass = try forward.forwardPass(model: test, declared: ref.dequant)
            let vocab = pass.weights.forward.vocabSize
            if let expected, vocab != expected { throw ParityError.vocabularyMismatch(model: test, found: vocab, expected: expected) }
            try accept(vocab)
            let batch = ForwardPass.Batch(sequences: windows, tokens: ref.batch.tokens)
            forward.warnAboutWork(tokens: batch, layers: pass.weights.forward.numLayers, source: ref.label)
            let driver = LayerMajorForward(pass: pass, windowsPerBatch: batchWindows)
            let budget = try LogitsCommand.bytes(memory) ?? Int(ProcessInfo.processInfo.physicalMemory / 4 * 3)
            if let bytes = CheckedMath.product([ids.count, vocab, 4]), bytes <= budget {
                let logits = try driver.logits(ids: ids, windows: windows, tokens: ref.batch.tokens)
                return .values(logits, vocab: vocab, label: "\(displayed(test)) logits")
            }
            let rows = try driver.logitsOnDisk(ids: ids, windows: windows, tokens: ref.batch.tokens, folder: FileManager.default.temporaryDirectory.path)
            return LogitStatistics.Source(label: "\(displayed(test)) logits") { range in try rows.rows(range) }
        }
        let other = try ReferenceDump(spec: test)
        guard other.batch.sequences == ref.batch.sequences, other.batch.tokens == ref.batch.tokens else {
            throw ParityError.inputShapeMismatch(
                test: other.label, found: [other.batch.sequences, other.batch.tokens], reference: ref.label, expected: [ref.batch.sequences, ref.batch.tokens])
        }
        guard other.inputIDs == ref.inputIDs else {
            throw ParityError.otherInputIDs(test: other.label, reference: ref.label)
        }
        guard let vocab = try other.logitsVocabulary(), expected == nil || vocab == expected else {
            throw ParityError.noMatchingLogits(dump: other.label, expected: [ref.batch.sequences, ref.batch.tokens] + (expected.map { [$0] } ?? []))
        }
        try accept(vocab)
        return other.logitSource(vocab: vocab)
    }
}
