import Foundation
import TensorCore

/// The forward pass over many windows of tokens, one layer at a time: every window goes through layer L before
/// layer L + 1 is bound, so each weight byte is read from storage once per run however many windows there are,
/// and a layer's pages are released once all windows are through it (as `ForwardPass.layer` does after one
/// batch). The hidden states of all windows are held in memory, or with `spillFolder` in a temporary file between
/// layers; `estimatedBytes` says how much memory either way, so a caller checks a budget before anything runs.
///
/// Windows go through a layer in groups of `windowsPerBatch` sequences (one `ForwardPass.Batch` each). With 1 (the
/// default) every window's arithmetic is exactly that of its own run through `ForwardPass.logits(for:batch:)`, so
/// the result is bit-identical to running the windows one by one; a larger group multiplies each decoded weight
/// block by more rows at once (faster) but may change float32 rounding (the matrix kernels and the expert groups
/// depend on the row count).
public struct LayerMajorForward: Sendable {
    public let pass: any LanguageModelPass
    public let windowsPerBatch: Int
    /// When set, the hidden states wait in an unlinked temporary file in this folder between layers (`SpillFile`)
    /// instead of in memory: only the group being computed is held.
    public let spillFolder: String?

    public init(pass: any LanguageModelPass, windowsPerBatch: Int = 1, spillFolder: String? = nil) {
        self.pass = pass
        self.windowsPerBatch = max(1, windowsPerBatch)
        self.spillFolder = spillFolder
    }

    /// Bytes this process holds for activations while running `windows` windows of `tokens` tokens: the hidden
    /// states of every window (input and output of the layer being run), one group's working set inside a layer
    /// (norms, attention projections and scores, MLP intermediates, a routed expert's rows), and one group's
    /// logits. Weights are mapped, not counted here. Overflow-checked; nil when the product overflows.
    /// With `spilled`, the hidden states of only one group are held (the rest wait in the spill file).
    public static func estimatedBytes(config: ForwardConfig, windows: Int, tokens: Int, windowsPerBatch: Int, spilled: Bool = false) -> Int? {
        let group = min(max(1, windowsPerBatch), max(windows, 1))
        let H = config.hiddenSize, V = config.vocabSize
        let heads = config.numHeads
        let attentionWidth = heads * (config.qkHeadDim + config.qkNopeHeadDim + 2 * config.vHeadDim) + config.qLoraRank
            + config.kvLoraRank + config.qkRopeHeadDim
        let mlpWidth = 3 * max(config.intermediateSize, config.moeIntermediateSize * max(1, config.numSharedExperts))
        let perRow = [8 * H, attentionWidth, mlpWidth, 2 * config.routing.experts].reduce(0, +)
        let floats = 4
        guard
            let rows = CheckedMath.multiply(windows, tokens),
            let groupRows = CheckedMath.multiply(group, tokens),
            let hidden = CheckedMath.product([spilled ? groupRows : rows, 2 * H, floats]),
            let working = CheckedMath.product([groupRows, perRow, floats]),
            let logits = CheckedMath.product([groupRows, 2 * V, floats]),
            let sum = CheckedMath.add(hidden, working).flatMap({ CheckedMath.add($0, logits) })
        else { return nil }
        return CheckedMath.add(sum, tokens * floats)
    }

