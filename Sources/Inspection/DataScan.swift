import Checkpoint
import Foundation
import ModelConfig
import Quantization
import TensorCore

/// One sequential pass over every shard's bytes, shards in parallel: SHA-256 of the whole file (when a list
/// is given), and per tensor: INT4 scales finite and positive, code histogram and all-zero groups,
/// `weight_shape` values, and non-finite values in floating-point weights.
struct DataScan {
    struct Result: Sendable {
        var findings: [Finding] = []
        var bytes = 0
        var checksummed = 0
        var int4Modules = 0
        var codes = Int4CodeStats()
        var scaleMin = Float.infinity
        var scaleMax = -Float.infinity

        mutating func merge(_ other: Result) {
            findings += other.findings
            bytes += other.bytes
            checksummed += other.checksummed
            int4Modules += other.int4Modules
            codes.merge(other.codes)
            scaleMin = min(scaleMin, other.scaleMin)
            scaleMax = max(scaleMax, other.scaleMax)
        }
    }

    let checkpoint: LoadedCheckpoint
    let options: VerifyOptions
    let progress: (@Sendable (Int, Int) -> Void)?

    func run() -> Result {
        let dir = checkpoint.directory
        let total = dir.shards.reduce(0) { $0 + ($1?.file.byteCount ?? 0) }
        let done = ProgressCounter(total: total, report: progress)
        let perShard: [Result] = parallelMap(count: dir.shards.count, width: options.threads) { s in
            guard let shard = dir.shards[s] else { return Result() }
            return scanShard(shard, name: dir.shardNames[s], done: done)
        }
        var result = Result()
        for r in perShard { result.merge(r) }
        return result
    }

    private func scanShard(_ shard: SafetensorsFile, name: String, done: ProgressCounter) -> Result {
        var result = Result()
        let data: UnsafeRawBufferPointer
        do {
            data = try shard.file.mapped()
        } catch {
            result.findings.append(Finding(error))
            return result
        }
        let digest = options.checksums?.digests[name] != nil ? SHA256Digest() : nil
        let headerEnd = shard.header.dataStartInFile
        digest?.update(UnsafeRawBufferPointer(rebasing: data[0..<headerEnd]))
        done.add(headerEnd)
        // Tensors are contiguous and in offset order (validated), so this walks the whole file once.
        for entry in shard.tensors {
            let range = entry.rangeInFile
            shard.file.adviseSequential(range)
            // Large tensors are digested in slices so progress moves smoothly.
            let bytes = UnsafeRawBufferPointer(rebasing: data[range])
            var offset = 0
            let slice = 64 << 20
            while offset < bytes.count {
                let end = min(bytes.count, offset + slice)
                digest?.update(UnsafeRawBufferPointer(rebasing: bytes[offset..<end]))
                if !options.scanData { done.add(end - offset) }
                offset = end
            }
            if options.scanData {
                check(entry, bytes, file: name, into: &result)
                done.add(bytes.count)
            }
            shard.file.adviseDone(range)
        }
        result.bytes = data.count
        if let digest, let expectedHex = options.checksums?.digests[name] {
            let actual = digest.finalizeHex()
            result.checksummed = 1
            if actual != expectedHex {
                result.findings.append(Finding(CheckpointError.checksumMismatch(file: name, expected: expectedHex, actual: actual)))
            }
        }
        return result
    }

