import Checkpoint
import Dispatch
import FileIO
import Foundation
import LoadedModel
import JSONCore
import ModelConfig
import PackFormat
import Quantization
import TensorCore

/// Why quantize, dequantize or a requantize check cannot proceed, naming the file and tensor.
public enum RequantizeError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The input checkpoint is structurally broken (the first error finding, as a sentence).
    case brokenCheckpoint(reason: String)
    /// `quantize` on a folder whose weights are already quantized (`scheme`: the config's summary of it).
    case alreadyQuantized(folder: String, scheme: String)
    /// `dequantize` on a folder with no `quantization_config`.
    case notQuantized(folder: String)
    /// `verify --requantize` on a folder with no pack-quantized module.
    case noQuantizedModules(folder: String)
    /// The `--scheme` file could not be opened or read.
    case schemeUnreadable(CheckpointError)
    /// The `--scheme` file is not JSON.
    case schemeJSON(file: String, error: JSONError)
    /// No `--scheme` given and the architecture has no native INT4 scheme.
    case noNativeScheme(architecture: String)
    /// The scheme's `format` is not pack-quantized (nil: none given).
    case schemeFormat(found: String?)
    /// A config group's weights setting that k2pack does not implement (`found` nil: missing), JSON as written.
    case schemeSetting(group: String, key: String, found: String?, expected: String)
    /// A config group whose group size is not a positive multiple of 8.
    case schemeGroupSize(group: String)
    case tensor(file: String, tensor: String, reason: String)

    /// A weight that cannot be quantized, named by shard, tensor, row and column.
    static func unquantizable(_ shard: SafetensorsFile, _ entry: TensorEntry, row: Int, _ failure: Int4Quantizer.Failure) -> RequantizeError {
        .tensor(file: shard.name, tensor: entry.name, reason: "row \(row), column \(failure.column): \(failure)")
    }

    public var description: String {
        switch self {
        case .brokenCheckpoint(let reason): displayed(reason, limit: nil)
        case let .alreadyQuantized(folder, scheme): "\(displayed(folder)) is already quantized (\(displayed(scheme, limit: nil))); nothing to quantize"
        case .notQuantized(let folder): "\(displayed(folder)) has no quantization_config: nothing to dequantize"
        case .noQuantizedModules(let folder): "\(displayed(folder)) has no pack-quantized modules to compare"
        case .schemeUnreadable(let error): "quantization scheme: \(error)"
        case let .schemeJSON(file, error): "quantization scheme: \(displayed(file)): \(error)"
        case .noNativeScheme(let architecture):
            "quantization scheme: \(displayed(architecture, limit: nil)) has no native INT4 scheme k2pack can produce; pass --scheme FILE (a quantization_config)"
        case .schemeFormat(let found): "quantization scheme: format \"\(displayed(found ?? "none"))\" (k2pack writes pack-quantized)"
        case let .schemeSetting(group, key, found, expected):
            "quantization scheme: config group \(displayed(group)): \(displayed(key)) is \(displayed(found ?? "missing", limit: nil)); k2pack implements \(expected)"
        case .schemeGroupSize(let group): "quantization scheme: config group \(displayed(group)): the group size must be a positive multiple of 8"
        case let .tensor(file, tensor, reason): "\(displayed(file)): tensor '\(displayed(tensor))': \(displayed(reason, limit: nil))"
        }
    }
}

/// Where the result goes.
public enum OutputFormat: String, Sendable, CaseIterable, Codable {
    case hf
    case k2pack
}

/// Shared by quantize and dequantize: opening the input, writing shards, index, config and the other files.
enum Rewrite {
    /// Opens a checkpoint and refuses it when structurally broken.
    static func open(_ path: String, ignoringQuantization: Bool = false) throws -> LoadedCheckpoint {
        try refuseBroken(LoadedCheckpoint(path: path, ignoringQuantization: ignoringQuantization))
    }

