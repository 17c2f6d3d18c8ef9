import ArgumentParser
import Forward
import Foundation
import GGUFModel
import ModelStore
import Parity
import ReferenceLogits
import TensorCore
import Tokenizer

/// `k2pack logits`: reference logits from a text (the model's own tokenizer) or a dump's input_ids, made by the
/// float32 forward pass run layer-major over all windows (ReferenceLogits).
struct LogitsCommand: ParsableCommand, ReadsFolders, Reports {
    static let configuration = CommandConfiguration(
        commandName: "logits",
        abstract: "Make reference logits on the CPU: the float32 forward pass over windows of a text or of a dump's input_ids.",
        discussion: """
            The text is tokenized with the model's own tokenizer (tiktoken.model + tokenizer_config.json in the model folder) \
            and cut into consecutive windows of --ctx tokens (a tail that does not fill a window is dropped; with --bos each \
            window is the BOS token and the next --ctx − 1 text tokens). Every window goes through layer L before layer L+1 is \
            read. The output (docs/REFERENCE-DUMPS.md) holds input_ids [C, ctx] and, with --full, logits [C, ctx, V] float32; \
            without --full, the compact form: per position the --top-k largest logits, the log-normalizer, the tail mass and \
            the next token's log-probability. It is written under a temporary name and renamed into place when complete. \
            Prints the perplexity. --rank R --world N (or RANK/WORLD_SIZE, SLURM_PROCID/SLURM_NTASKS) makes every N-th window \
            from window R; `compare` sums the parts' statistics. With --resume, the hidden states of all windows after each \
            finished layer and a small record (model, input and options, the layer, the states' SHA-256) are kept beside \
            the output; a killed run started again with --resume goes on after that layer and writes the same bytes.
            """)

    @Argument(help: "The model: a Hugging Face checkpoint folder or a k2pack folder (or give --shards).")
    var model: String?

    @Option(help: "Run from a shard set's rank files (k2pack shard); the tokenizer files are read from its folder.")
    var shards: String?

    @Option(help: "A UTF-8 text file to tokenize with the model's tokenizer.")
    var text: String?

    @Option(help: "Take the windows from a reference dump's input_ids instead: FILE.h5 or FILE.h5:/group.")
    var ids: String?

    @Option(help: "Where to write: FILE.h5 or FILE.h5:/group (the file is written whole).")
    var out: String

    @Option(help: "Tokens per window (with --text; default \(LogitsCommand.defaultContext)).")
    var ctx: Int?

    @Flag(help: "Start every window with the tokenizer's BOS token.")
    var bos = false

    @Flag(help: "Write the full logits [C, ctx, V] float32 instead of the compact form.")
    var full = false

    @Option(help: "Compact form: logits kept per position (\(CompactLogits.bytesPerPosition(k: CompactLogits.defaultK)) bytes per position at the default).")
    var topK = CompactLogits.defaultK

    @Option(help: "Largest memory for activations and logits, checked before the run: bytes, or with K, M, G or T (default: 3/4 of this machine's memory).")
    var memory: String?

    @Option(help: "Windows per matrix product inside a layer (1: each window's arithmetic exactly that of running it alone; more: faster).")
    var batchWindows = 1

    @Flag(help: "Keep a resumable record beside the output after every layer, and go on from the one a killed run of the same model, input and options left (removed when the output is in place).")
    var resume = false

    @Option(help: "This process's share: every --world-th window from window --rank.")
    var rank: Int?

    @Option(help: "Processes sharing the windows (with --rank).")
    var world: Int?

    @OptionGroup var forward: ForwardOptions
    @OptionGroup var reporting: ReportOptions
    @OptionGroup var folders: FolderOptions

    static let defaultContext = 512

    func validate() throws {
        guard (model == nil) != (shards == nil) else { throw ValidationError("give either a model folder or --shards, not both") }
        guard (text == nil) != (ids == nil) else { throw ValidationError("give either --text FILE or --ids FILE.h5[:/group], not both") }
        if ids != nil, bos { throw ValidationError("--bos applies to --text; a dump's input_ids are used as they are") }
        guard (rank == nil) == (world == nil) else { throw ValidationError("--rank and --world go together") }
        guard batchWindows >= 1 else { throw ValidationError("--batch-windows \(batchWindows): expected 1 or more") }
        _ = try Self.bytes(memory)
    }