    /// Runs `ids` (`windows × tokens`, window-major) through the embedding, every decoder layer and the final
    /// norm and lm_head; `body` receives each group's logits `[group windows × tokens, vocab]` (in window order,
    /// starting at window `first`) as soon as they are computed, so the caller can reduce or write them without
    /// holding all of them. `progress` counts layers (plus one for the embedding and one for lm_head).
    ///
    /// With `checkpoints` (a resumable run) the hidden states go through the checkpoint files instead of memory
    /// or the spill file, and the run may start after a finished layer (`LayerCheckpoints`).
    public func run(
        ids: [Int32], windows: Int, tokens: Int, checkpoints: LayerCheckpoints? = nil, progress: ProgressCallback? = nil,
        body: (_ first: Int, _ count: Int, _ logits: [Float]) throws -> Void
    ) throws {
        guard windows >= 1, tokens >= 1, ids.count == windows * tokens else {
            throw ForwardError.input("\(ids.count) token ids do not make \(windows) windows of \(tokens) tokens")
        }
        let config = pass.forward, H = config.hiddenSize
        let groups = stride(from: 0, to: windows, by: windowsPerBatch).map { $0..<min(windows, $0 + windowsPerBatch) }
        let total = config.numLayers + 2
        if let checkpoints {
            if let last = checkpoints.resumeAfter, !(0..<config.numLayers).contains(last) {
                throw ForwardError.input("resuming after layer \(last): the model has layers 0 to \(config.numLayers - 1)")
            }
            // A fresh run empties both files (a longer stale file would not match the record's length later).
            let fresh = checkpoints.resumeAfter == nil
            let files = try checkpoints.files.map { path throws(ForwardError) in try SpillFile(path: path, truncate: fresh) }
            try runSpilled(
                ids: ids, tokens: tokens, groups: groups, files: files, resumeAfter: checkpoints.resumeAfter,
                finished: { layer, file in
                    try file.sync()
                    try checkpoints.finished(layer, checkpoints.file(after: layer))
                }, progress: progress, body: body)
            return
        }
        if let spillFolder {
            try runSpilled(ids: ids, tokens: tokens, groups: groups, files: [try SpillFile(folder: spillFolder)], progress: progress, body: body)
            return
        }
        // The residual stream of each group, `[group windows × tokens, hidden]`.
        var hidden = try groups.map { g throws(ForwardError) in try pass.embed(Array(ids[(g.lowerBound * tokens)..<(g.upperBound * tokens)])) }
        progress?(1, total)
        for layer in 0..<config.numLayers {
            hidden = try pass.layer(layer, groups: hidden, tokens: tokens, sequences: groups.map(\.count))
            progress?(layer + 2, total)
        }
        for (g, range) in groups.enumerated() {
            precondition(hidden[g].count == range.count * tokens * H, "layer output does not match the group")
            let logits = try pass.logits(pass.finalNorm(hidden[g]))
            hidden[g] = []
            try body(range.lowerBound, range.count, logits)
        }
        progress?(total, total)
    }

    /// `run` with the hidden states in a spill file: each group is read, run through the layer and written back.
    /// A layer's pages are still released only after its last group, so each weight byte is read from storage once.
    /// The states after layer L (the embedding's: L = −1) are in `files[(L + 2) % files.count]`: one file is
    /// rewritten in place; two (checkpoints) alternate, so the last finished layer's file is intact while the next
    /// layer runs. `finished` is called after each layer with the file holding its states; with `resumeAfter` the
    /// run starts from that layer's file.
    func runSpilled(
        ids: [Int32], tokens: Int, groups: [Range<Int>], files: [SpillFile], resumeAfter: Int? = nil,
        finished: ((Int, SpillFile) throws -> Void)? = nil, progress: ProgressCallback?,
        body: (_ first: Int, _ count: Int, _ logits: [Float]) throws -> Void
    ) throws {
        let config = pass.forward, H = config.hiddenSize, total = config.numLayers + 2
        let rowFloats = tokens * H
        func after(_ layer: Int) -> SpillFile { files[(layer + 2) % files.count] }
        if let resumeAfter {
            progress?(resumeAfter + 2, total)
        } else {
            let spill = after(-1)
            for g in groups {
                try spill.write(try pass.embed(Array(ids[(g.lowerBound * tokens)..<(g.upperBound * tokens)])), at: g.lowerBound * rowFloats)
            }
            progress?(1, total)
        }
        for layer in (resumeAfter.map { $0 + 1 } ?? 0)..<config.numLayers {
            let source = after(layer - 1), destination = after(layer)
            try pass.layerStreaming(layer, count: groups.count) { g throws(ForwardError) in
                (try source.read(groups[g].count * rowFloats, at: groups[g].lowerBound * rowFloats), ForwardPass.Batch(sequences: groups[g].count, tokens: tokens))
            } store: { g, output throws(ForwardError) in
                try destination.write(output, at: groups[g].lowerBound * rowFloats)
            }
            try finished?(layer, destination)
            progress?(layer + 2, total)
        }
        let last = after(config.numLayers - 1)
        for g in groups {
            let logits = try pass.logits(pass.finalNorm(try last.read(g.count * rowFloats, at: g.lowerBound * rowFloats)))
            try body(g.lowerBound, g.count, logits)
        }
        progress?(total, total)
    }