    static func refuseBroken(_ checkpoint: LoadedCheckpoint) throws -> LoadedCheckpoint {
        if let reason = checkpoint.unusableReason { throw RequantizeError.brokenCheckpoint(reason: reason) }
        return checkpoint
    }

    /// A tensor copied byte for byte, in pieces dropped from the process once written (`ReadOnlyFile.copyPieces`).
    static func copy(_ shard: SafetensorsFile, _ entry: TensorEntry) -> OutputTensor {
        OutputTensor(name: entry.name, dtype: entry.dtype, shape: entry.shape, length: entry.byteCount) { emit in
            try shard.file.copyPieces(of: entry.rangeInFile, emit)
        }
    }

    /// The output shards: each input tensor is replaced by what `replace` returns for it (nil: copied byte for
    /// byte, `[]`: dropped), in the input's shard and data order. Returns the shards and the copied count.
    static func plan(
        _ checkpoint: LoadedCheckpoint, counter: ProgressCounter,
        replace: (SafetensorsFile, TensorEntry) throws -> [OutputTensor]?
    ) throws -> (shards: [(name: String, tensors: [OutputTensor])], copied: Int) {
        let dir = checkpoint.directory
        var shards: [(name: String, tensors: [OutputTensor])] = []
        var copied = 0
        for (s, shard) in dir.shards.enumerated() {
            guard let shard else { continue }
            var tensors: [OutputTensor] = []
            for entry in shard.tensors {
                if let replacement = try replace(shard, entry) {
                    tensors += replacement
                    continue
                }
                var t = copy(shard, entry)
                let produce = t.produce
                t.produce = { emit in try produce { try emit($0); counter.add($0.count) } }
                tensors.append(t)
                copied += 1
            }
            shards.append((dir.shardNames[s], tensors))
        }
        return (shards, copied)
    }

    /// Bytes of every tensor of the input (the progress total).
    static func tensorBytes(_ checkpoint: LoadedCheckpoint) -> Int {
        checkpoint.directory.shards.compactMap { $0 }.reduce(0) { $0 + $1.tensors.reduce(0) { $0 + $1.byteCount } }
    }

    /// Writes every shard (in parallel), the index when the input had one, config.json as given, and carries
    /// every other file of the input folder and its sub-folders verbatim (`CarriedFiles`).
    static func write(
        _ checkpoint: LoadedCheckpoint, to output: String, shards: [(name: String, tensors: [OutputTensor])], config: JSONObject, threads: Int
    ) throws -> Int {
        let carried = try CarriedFiles.list(checkpoint: checkpoint.directory)  // refused before anything is written
        try OutputPaths.prepareFolder(output, inputs: [checkpoint.directory.path], existing: .empty)
        let results: [Result<Int, any Error>] = parallelMap(count: shards.count, width: threads) { i in
            Result { try SafetensorsWriter.write(path: output + "/" + shards[i].name, tensors: shards[i].tensors) }
        }
        do {
            // An input shard rewritten while it was read (a sync, a re-download) makes the output a mix: refused.
            try checkpoint.directory.checkUnchanged()
            let bytes = try results.reduce(0) { $0 + (try $1.get()) }
            if checkpoint.directory.index != nil {
                try AtomicFile.write(IndexWriter.bytes(shards: shards), to: output + "/" + ShardIndex.fileName)
            }
            try AtomicFile.write(Array((JSONValue.object(config).serialized() + "\n").utf8), to: output + "/" + CheckpointDirectory.configFileName)
            // Every other file of the input (tokenizer, generation config, remote code, docs/, …), byte for byte.
            for path in carried { try CarriedFiles.copy(path, from: checkpoint.directory.path, to: output) }
            return bytes
        } catch {
            // Nothing half-way: whatever did finish goes too (the folder was new or empty), so no folder is left
            // with shards, index and config but not every carried file.
            WrittenOutput.remove(shards: shards.map(\.name), carried: carried, from: output)
            throw error
        }
    }

