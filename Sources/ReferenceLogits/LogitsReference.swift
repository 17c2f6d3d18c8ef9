import FileIO
import Forward
import Foundation
import PackFormat
import Parity
import TensorCore

/// `k2pack logits`: reference logits made on the CPU by the float32 forward pass, run layer-major over all windows
/// (`LayerMajorForward`), written as a reference dump (docs/REFERENCE-DUMPS.md): `input_ids` and, in the full
/// form, `logits [C, T, V]` float32, or in the compact form the top-K logits per position (`CompactLogits`).
/// The file is written under a temporary name and renamed into place when complete: nothing partial is left.
public enum LogitsReference {
    public enum Form: Sendable, Equatable {
        case full
        case compact(k: Int)
    }

    /// What a run made.
    public struct Result: Codable, Sendable, Equatable {
        public var windows: Int
        public var tokens: Int
        /// Positions with a next token (all but each window's last).
        public var predictions: Int
        /// `exp(mean(−log p(next)))` over `predictions`.
        public var perplexity: Double
        /// Sum of `−log p(next)` (parts of a reference combine by summing this and `predictions`).
        public var negativeLogLikelihood: Double
        /// `full` or `compact`.
        public var form: String
        public var topK: Int?
        public var output: String
        /// Whether the hidden states waited in a temporary file between layers (they did not fit `--memory`).
        public var spilled: Bool

        enum CodingKeys: String, CodingKey {
            case windows, tokens, predictions, perplexity, negativeLogLikelihood = "nll", form, topK = "top_k", output, spilled
        }
    }

    /// Bytes the run holds for activations and its logits (`LayerMajorForward.estimatedBytes`, which counts one
    /// batch's logits, plus the compact form of every window), or nil when that overflows.
    public static func estimatedBytes(config: ForwardConfig, windows: Int, tokens: Int, form: Form, windowsPerBatch: Int, spilled: Bool = false) -> Int? {
        guard let run = LayerMajorForward.estimatedBytes(config: config, windows: windows, tokens: tokens, windowsPerBatch: windowsPerBatch, spilled: spilled),
            let positions = CheckedMath.multiply(windows, tokens)
        else { return nil }
        // Full logits go to the file a batch at a time (that batch is counted by the driver); the compact form is
        // held until the end.
        let perPosition: Int
        switch form {
        case .full: perPosition = 0
        case .compact(let k): perPosition = CompactLogits.bytesPerPosition(k: min(k, config.vocabSize))
        }
        return CheckedMath.multiply(positions, perPosition).flatMap { CheckedMath.add($0, run) }
    }