    /// `--memory`: bytes, or a number with K, M, G or T (powers of 1024).
    static func bytes(_ text: String?) throws -> Int? {
        guard let text else { return nil }
        let units: [Character: Int] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40]
        var digits = text.uppercased()
        if digits.hasSuffix("B") { digits.removeLast() }
        var scale = 1
        if let last = digits.last, let unit = units[last] { scale = unit; digits.removeLast() }
        guard let value = Int(digits), value > 0, let total = CheckedMath.multiply(value, scale) else {
            throw ValidationError("--memory \(displayed(text)): expected a positive size such as 24G, 512M or a number of bytes")
        }
        return total
    }

    /// --rank/--world, else a launcher's RANK/WORLD_SIZE or SLURM_PROCID/SLURM_NTASKS, else nil (all windows).
    func share() throws -> (rank: Int, world: Int)? {
        if let rank, let world { return (rank, world) }
        let env = ProcessInfo.processInfo.environment
        for (rankKey, sizeKey) in [("RANK", "WORLD_SIZE"), ("SLURM_PROCID", "SLURM_NTASKS")] {
            guard let text = env[rankKey] else { continue }
            guard let process = Int(text), let sizeText = env[sizeKey], let size = Int(sizeText), size >= 1, process >= 0, process < size else {
                throw ValidationError("\(rankKey)=\(displayed(text)) with \(sizeKey)=\(displayed(env[sizeKey] ?? "unset")) is not a process of a launch; set both, or pass --rank and --world")
            }
            return (process, size)
        }
        return nil
    }

    /// The output's `dequant` attribute (docs/REFERENCE-DUMPS.md): how the weights became floats — `ggml` for a
    /// GGUF (its block quantizations, dequantized as ggml does), the pass's INT4 decoding (`exact` or `bf16`) for a
    /// checkpoint with compressed-tensors INT4 weights, `none` otherwise.
    static func dequantAttribute(_ pass: any LanguageModelPass) -> String {
        let weights = (pass as? ForwardPass)?.weights ?? (pass as? ShardedForward)?.ranks.first?.weights
        if weights is GGUFWeightSource { return "ggml" }
        let int4 = (weights as? ManifestWeightSource)?.config.quantization?.groups.contains { group in
            if case .packQuantized = group.method { return true }
            return false
        } ?? false
        return int4 ? pass.dequant.rawValue : "none"
    }

    func run() throws {
        let folder = shards ?? model!
        var declared: String?
        var input: TokenWindows
        var inputs = [folder]
        if let ids {
            let dump = try ReferenceDump(spec: ids)
            declared = dump.dequant
            input = try TokenWindows.of(dump, context: ctx)
            inputs.append(ReferenceDump.filePath(of: ids))
        } else {
            let file = text!
            // The context is checked before the tokenizer is loaded or the text read.
            let context = ctx ?? Self.defaultContext
            guard context > 0 else { throw LogitsError.contextZero }
            let tokenizer = try KimiTokenizer.load(directory: folder)
            let bytes = try KimiTokenizer.readFile(file, limit: Int(Int32.max), what: "a text")
            let content = try KimiTokenizer.text(fromUTF8: bytes, file: file)
            input = try TokenWindows.cut(tokenizer.encode(content), context: context, bos: bos ? tokenizer.config.bosID : nil, source: file)
            inputs.append(file)
        }
        if let (r, w) = try share() { input = try input.share(rank: r, world: w) }
        // Every layer allocates and frees the same large buffers: keep their pages instead of faulting in new ones.
        Kernels.keepFreedMemory()
        let pass: any LanguageModelPass = try shards.map { try forward.sharded($0, declared: declared) }
            ?? forward.forwardPass(model: folder, declared: declared)
        let budget = try Self.bytes(memory) ?? Int(ProcessInfo.processInfo.physicalMemory / 4 * 3)
        let (bar, shown) = reporting.progress("logits", unit: "steps")
        let report = IOReport.fromEnvironment()
        var progress = shown
        if let report {
            progress = { done, total in
                shown?(done, total)
                report.step(done, of: total)
            }
        }
        let result = try LogitsReference.make(
            pass: pass, input: input, form: full ? .full : .compact(k: topK), output: out, inputs: inputs, memoryBudget: budget,
            windowsPerBatch: batchWindows, resume: resume ? LogitsResume(model: LogitsResume.modelIdentity(path: folder, pass: pass)) : nil,
            attributes: ["dequant": Self.dequantAttribute(pass)], progress: progress)
        bar?.finish()
        report?.finish()
        if reporting.json { try printJSON(result); return }
        let form = result.topK.map { "compact form, top \($0)" } ?? "full logits"
        print(String(format: "perplexity %.4f over %d predictions (%d windows of %d tokens); wrote %@ (%@)",
                     result.perplexity, result.predictions, result.windows, result.tokens, displayed(out), form))
    }
}

/// `K2PACK_IO_REPORT=1` (for scripts/bench/logits_io.sh, not a user option): the wall time of each layer-major step
/// and, at the end, this process's `/proc/self/io` (`rchar`, `read_bytes`, …), printed to standard error.
final class IOReport: @unchecked Sendable {
    private let lock = NSLock()
    private let start = Date()
    private var last = Date()
    private var lastCPU = 0.0

    static func fromEnvironment() -> IOReport? {
        ProcessInfo.processInfo.environment["K2PACK_IO_REPORT"] == "1" ? IOReport() : nil
    }

    func step(_ done: Int, of total: Int) {
        lock.lock()
        defer { lock.unlock() }
        let now = Date()
        FileHandle.standardError.write(Data(String(format: "io-report: step %d/%d %.3f s (at %.3f s)\n", done, total, now.timeIntervalSince(last), now.timeIntervalSince(start)).utf8))
        let phases = PhaseTimes.take().map { "\($0.phase.rawValue) " + String(format: "%.3f s", $0.seconds) }.joined(separator: ", ")
        FileHandle.standardError.write(Data("io-report: phases \(done)/\(total) \(phases)\n".utf8))
        // CPU seconds of the whole process (all threads) in the step: a load-independent measure beside wall time.
        var usage = rusage()
        #if os(Linux)
        getrusage(RUSAGE_SELF.rawValue, &usage)
        #else
        getrusage(RUSAGE_SELF, &usage)
        #endif
        let cpu = Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
        FileHandle.standardError.write(Data(String(format: "io-report: cpu %d/%d %.3f s\n", done, total, cpu - lastCPU).utf8))
        lastCPU = cpu
        last = now
    }

    func finish() {
        let io = (try? String(contentsOfFile: "/proc/self/io", encoding: .utf8)) ?? "(no /proc/self/io)\n"
        let lines = io.split(separator: "\n").map { "io-report: \($0)\n" }.joined()
        FileHandle.standardError.write(Data((String(format: "io-report: total %.3f s\n", Date().timeIntervalSince(start)) + lines).utf8))
    }
}
