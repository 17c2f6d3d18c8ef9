import Checkpoint
import Foundation
import LoadedModel
import ModelConfig
import Quantization
import TensorCore

/// `k2pack dequantize`: every `pack-quantized` module becomes a plain `.weight`, in one streaming pass.
public enum Dequantizer {
    public struct Options: Sendable {
        public var format: OutputFormat = .hf
        /// float32 `q · scale` instead of compressed-tensors' `bf16(q · scale)`.
        public var exact = false
        public var threads = ProcessInfo.processInfo.activeProcessorCount
        public init(format: OutputFormat = .hf, exact: Bool = false) {
            self.format = format
            self.exact = exact
        }
    }

    public struct Report: Sendable, Codable {
        public var dequantizedModules: Int
        public var copiedTensors: Int
        public var dtype: String
        public var inputBytes: Int
        public var outputBytes: Int
        public var seconds: Double
    }

    /// The INT4 modules of a checkpoint: module → (codes, scales, group size), each tensor located in its shard.
    struct Module {
        var codes: (shard: SafetensorsFile, entry: TensorEntry)
        var scales: (shard: SafetensorsFile, entry: TensorEntry)
        var groupSize: Int
        var rows: Int
        var cols: Int
    }

    static func modules(_ checkpoint: LoadedCheckpoint) throws -> [String: Module] {
        guard let expected = checkpoint.expected else { return [:] }
        var modules: [String: Module] = [:]
        for t in expected.tensors where t.form == .packed {
            guard let module = t.module, let logical = t.logicalShape, case let .packQuantized(bits, groupSize, _)? = t.method else { continue }
            guard bits == 4 else { throw RequantizeError.tensor(file: "config.json", tensor: t.name, reason: "\(bits)-bit codes (k2pack dequantizes INT4)") }
            guard let codes = checkpoint.directory.entry(named: module + ".weight_packed"),
                let scales = checkpoint.directory.entry(named: module + ".weight_scale")
            else { throw RequantizeError.tensor(file: "model.safetensors.index.json", tensor: module, reason: "codes or scales are missing") }
            guard scales.entry.dtype == .bf16, logical[1] % 8 == 0, logical[1] % groupSize == 0 else {
                throw RequantizeError.tensor(
                    file: scales.shard.name, tensor: scales.entry.name,
                    reason: "k2pack dequantizes BF16 scales over whole groups of whole words; found \(scales.entry.dtype.rawValue), in = \(logical[1]), group \(groupSize)")
            }
            try checkShapeRecord(checkpoint, module: module, logical: logical)
            try checkScales(scales, groups: logical[1] / groupSize)
            modules[module] = Module(codes: codes, scales: scales, groupSize: groupSize, rows: logical[0], cols: logical[1])
        }
        return modules
    }

    /// `weight_shape` must hold the module's `[out, in]` (what verify checks): compressed-tensors decompresses to
    /// the recorded shape, so a wrong record is a different model.
    static func checkShapeRecord(_ checkpoint: LoadedCheckpoint, module: String, logical: [Int]) throws {
        let name = module + ".weight_shape"
        guard let (shard, entry) = checkpoint.directory.entry(named: name) else {
            throw RequantizeError.tensor(file: ShardIndex.fileName, tensor: name, reason: "missing: the module's weight_shape record is needed to dequantize it")
        }
        guard let values = WeightShapeRecord.values(try shard.bytes(of: entry), dtype: entry.dtype) else {
            throw RequantizeError.tensor(
                file: shard.name, tensor: name, reason: "weight_shape must be two I32 or I64 values, found \(formatShape(entry.shape)) \(entry.dtype.rawValue)")
        }
        guard values == logical else {
            throw RequantizeError.tensor(
                file: shard.name, tensor: name,
                reason: "weight_shape holds \(formatShape(values)) but weight_packed, weight_scale and config.json give \(formatShape(logical)); refusing to dequantize (run `k2pack verify`)")
        }
    }

    /// Every scale must be finite and > 0 (what verify checks): a NaN, infinite, zero or negative scale would be
    /// written out as NaN, infinite or zero weights. Refused before anything is written, by row and group.
    static func checkScales(_ scales: (shard: SafetensorsFile, entry: TensorEntry), groups: Int) throws {
        let stats = ScaleStats.scanBF16(try scales.shard.bytes(of: scales.entry))
        scales.shard.file.adviseDone(scales.entry.rangeInFile)
        guard let bad = stats.firstBad else { return }
        let value = bad.value.isNaN ? "NaN" : "\(bad.value)"
        throw RequantizeError.tensor(
            file: scales.shard.name, tensor: scales.entry.name,
            reason: "row \(bad.index / max(groups, 1)), group \(bad.index % max(groups, 1)): scale \(value) is not finite and positive "
                + "(\(stats.badCount) of \(stats.count) scales are bad); refusing to dequantize (run `k2pack verify`)")
    }