    /// Writes the output in `format`: a Hugging Face folder (`write`), or the k2pack folder convert would make of
    /// it, streamed straight in (`PackOutput`). The output is checked before any work: never overlapping the
    /// input, never a link, new or empty. Returns the bytes of the Hugging Face shards.
    static func deliver(
        _ format: OutputFormat, _ checkpoint: LoadedCheckpoint, input: String, to output: String, shards: [(name: String, tensors: [OutputTensor])],
        config: JSONObject, threads: Int
    ) throws -> Int {
        try OutputPaths.checkFolder(output, inputs: [input])
        switch format {
        case .hf: return try write(checkpoint, to: output, shards: shards, config: config, threads: threads)
        case .k2pack: return try PackOutput.write(checkpoint, to: output, shards: shards, config: config, threads: threads)
        }
    }

    /// Rows `[0, rows)` in blocks, each block split among `threads` workers; `work(rows)` must only touch its rows.
    static func parallelRows(_ rows: Int, block: Int, threads: Int, _ work: @Sendable (Range<Int>) -> Void) {
        var start = 0
        while start < rows {
            let count = min(block, rows - start)
            let share = (count + threads - 1) / threads
            let base = start
            DispatchQueue.concurrentPerform(iterations: min(threads, count)) { i in
                let lo = base + i * share, hi = min(base + count, lo + share)
                if lo < hi { work(lo..<hi) }
            }
            start += count
        }
    }
}

/// `k2pack quantize`: a BF16 checkpoint → native INT4 `pack-quantized`, bit-exact with compressed-tensors.
public enum Quantizer {
    public struct Options: Sendable {
        public var format: OutputFormat = .hf
        /// A `quantization_config` JSON file (bare or under a "quantization_config" key); nil: the architecture's
        /// native scheme from its manifest.
        public var schemeFile: String?
        public var threads = ProcessInfo.processInfo.activeProcessorCount
        public init(format: OutputFormat = .hf, schemeFile: String? = nil) {
            self.format = format
            self.schemeFile = schemeFile
        }
    }

    public struct Report: Sendable, Codable {
        public var scheme: String
        public var quantizedModules: Int
        public var copiedTensors: Int
        public var inputBytes: Int
        public var outputBytes: Int
        public var notes: [String]
        public var seconds: Double
    }

    /// The scheme's JSON and its parsed form.
    static func scheme(for config: ModelConfig, file: String?) throws -> (json: JSONValue, scheme: QuantizationScheme) {
        var json: JSONValue
        var location: String
        if let file {
            // A regular file, size-checked before it is read (a FIFO or device is refused, never waited on).
            let data: [UInt8]
            do { data = try ReadOnlyFile(path: file).readAll() } catch { throw RequantizeError.schemeUnreadable(CheckpointError(error)) }
            do { json = try JSONDocument.parse(data) } catch { throw RequantizeError.schemeJSON(file: file, error: error) }
            if let inner = json["quantization_config"] { json = inner }
            location = file
        } else {
            guard let name = config.architecture.nativeQuantization else {
                throw RequantizeError.noNativeScheme(architecture: config.architecture.displayName)
            }
            json = try ManifestLibrary.scheme(named: name)
            location = "the \(config.architecture.displayName) manifest (\(name))"
        }
        let scheme = try QuantizationScheme.parse(json, location: location, file: file ?? config.architecture.name)
        guard scheme.format == "pack-quantized" else {
            throw RequantizeError.schemeFormat(found: scheme.format)
        }
        for group in scheme.groups {
            let weights = json["config_groups"]?[group.name]?["weights"]
            func check(_ key: String, _ expected: JSONValue, _ allowMissing: Bool = false) throws {
                let value = weights?[key]
                if allowMissing, value == nil || value == .null { return }
                guard value == expected else {
                    throw RequantizeError.schemeSetting(group: group.name, key: key, found: value.map { $0.serialized() }, expected: expected.serialized())
                }
            }
            try check("num_bits", .number("4"))
            try check("type", .string("int"))
            try check("symmetric", .bool(true))
            try check("strategy", .string("group"))
            try check("dynamic", .bool(false), true)
            try check("observer", .string("minmax"), true)
            guard case let .packQuantized(_, groupSize, _) = group.method, groupSize > 0, groupSize % 8 == 0 else {
                throw RequantizeError.schemeGroupSize(group: group.name)
            }
        }
        return (json, scheme)
    }