    /// Runs `pass` over `input` and writes `output` (`FILE.h5` or `FILE.h5:/group`). `memoryBudget` is checked
    /// before anything runs; `inputs` are the paths the output must not overwrite (model folder, text, dump);
    /// `attributes` are written as string attributes of the group (`dequant`: `dequantAttribute`).
    public static func make(
        pass: any LanguageModelPass, input: TokenWindows, form: Form, output: String, inputs: [String], memoryBudget: Int,
        windowsPerBatch: Int = 1, resume: LogitsResume? = nil, attributes: [String: String] = [:], progress: ProgressCallback? = nil
    ) throws -> Result {
        let config = pass.forward, vocab = config.vocabSize
        if case .compact(let k) = form, k < CompactLogits.minimumK { throw LogitsError.topK(k, minimum: CompactLogits.minimumK) }
        try input.check(vocabulary: vocab)
        let path = ReferenceDump.filePath(of: output), group = ReferenceDump.group(of: output)
        try OutputPaths.checkFile(path, inputs: inputs)
        // All hidden states in memory when they fit the budget; else in a temporary file beside the output, one
        // batch of windows held at a time.
        var spillFolder: String?
        // With --resume the states always wait in the checkpoint files: one group is held, as when spilled.
        let inMemory = resume != nil ? nil : estimatedBytes(config: config, windows: input.windows, tokens: input.tokens, form: form, windowsPerBatch: windowsPerBatch)
        if inMemory.map({ $0 > memoryBudget }) ?? true {
            let spilled = estimatedBytes(config: config, windows: input.windows, tokens: input.tokens, form: form, windowsPerBatch: windowsPerBatch, spilled: true)
            guard let spilled, spilled <= memoryBudget else {
                throw LogitsError.memory(needed: spilled, budget: memoryBudget, windows: input.windows, tokens: input.tokens)
            }
            spillFolder = OutputPaths.folder(of: path)
        }

        let T = input.tokens, prefix = group.isEmpty ? "" : group + "/"
        var compact: CompactLogits?
        if case .compact(let k) = form { compact = CompactLogits(k: k, vocab: vocab) }
        var nll = 0.0, predictions = 0
        let driver = LayerMajorForward(pass: pass, windowsPerBatch: windowsPerBatch, spillFolder: spillFolder)
        // --resume: the record of a killed run of the same inputs says where to go on (checked before the
        // temporary output is made); after each layer its states are flushed and a new record written.
        var checkpoints: LayerCheckpoints?
        let resumeFiles = LogitsResume.Files(output: path)
        if let resume {
            let identity = LogitsResume.identity(model: resume.model, input: input, form: form, group: group, windowsPerBatch: windowsPerBatch)
            guard let stateBytes = CheckedMath.product([input.windows, T, config.hiddenSize, 4]) else {
                throw LogitsError.memory(needed: nil, budget: memoryBudget, windows: input.windows, tokens: T)
            }
            let after = try LogitsResume.resumePoint(files: resumeFiles, identity: identity, layers: config.numLayers, stateBytes: stateBytes)
            checkpoints = LayerCheckpoints(files: resumeFiles.states, resumeAfter: after) { layer, statePath in
                try LogitsResume.write(files: resumeFiles, identity: identity, layer: layer, path: statePath, bytes: stateBytes)
                try resume.afterLayer?(layer)
            }
        }
        // The file is made at the temporary name while the model runs: full logits are written a batch of windows
        // at a time as lm_head produces them; the rest when the run is done. Renamed into place only when complete.
        let atomic = try AtomicFile(path: path)
        try fill(atomic.temporaryPath) { file in
            if compact == nil { try file.createFloats(prefix + "logits", shape: [input.windows, T, vocab]) }
            try driver.run(ids: input.ids, windows: input.windows, tokens: T, checkpoints: checkpoints, progress: progress) { first, count, logits in
                let rows = count * T
                let next: [Int32?] = (0..<rows).map { r in r % T + 1 < T ? input.ids[first * T + r + 1] : nil }
                let label = "\(input.source): logits"
                if var c = compact {
                    compact = nil
                    try c.append(logits: logits, next: next, source: label, firstRow: first * T, tokens: T)
                    compact = c
                    for r in 0..<rows where next[r] != nil {
                        nll -= c.nextLogProb[first * T + r]
                        predictions += 1
                    }
                    return
                }
                try logits.withUnsafeBufferPointer { all in
                    for r in 0..<rows {
                        let row = UnsafeBufferPointer(rebasing: all[(r * vocab)..<((r + 1) * vocab)])
                        if let bad = row.firstIndex(where: { !$0.isFinite }) {
                            let at = first * T + r
                            throw LogitStatistics.LogitError.nonFinite(source: label, sequence: at / T, token: at % T, index: bad, value: row[bad])
                        }
                        guard let n = next[r] else { continue }
                        nll -= Double(row[Int(n)]) - LogProbs.logSumExp(row)
                        predictions += 1
                    }
                }
                try file.writeFloatBlock(prefix + "logits", start: [first, 0, 0], count: [count, T, vocab], values: logits)
            }
            try file.write(prefix + "input_ids", int32s: input.ids, shape: [input.windows, T])
            if input.indices != Array(0..<input.windows) {
                try file.write(prefix + "window_index", int32s: input.indices.map { Int32(clamping: $0) }, shape: [input.windows])
            }
            try compact?.write(to: file, group: group, windows: input.windows, tokens: T)
            // The group's attributes (docs/REFERENCE-DUMPS.md: `dequant`, …), in a fixed order.
            for (name, value) in attributes.sorted(by: { $0.key < $1.key }) {
                try file.writeStringAttribute(name, value, of: group.isEmpty ? "/" : group)
            }
        }
        try atomic.commit()
        if resume != nil { LogitsResume.remove(resumeFiles) }
        var k: Int?
        if case .compact = form { k = compact?.k }
        return Result(
            windows: input.windows, tokens: T, predictions: predictions,
            perplexity: predictions == 0 ? .nan : Foundation.exp(nll / Double(predictions)), negativeLogLikelihood: nll,
            form: k == nil ? "full" : "compact", topK: k, output: output, spilled: spillFolder != nil)
    }

    /// Creates the HDF5 file at `path` (the atomic file's temporary name) for `body`; it is closed when this returns.
    static func fill(_ path: String, _ body: (HDF5File) throws -> Void) throws {
        let file = try HDF5File.create(path)
        try body(file)
    }
}