    /// All logits `[windows × tokens, vocab]` in an unlinked temporary file in `folder`, read back a block of rows
    /// at a time (`LogitRows`): for runs whose logits do not fit in memory.
    public func logitsOnDisk(ids: [Int32], windows: Int, tokens: Int, folder: String) throws -> LogitRows {
        let vocab = pass.forward.vocabSize
        let file = try SpillFile(folder: folder)
        try run(ids: ids, windows: windows, tokens: tokens) { first, _, logits in try file.write(logits, at: first * tokens * vocab) }
        return LogitRows(file: file, vocab: vocab, rows: windows * tokens)
    }

    /// All logits `[windows × tokens, vocab]` in memory (small runs and tests).
    public func logits(ids: [Int32], windows: Int, tokens: Int) throws -> [Float] {
        var out: [Float] = []
        try run(ids: ids, windows: windows, tokens: tokens) { _, _, logits in out += logits }
        return out
    }
}

extension LanguageModelPass {
    /// Layer `index` over several groups of sequences (`sequences[g]` sequences of `tokens` tokens in group g),
    /// the layer's weights bound once and released after the last group. Each group's arithmetic is that of
    /// `layer(_:input:batch:)` on the group alone.
    func layer(_ index: Int, groups: [[Float]], tokens: Int, sequences: [Int]) throws(ForwardError) -> [[Float]] {
        try layerGroups(index, groups: groups, batches: sequences.map { ForwardPass.Batch(sequences: $0, tokens: tokens) }, release: true)
    }
}

extension LanguageModelPass {
    /// `layerGroups` over `count` groups fetched one at a time (`load`) and handed back as they are done (`store`),
    /// so only one group's states are held; the layer's pages are released after the last group only.
    func layerStreaming(
        _ index: Int, count: Int, load: (Int) throws(ForwardError) -> ([Float], ForwardPass.Batch),
        store: (Int, [Float]) throws(ForwardError) -> Void
    ) throws(ForwardError) {
        for g in 0..<count {
            let (input, batch) = try load(g)
            try store(g, try layerGroups(index, groups: [input], batches: [batch], release: g == count - 1)[0])
        }
    }
}

extension ForwardPass {
    public func layerGroups(_ index: Int, groups: [[Float]], batches: [Batch], release: Bool) throws(ForwardError) -> [[Float]] {
        let w = try LayerWeights(weights, layer: index)
        var out: [[Float]] = []
        out.reserveCapacity(groups.count)
        for (g, h) in groups.enumerated() {
            out.append(try decoderLayer(w, input: h, batch: batches[g], blocks: OwnBlocks(pass: self, weights: w)).output)
        }
        if release { weights.releaseViewed() }
        return out
    }
}

extension ShardedForward {
    public func layerGroups(_ index: Int, groups: [[Float]], batches: [ForwardPass.Batch], release: Bool) throws(ForwardError) -> [[Float]] {
        let bound = try ranks.map { pass throws(ForwardError) in try LayerWeights(pass.weights, layer: index) }
        var out: [[Float]] = []
        out.reserveCapacity(groups.count)
        for (g, h) in groups.enumerated() {
            out.append(try ranks[0].decoderLayer(bound[0], input: h, batch: batches[g], blocks: CombinedBlocks(model: self, weights: bound)).output)
        }
        if release { for pass in ranks { pass.weights.releaseViewed() } }
        return out
    }
}


/// A resumable layer-major run (`k2pack logits --resume`): the hidden states of all windows after each finished
/// layer, in named files beside the output, flushed before `finished` is told, so a killed run can go on from
/// the last finished layer. Two files alternate (the states after layer L are in `files[L % 2]`, the embedding's
/// in `files[1]`): the last finished layer's file is never written while the next layer runs.
public struct LayerCheckpoints {
    /// The two files' paths.
    public var files: [String]
    /// Start after this layer, whose states are in `file(after:)` (nil: from the embedding).
    public var resumeAfter: Int?
    /// Called when layer `layer`'s states are whole and flushed in the file at `path`.
    public var finished: (_ layer: Int, _ path: String) throws -> Void