    /// config.json with `scheme` where the architecture keeps it (inside the text config for K2.5), any stale
    /// copy removed.
    static func config(_ raw: JSONObject, architecture: ArchitectureManifest, setting scheme: JSONValue?) -> JSONObject {
        var top = raw
        top.remove("quantization_config")
        if let key = architecture.textConfigKey, var text = top[key]?.objectValue {
            text.remove("quantization_config")
            if let scheme { text.set("quantization_config", scheme) }
            top.set(key, .object(text))
        } else if let scheme {
            top.set("quantization_config", scheme)
        }
        return top
    }

    public static func quantize(input: String, output: String, options: Options = Options(), progress: ProgressCallback? = nil) throws -> Report {
        let start = Date()
        var notes: [String] = []
        var checkpoint = try LoadedCheckpoint(path: input)
        if let existing = checkpoint.config?.quantization {
            // Planned again from the same opened folder and config bytes (config.json is not read twice).
            let plain = LoadedCheckpoint(directory: checkpoint.directory, ignoringQuantization: true)
            guard plain.problems.allSatisfy({ $0.severity != .error }) else {
                throw RequantizeError.alreadyQuantized(folder: input, scheme: existing.summary)
            }
            notes.append("config.json carries a quantization_config but every Linear is a plain .weight (what compressed-tensors' dequantizer leaves behind): treated as BF16")
            checkpoint = plain
        }
        checkpoint = try Rewrite.refuseBroken(checkpoint)
        let config = checkpoint.config!
        let (schemeJSON, scheme) = try scheme(for: config, file: options.schemeFile)
        var quantized = config
        quantized.quantization = scheme
        let target = try ExpectedTensorList(config: quantized)
        var groups: [String: Int] = [:]
        for t in target.tensors where t.form == .packed {
            if let module = t.module, case let .packQuantized(_, groupSize, _)? = t.method { groups[module] = groupSize }
        }

        let total = Rewrite.tensorBytes(checkpoint)
        let counter = ProgressCounter(total: total, report: progress)
        var modules = 0
        let (shards, copied) = try Rewrite.plan(checkpoint, counter: counter) { shard, entry in
            guard entry.name.hasSuffix(".weight"), case let module = String(entry.name.dropLast(".weight".count)), let group = groups[module] else { return nil }
            modules += 1
            return try quantizedTensors(shard: shard, entry: entry, module: module, groupSize: group, threads: options.threads, counter: counter)
        }
        let outputConfig = Self.config(config.raw, architecture: config.architecture, setting: schemeJSON)
        let written = try Rewrite.deliver(
            options.format, checkpoint, input: input, to: output, shards: shards, config: outputConfig, threads: options.threads)
        return Report(
            scheme: scheme.summary, quantizedModules: modules, copiedTensors: copied, inputBytes: total, outputBytes: written, notes: notes,
            seconds: Date().timeIntervalSince(start))
    }

