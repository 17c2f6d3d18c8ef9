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
            The reference is a dump (FILE.h5[:/group]) with input_ids and logits. The test is another dump with logits \
            for the same input_ids, or a model folder, which is then run on the reference's input_ids.
            """)

    @Argument(help: "Reference logits: FILE.h5 or FILE.h5:/group.")
    var reference: String

    @Argument(help: "Test logits (FILE.h5[:/group]), a model folder (Hugging Face or k2pack) or a GGUF file (or any part of a split set).")
    var test: String

    @OptionGroup var forward: ForwardOptions

    @OptionGroup var reporting: ReportOptions

    @OptionGroup var folders: FolderOptions

    func run() throws {
        let ref = try ReferenceDump(spec: reference)
        // The shape is checked before anything is read; the logits are then read in row blocks.
        guard let vocab = try ref.logitsVocabulary() else { throw ParityError.noLogits(dump: ref.label) }
        let testSource: LogitStatistics.Source
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: test, isDirectory: &isDirectory), isDirectory.boolValue || ForwardModel.isGGUF(test) {
            let pass = try forward.forwardPass(model: test, declared: ref.dequant)
            guard pass.weights.forward.vocabSize == vocab else {
                throw ParityError.vocabularyMismatch(model: test, found: pass.weights.forward.vocabSize, expected: vocab)
            }
            forward.warnAboutWork(tokens: ref.batch, layers: pass.weights.forward.numLayers, source: ref.label)
            let logits = try pass.logits(for: ref.inputIDs, batch: ref.batch)
            testSource = .values(logits, vocab: vocab, label: "\(displayed(test)) logits")
        } else {
            let other = try ReferenceDump(spec: test)
            guard other.batch.sequences == ref.batch.sequences, other.batch.tokens == ref.batch.tokens else {
                throw ParityError.inputShapeMismatch(
                    test: other.label, found: [other.batch.sequences, other.batch.tokens], reference: ref.label, expected: [ref.batch.sequences, ref.batch.tokens])
            }
            guard other.inputIDs == ref.inputIDs else {
                throw ParityError.otherInputIDs(test: other.label, reference: ref.label)
            }
            guard let otherVocab = try other.logitsVocabulary(), otherVocab == vocab else {
                throw ParityError.noMatchingLogits(dump: other.label, expected: [ref.batch.sequences, ref.batch.tokens, vocab])
            }
            testSource = other.logitSource(vocab: vocab)
        }
        let stats = try LogitStatistics(
            ids: ref.inputIDs, sequences: ref.batch.sequences, tokens: ref.batch.tokens, vocab: vocab,
            reference: ref.logitSource(vocab: vocab), test: testSource)
        if reporting.json { try printJSON(stats) } else { print(terminalText(stats.renderText())) }
    }
}