    public init(files: (String, String), resumeAfter: Int?, finished: @escaping (_ layer: Int, _ path: String) throws -> Void) {
        self.files = [files.0, files.1]
        self.resumeAfter = resumeAfter
        self.finished = finished
    }

    /// The path holding the states after `layer`.
    public func file(after layer: Int) -> String { files[(layer + 2) % 2] }
}

/// Logits `[rows, vocab]` kept in a temporary file (`LayerMajorForward.logitsOnDisk`), read a block of rows at a time.
public final class LogitRows: Sendable {
    let file: SpillFile
    public let vocab: Int
    public let rows: Int

    init(file: SpillFile, vocab: Int, rows: Int) {
        self.file = file
        self.vocab = vocab
        self.rows = rows
    }

    public func rows(_ range: Range<Int>) throws(ForwardError) -> [Float] {
        precondition(range.lowerBound >= 0 && range.upperBound <= rows, "LogitRows: rows outside the file")
        return try file.read(range.count * vocab, at: range.lowerBound * vocab)
    }
}

/// The hidden states of a layer-major run, waiting between layers in a temporary file: created in `folder` and
/// unlinked at once (nothing is left behind, even after a kill), read and written with `pread`/`pwrite`.
final class SpillFile: Sendable {
    let fd: Int32
    let folder: String

    init(folder: String) throws(ForwardError) {
        self.folder = folder
        var template = Array((folder.hasSuffix("/") ? folder : folder + "/").utf8CString.dropLast()) + Array(".k2pack-activations-XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else { throw .io("\(displayed(folder)): cannot create a temporary file for the activations: \(String(cString: strerror(errno)))") }
        unlink(template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) })
        self.fd = fd
    }

    /// A named file at `path` (a resumable run's checkpoint file): opened or created, never through a link, and
    /// left in place (the caller removes it); with `truncate`, emptied. `folder` holds the path then, for messages.
    init(path: String, truncate: Bool) throws(ForwardError) {
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | (truncate ? O_TRUNC : 0), 0o600)
        guard fd >= 0 else { throw .io("\(displayed(path)): cannot open the checkpoint file for the activations: \(String(cString: strerror(errno)))") }
        self.fd = fd
        folder = path
    }

    /// Flushes the file to storage (a checkpoint is recorded only after its states are durable).
    func sync() throws(ForwardError) {
        guard fsync(fd) == 0 else { throw .io("\(displayed(folder)): flushing the activations' file failed: \(String(cString: strerror(errno)))") }
    }

    deinit { close(fd) }

    func write(_ values: [Float], at element: Int) throws(ForwardError) {
        let done = values.withUnsafeBytes { bytes in
            Self.whole(bytes.count, at: element * 4) { pwrite(fd, bytes.baseAddress! + $0, bytes.count - $0, $1) }
        }
        guard done else { throw .io("\(displayed(folder)): writing the activations' temporary file failed: \(String(cString: strerror(errno)))") }
    }

    /// Moves `count` bytes at file offset `position` through `step(done, offset)` (a `pread` or `pwrite` of the
    /// rest), retrying short transfers and EINTR; false when the file fails (`errno` says why).
    private static func whole(_ count: Int, at position: Int, _ step: (Int, off_t) -> Int) -> Bool {
        var done = 0
        while done < count {
            let n = step(done, off_t(position + done))
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return false }
            done += n
        }
        return true
    }

    func read(_ count: Int, at element: Int) throws(ForwardError) -> [Float] {
        var values = [Float](repeating: 0, count: count)
        let done = values.withUnsafeMutableBytes { bytes in
            Self.whole(bytes.count, at: element * 4) { pread(fd, bytes.baseAddress! + $0, bytes.count - $0, $1) }
        }
        guard done else { throw .io("\(displayed(folder)): reading the activations' temporary file failed: \(String(cString: strerror(errno)))") }
        return values
    }
}