    /// `module.weight` (BF16 [out, in]) → `weight_packed` I32 [out, in/8], `weight_scale` BF16 [out, in/group],
    /// `weight_shape` I32 [2], as in the real K2.5 files. Rows are quantized in parallel blocks; the scales of a
    /// whole tensor (1/16 of its size) are kept until its codes are written.
    static func quantizedTensors(
        shard: SafetensorsFile, entry: TensorEntry, module: String, groupSize: Int, threads: Int, counter: ProgressCounter
    ) throws -> [OutputTensor] {
        guard entry.dtype == .bf16, entry.shape.count == 2, entry.shape[1] % groupSize == 0 else {
            throw RequantizeError.tensor(
                file: shard.name, tensor: entry.name,
                reason: "quantizing needs a BF16 [out, in] matrix with in a multiple of \(groupSize); found \(entry.dtype.rawValue) \(formatShape(entry.shape))")
        }
        let rows = entry.shape[0], cols = entry.shape[1]
        let scales = ScaleBuffer(count: rows * (cols / groupSize))
        let failure = FailureSlot()
        let packed = OutputTensor(name: module + ".weight_packed", dtype: .i32, shape: [rows, cols / 8], length: rows * cols / 2) { emit in
            let weights = SharedBytes(try shard.bytes(of: entry))
            scales.allocate()
            let blockRows = max(1, IOSizes.workBlock / max(cols / 2, 1))
            var words = [UInt32](repeating: 0, count: min(rows, blockRows) * cols / 8)
            var at = 0
            while at < rows {
                let count = min(blockRows, rows - at)
                let base = at
                words.withUnsafeMutableBufferPointer { out in
                    let target = SendablePointer(out.baseAddress!)
                    Rewrite.parallelRows(count, block: count, threads: threads) { range in
                        for r in range {
                            let row = UnsafeRawBufferPointer(start: weights.bytes.baseAddress! + 2 * (base + r) * cols, count: 2 * cols)
                            do throws(Int4Quantizer.Failure) {
                                try Int4Quantizer.quantizeRow(
                                    row, groupSize: groupSize, words: UnsafeMutableBufferPointer(start: target.pointer + r * cols / 8, count: cols / 8),
                                    scales: UnsafeMutableBufferPointer(start: scales.pointer + (base + r) * (cols / groupSize), count: cols / groupSize))
                            } catch {
                                failure.record(row: base + r, error)
                            }
                        }
                    }
                }
                if let (row, error) = failure.first { throw RequantizeError.unquantizable(shard, entry, row: row, error) }
                try words.withUnsafeBytes { try emit(UnsafeRawBufferPointer(rebasing: $0[0..<(count * cols / 2)])) }
                shard.file.adviseDone((entry.rangeInFile.lowerBound + 2 * at * cols)..<(entry.rangeInFile.lowerBound + 2 * (at + count) * cols))
                counter.add(2 * count * cols)
                at += count
            }
        }
        let scale = OutputTensor(name: module + ".weight_scale", dtype: .bf16, shape: [rows, cols / groupSize], length: 2 * rows * (cols / groupSize)) { emit in
            // Every writer (a shard, a k2pack file) produces a module's codes before its scales.
            precondition(scales.allocated, "\(module): scales written before the codes that fill them")
            try emit(UnsafeRawBufferPointer(start: scales.pointer, count: 2 * scales.count))
            scales.free()
        }
        let shape = OutputTensor(name: module + ".weight_shape", dtype: .i32, shape: [2], length: 8) { emit in
            let values = [Int32(rows), Int32(cols)]
            try values.withUnsafeBytes { try emit($0) }
        }
        return [packed, scale, shape]
    }
}

/// The scales of one tensor, filled by the row workers (disjoint ranges), written after its codes. Allocated
/// only while that tensor is being written, so memory holds one tensor's scales at a time.
final class ScaleBuffer: @unchecked Sendable {
    private(set) var pointer = UnsafeMutablePointer<UInt16>.allocate(capacity: 1)
    let count: Int
    init(count: Int) { self.count = count }
    /// True between `allocate` and `free`.
    private(set) var allocated = false
    func allocate() {
        pointer.deallocate()
        pointer = .allocate(capacity: max(count, 1))
        allocated = true
    }
    func free() {
        pointer.deallocate()
        pointer = .allocate(capacity: 1)
        allocated = false
    }
    deinit { pointer.deallocate() }
}

/// The first failure among row workers (lowest row wins, so the message does not depend on scheduling).
final class FailureSlot: Sendable {
    private let value = Locked<(row: Int, error: Int4Quantizer.Failure)?>(nil)
    func record(row: Int, _ error: Int4Quantizer.Failure) {
        value.withLock { value in
            if value == nil || row < value!.row { value = (row, error) }
        }
    }
    var first: (row: Int, error: Int4Quantizer.Failure)? { value.withLock { $0 } }
}