    public static func dequantize(input: String, output: String, options: Options = Options(), progress: ProgressCallback? = nil) throws -> Report {
        let start = Date()
        let checkpoint = try Rewrite.open(input)
        let config = checkpoint.config!
        guard config.quantization != nil else { throw RequantizeError.notQuantized(folder: input) }
        let modules = try modules(checkpoint)
        let total = Rewrite.tensorBytes(checkpoint)
        let counter = ProgressCounter(total: total, report: progress)
        let outType: DType = options.exact ? .f32 : .bf16
        var done = 0
        let (shards, copied) = try Rewrite.plan(checkpoint, counter: counter) { _, entry in
            // The module's weight takes the place of its codes; its scales and shape are consumed.
            for suffix in [".weight_packed", ".weight_scale", ".weight_shape"] where entry.name.hasSuffix(suffix) {
                let module = String(entry.name.dropLast(suffix.count))
                guard let m = modules[module] else { return nil }
                guard suffix == ".weight_packed" else { return [] }
                done += 1
                return [weight(module, m, exact: options.exact, dtype: outType, threads: options.threads, counter: counter)]
            }
            return nil
        }
        let outputConfig = Quantizer.config(config.raw, architecture: config.architecture, setting: nil)
        let written = try Rewrite.deliver(
            options.format, checkpoint, input: input, to: output, shards: shards, config: outputConfig, threads: options.threads)
        return Report(
            dequantizedModules: done, copiedTensors: copied, dtype: outType.rawValue, inputBytes: total, outputBytes: written,
            seconds: Date().timeIntervalSince(start))
    }

    /// `module.weight` [out, in] from its codes and scales, rows in parallel blocks.
    static func weight(_ module: String, _ m: Module, exact: Bool, dtype: DType, threads: Int, counter: ProgressCounter) -> OutputTensor {
        let width = dtype == .f32 ? 4 : 2
        return OutputTensor(name: module + ".weight", dtype: dtype, shape: [m.rows, m.cols], length: m.rows * m.cols * width) { emit in
            let codes = SharedBytes(try m.codes.shard.bytes(of: m.codes.entry)), scales = SharedBytes(try m.scales.shard.bytes(of: m.scales.entry))
            let groups = m.cols / m.groupSize
            let blockRows = max(1, IOSizes.workBlock / (m.cols * width))
            var block = [UInt8](repeating: 0, count: min(m.rows, blockRows) * m.cols * width)
            var at = 0
            while at < m.rows {
                let count = min(blockRows, m.rows - at)
                let base = at
                block.withUnsafeMutableBytes { out in
                    let target = SendablePointer(out.baseAddress!.assumingMemoryBound(to: UInt8.self))
                    Rewrite.parallelRows(count, block: count, threads: threads) { range in
                        var row = [Float](repeating: 0, count: m.cols)
                        for r in range {
                            row.withUnsafeMutableBufferPointer { dst in
                                Int4Quantizer.dequantizeRow(
                                    words: UnsafeRawBufferPointer(start: codes.bytes.baseAddress! + 4 * (base + r) * (m.cols / 8), count: m.cols / 2),
                                    scales: UnsafeRawBufferPointer(start: scales.bytes.baseAddress! + 2 * (base + r) * groups, count: 2 * groups),
                                    groupSize: m.groupSize, exact: exact, into: dst)
                            }
                            let dst = UnsafeMutableRawPointer(target.pointer + r * m.cols * width)
                            if width == 4 {
                                row.withUnsafeBytes { dst.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
                            } else {
                                let half = dst.assumingMemoryBound(to: UInt16.self)
                                for c in 0..<m.cols { half[c] = BFloat16Bits.fromFloat(row[c]).littleEndian }
                            }
                        }
                    }
                }
                try block.withUnsafeBytes { try emit(UnsafeRawBufferPointer(rebasing: $0[0..<(count * m.cols * width)])) }
                counter.add(count * m.cols / 2)
                at += count
            }
            m.codes.shard.file.adviseDone(m.codes.entry.rangeInFile)
            m.scales.shard.file.adviseDone(m.scales.entry.rangeInFile)
            counter.add(m.scales.entry.byteCount + 8)
        }
    }
}

/// `k2pack verify --requantize`: quantizes BF16 weights in memory and compares with stored INT4 codes and scales.
public enum RequantizeCheck {
    public struct TensorResult: Sendable, Codable {
        public var module: String
        public var codes: Int
        public var codesDiffering: Int
        /// Largest |ours − stored| over the codes.
        public var largestCodeStep: Int
        public var scales: Int
        public var scalesDiffering: Int
    }

    public struct Report: Sendable, Codable {
        public var modules: [TensorResult]
        public var codes: Int
        public var codesDiffering: Int
        public var scales: Int
        public var scalesDiffering: Int
        public var identicalModules: Int
    }