    private func check(_ entry: TensorEntry, _ bytes: UnsafeRawBufferPointer, file: String, into result: inout Result) {
        guard let expected = checkpoint.expected?[entry.name], expected.dtypes.contains(entry.dtype), entry.shape == expected.shape else {
            // Unknown or mis-shaped tensors are reported structurally; still look for non-finite floats.
            checkFinite(entry, bytes, file: file, into: &result)
            return
        }
        switch expected.form {
        case .plain, .blockScale:
            checkFinite(entry, bytes, file: file, into: &result)
        case .scale:
            guard entry.dtype == .bf16 else { checkFinite(entry, bytes, file: file, into: &result); return }
            let stats = ScaleStats.scanBF16(bytes)
            if stats.badCount > 0, let bad = stats.firstBad {
                let columns = max(1, entry.shape.last ?? 1)
                let code = stats.nonFinite > 0 ? "scale_not_finite" : "scale_not_positive"
                result.findings.append(Finding(
                    code: code, file: file, tensor: entry.name,
                    message: "\(file): tensor '\(entry.name)': \(stats.badCount) of \(stats.count) scales are not finite and positive (\(stats.nonFinite) NaN/Inf, \(stats.nonPositive) zero or negative); first at [\(bad.index / columns), \(bad.index % columns)] = \(bad.value.isNaN ? "NaN" : "\(bad.value)")"))
            }
            if stats.minimum.isFinite {
                result.scaleMin = min(result.scaleMin, stats.minimum)
                result.scaleMax = max(result.scaleMax, stats.maximum)
            }
        case .packed:
            guard case let .packQuantized(bits, groupSize, _)? = expected.method, bits == 4, entry.shape.count == 2 else { return }
            result.int4Modules += 1
            result.codes.merge(Int4CodeStats.scan(bytes, rows: entry.shape[0], bytesPerRow: entry.shape[1] * 4, groupSize: groupSize))
        case .shape:
            guard let logical = expected.logicalShape, entry.shape == [2] else { return }
            let values: [Int] =
                entry.dtype == .i64
                ? (0..<2).map { Int(Int64(littleEndian: bytes.loadUnaligned(fromByteOffset: $0 * 8, as: Int64.self))) }
                : (0..<2).map { Int(Int32(littleEndian: bytes.loadUnaligned(fromByteOffset: $0 * 4, as: Int32.self))) }
            if values != logical {
                let module = expected.module ?? entry.name
                result.findings.append(Finding(
                    code: "wrong_weight_shape", file: file, tensor: entry.name,
                    message: "\(file): tensor '\(entry.name)': weight_shape holds \(formatShape(values)) but weight_packed, weight_scale and config.json give \(formatShape(logical)) for '\(module)'"))
            }
        }
    }

    private func checkFinite(_ entry: TensorEntry, _ bytes: UnsafeRawBufferPointer, file: String, into result: inout Result) {
        let (count, first) = NonFinite.scan(bytes, dtype: entry.dtype)
        guard count > 0, let first else { return }
        result.findings.append(Finding(
            code: "non_finite_values", file: file, tensor: entry.name,
            message: "\(file): tensor '\(entry.name)': \(count) NaN/Inf value\(count == 1 ? "" : "s"), first at flat index \(first)"))
    }
}

/// Counts NaN/Inf in floating-point data (BF16, F16, F32, F64); other dtypes have none.
enum NonFinite {
    static func scan(_ bytes: UnsafeRawBufferPointer, dtype: DType) -> (count: Int, first: Int?) {
        switch dtype {
        case .bf16: return count(bytes, as: UInt16.self, mask: 0x7F80)
        case .f16: return count(bytes, as: UInt16.self, mask: 0x7C00)
        case .f32: return count(bytes, as: UInt32.self, mask: 0x7F80_0000)
        case .f64: return count(bytes, as: UInt64.self, mask: 0x7FF0_0000_0000_0000)
        default: return (0, nil)
        }
    }

    /// A value is NaN or Inf when all its exponent bits (`mask`) are set. Loads are unaligned: a hostile header
    /// can place data at any byte offset.
    private static func count<T: FixedWidthInteger>(_ bytes: UnsafeRawBufferPointer, as: T.Type, mask: T) -> (Int, Int?) {
        let width = MemoryLayout<T>.size
        let count = bytes.count / width
        var n = 0
        var first: Int?
        for i in 0..<count where bytes.loadUnaligned(fromByteOffset: i * width, as: T.self) & mask == mask {
            n += 1
            if first == nil { first = i }
        }
        return (n, first)
    }
}

/// Bytes processed so far, shared by the scanning threads; reports at most every 1/1000 of the total.
final class ProgressCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var done = 0
    private var lastReported = 0
    private let total: Int
    private let report: (@Sendable (Int, Int) -> Void)?

    init(total: Int, report: (@Sendable (Int, Int) -> Void)?) {
        self.total = total
        self.report = report
    }

    func add(_ bytes: Int) {
        guard let report else { return }
        lock.lock()
        done += bytes
        let now = done
        let due = now - lastReported >= max(1, total / 1000) || now == total
        if due { lastReported = now }
        lock.unlock()
        if due { report(now, total) }
    }
}