    public static func run(int4 int4Path: String, bf16 bf16Path: String) throws -> Report {
        let int4 = try Rewrite.open(int4Path)
        let bf16 = try Rewrite.open(bf16Path, ignoringQuantization: true)
        let modules = try Dequantizer.modules(int4)
        guard !modules.isEmpty else { throw RequantizeError.noQuantizedModules(folder: int4Path) }
        var results: [TensorResult] = []
        for name in modules.keys.sorted() {
            let m = modules[name]!
            guard let (shard, entry) = bf16.directory.entry(named: name + ".weight") else {
                throw RequantizeError.tensor(file: bf16Path, tensor: name + ".weight", reason: "missing from the BF16 checkpoint")
            }
            guard entry.dtype == .bf16, entry.shape == [m.rows, m.cols] else {
                throw RequantizeError.tensor(file: shard.name, tensor: entry.name, reason: "expected BF16 \(formatShape([m.rows, m.cols])), found \(entry.dtype.rawValue) \(formatShape(entry.shape))")
            }
            let weights = try shard.bytes(of: entry)
            let codes = try m.codes.shard.bytes(of: m.codes.entry), scales = try m.scales.shard.bytes(of: m.scales.entry)
            let groups = m.cols / m.groupSize
            var words = [UInt32](repeating: 0, count: m.cols / 8), ourScales = [UInt16](repeating: 0, count: groups)
            var result = TensorResult(module: name, codes: m.rows * m.cols, codesDiffering: 0, largestCodeStep: 0, scales: m.rows * groups, scalesDiffering: 0)
            for r in 0..<m.rows {
                let row = UnsafeRawBufferPointer(start: weights.baseAddress! + 2 * r * m.cols, count: 2 * m.cols)
                do throws(Int4Quantizer.Failure) {
                    try words.withUnsafeMutableBufferPointer { w throws(Int4Quantizer.Failure) in
                        try ourScales.withUnsafeMutableBufferPointer { s throws(Int4Quantizer.Failure) in try Int4Quantizer.quantizeRow(row, groupSize: m.groupSize, words: w, scales: s) }
                    }
                } catch {
                    throw RequantizeError.unquantizable(shard, entry, row: r, error)
                }
                for g in 0..<groups where ourScales[g] != UInt16(littleEndian: scales.loadUnaligned(fromByteOffset: 2 * (r * groups + g), as: UInt16.self)) {
                    result.scalesDiffering += 1
                }
                for w in 0..<(m.cols / 8) {
                    let stored = UInt32(littleEndian: codes.loadUnaligned(fromByteOffset: 4 * (r * m.cols / 8 + w), as: UInt32.self))
                    guard stored != words[w] else { continue }
                    for k in 0..<8 {
                        let a = Int((words[w] >> UInt32(4 * k)) & 0xF), b = Int((stored >> UInt32(4 * k)) & 0xF)
                        if a != b {
                            result.codesDiffering += 1
                            result.largestCodeStep = max(result.largestCodeStep, abs(a - b))
                        }
                    }
                }
            }
            results.append(result)
        }
        return Report(
            modules: results, codes: results.reduce(0) { $0 + $1.codes }, codesDiffering: results.reduce(0) { $0 + $1.codesDiffering },
            scales: results.reduce(0) { $0 + $1.scales }, scalesDiffering: results.reduce(0) { $0 + $1.scalesDiffering },
            identicalModules: results.filter { $0.codesDiffering == 0 && $0.scalesDiffering == 0 }.count)
    }
}

extension RequantizeCheck.Report {
    public func renderText() -> String {
        func pct(_ a: Int, _ b: Int) -> String { String(format: "%.3f%%", b == 0 ? 0 : 100 * Double(a) / Double(b)) }
        var lines = ["module".padding(toLength: 60, withPad: " ", startingAt: 0) + "  codes differing        scales differing   largest step"]
        for m in modules {
            lines.append(
                displayed(m.module).padding(toLength: 60, withPad: " ", startingAt: 0)
                    + "  \(String(m.codesDiffering).leftPadded(8)) (\(pct(m.codesDiffering, m.codes).leftPadded(8)))  \(String(m.scalesDiffering).leftPadded(7)) (\(pct(m.scalesDiffering, m.scales).leftPadded(8)))  \(m.largestCodeStep)")
        }
        lines.append("")
        lines.append("\(modules.count) INT4 modules, \(identicalModules) identical after requantizing")
        lines.append("codes:  \(codesDiffering) of \(codes) differ (\(pct(codesDiffering, codes)))")
        lines.append("scales: \(scalesDiffering) of \(scales) differ (\(pct(scalesDiffering, scales)))")
        lines.append("(The compressed-tensors minmax rule is compared; the rule that produced published scales may differ.)")
        return lines.joined(separator: "\n")
    }
}
