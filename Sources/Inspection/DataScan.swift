import Checkpoint
import FileIO
import Foundation
import LoadedModel
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
        /// NaN/Inf found per tensor (file, tensor, count, first flat index), merged across row ranges.
        var nonFinite: [(file: String, tensor: String, count: Int, first: Int)] = []

        mutating func merge(_ other: Result) {
            findings += other.findings
            nonFinite += other.nonFinite
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
    let progress: ProgressCallback?

    /// One unit of work: a whole shard's SHA-256, or rows `rows` of one tensor.
    enum Item: Sendable {
        case digest(shard: Int)
        case tensor(shard: Int, entry: Int, rows: Range<Int>)
    }

    /// Rows per item: about this many bytes, so one large shard keeps every core busy.
    static let itemBytes = 32 << 20

    func run() -> Result {
        let dir = checkpoint.directory
        var plan: [Item] = []
        var total = 0
        for (s, shard) in dir.shards.enumerated() {
            guard let shard else { continue }
            let digesting = options.checksums?.digest(for: dir.shardNames[s]) != nil
            if digesting {
                // Each shard's digest is read in file order by one worker while others check its tensors.
                plan.append(.digest(shard: s))
                total += shard.file.byteCount
            }
            guard options.scanData else { continue }
            for (e, entry) in shard.tensors.enumerated() {
                let rows = max(1, entry.shape.first ?? 1)
                // About itemBytes per item, never more items than that needs (a zero-size tensor with a
                // huge first dimension is one item).
                let pieces = Self.splittable(checkpoint.expected(shard: s, entry: e)?.form) ? min(rows, entry.byteCount / Self.itemBytes + 1) : 1
                let perItem = CheckedMath.ceilDiv(rows, pieces)
                var start = 0
                while start < rows {
                    let end = min(rows, start + perItem)
                    plan.append(.tensor(shard: s, entry: e, rows: start..<end))
                    start = end
                }
                total += entry.byteCount
            }
        }
        let items = plan
        let done = ProgressCounter(total: total, report: progress)
        let partials: [Result] = parallelMap(count: items.count, width: options.threads) { i in
            switch items[i] {
            case .digest(let s): return digest(shard: s, done: done)
            case let .tensor(s, e, rows): return check(shard: s, entry: e, rows: rows, done: done)
            }
        }
        var result = Result()
        for r in partials { result.merge(r) }
        result.findings += Self.nonFiniteFindings(result.nonFinite)
        result.bytes = dir.shards.reduce(0) { $0 + ($1?.file.byteCount ?? 0) }
        return result
    }

    /// Whether a tensor's checks can run on row ranges independently (scale findings need the whole tensor).
    static func splittable(_ form: TensorForm?) -> Bool {
        switch form {
        case .packed?, .plain?, nil: true
        case .scale?, .shape?, .blockScale?: false
        }
    }

    /// The shard's mapping (held open by the checkpoint for the whole scan), or nil with a finding.
    private func mapping(of shard: SafetensorsFile, into result: inout Result) -> UnsafeRawBufferPointer? {
        do {
            return try shard.file.mapped()
        } catch {
            result.findings.append(Finding(CheckpointError(error)))
            return nil
        }
    }

    private func digest(shard s: Int, done: ProgressCounter) -> Result {
        var result = Result()
        let dir = checkpoint.directory
        guard let shard = dir.shards[s], let expectedHex = options.checksums?.digest(for: dir.shardNames[s]) else { return result }
        let name = dir.shardNames[s]
        guard let data = mapping(of: shard, into: &result) else { return result }
        let digest = SHA256Digest()
        var offset = 0
        let slice = IOSizes.workBlock
        while offset < data.count {
            let end = min(data.count, offset + slice)
            shard.file.adviseSequential(offset..<min(data.count, end + slice))
            digest.update(UnsafeRawBufferPointer(rebasing: data[offset..<end]))
            shard.file.adviseDone(offset..<end)
            done.add(end - offset)
            offset = end
        }
        let actual = digest.finalizeHex()
        result.checksummed = 1
        if actual != expectedHex {
            result.findings.append(Finding(CheckpointError.checksumMismatch(file: name, expected: expectedHex, actual: actual)))
        }
        return result
    }

    private func check(shard s: Int, entry e: Int, rows: Range<Int>, done: ProgressCounter) -> Result {
        var result = Result()
        let dir = checkpoint.directory
        guard let shard = dir.shards[s] else { return result }
        let entry = shard.tensors[e]
        guard let data = mapping(of: shard, into: &result) else { return result }
        let totalRows = max(1, entry.shape.first ?? 1)
        let rowBytes = entry.byteCount / totalRows
        let whole = entry.rangeInFile
        let range = rows.count == totalRows ? whole : (whole.lowerBound + rows.lowerBound * rowBytes)..<(whole.lowerBound + rows.upperBound * rowBytes)
        shard.file.adviseSequential(range)
        let bytes = UnsafeRawBufferPointer(rebasing: data[range])
        check(
            entry, expected: checkpoint.expected(shard: s, entry: e), bytes, rows: rows,
            elementOffset: rows.lowerBound * (rowBytes / max(1, entry.dtype.byteWidth)), file: dir.shardNames[s], into: &result)
        if options.checksums?.digest(for: dir.shardNames[s]) == nil { shard.file.adviseDone(range) }
        done.add(bytes.count)
        return result
    }

    private func check(
        _ entry: TensorEntry, expected: ExpectedTensor?, _ bytes: UnsafeRawBufferPointer, rows: Range<Int>, elementOffset: Int,
        file: String, into result: inout Result
    ) {
        guard let expected, expected.dtypes.contains(entry.dtype), entry.shape == expected.shape else {
            // Unknown or mis-shaped tensors are reported structurally; still look for non-finite floats.
            checkFinite(entry, bytes, elementOffset: elementOffset, file: file, into: &result)
            return
        }
        switch expected.form {
        case .plain, .blockScale:
            checkFinite(entry, bytes, elementOffset: elementOffset, file: file, into: &result)
        case .scale:
            let stats = ScaleStats.scan(bytes, dtype: entry.dtype)
            if stats.badCount > 0, let bad = stats.firstBad {
                let columns = max(1, entry.shape.last ?? 1)
                let code = stats.nonFinite > 0 ? "scale_not_finite" : "scale_not_positive"
                result.findings.append(Finding(
                    code: code, file: file, tensor: entry.name,
                    message: "\(displayed(file)): tensor '\(displayed(entry.name))': \(stats.badCount) of \(stats.count) scales are not finite and positive (\(stats.nonFinite) NaN/Inf, \(stats.nonPositive) zero or negative); first at [\(bad.index / columns), \(bad.index % columns)] = \(bad.value.isNaN ? "NaN" : "\(bad.value)")"))
            }
            if stats.minimum.isFinite {
                result.scaleMin = min(result.scaleMin, stats.minimum)
                result.scaleMax = max(result.scaleMax, stats.maximum)
            }
        case .packed:
            guard case let .packQuantized(bits, groupSize, _)? = expected.method, bits == 4, entry.shape.count == 2 else { return }
            if rows.lowerBound == 0 { result.int4Modules += 1 }
            result.codes.merge(Int4CodeStats.scan(bytes, rows: rows.count, bytesPerRow: entry.shape[1] * 4, groupSize: groupSize))
        case .shape:
            guard let logical = expected.logicalShape, entry.shape == [2], let values = WeightShapeRecord.values(bytes, dtype: entry.dtype) else { return }
            if values != logical {
                let module = expected.module ?? entry.name
                result.findings.append(Finding(
                    code: "wrong_weight_shape", file: file, tensor: entry.name,
                    message: "\(displayed(file)): tensor '\(displayed(entry.name))': weight_shape holds \(formatShape(values)) but weight_packed, weight_scale and config.json give \(formatShape(logical)) for '\(displayed(module))'"))
            }
        }
    }

    private func checkFinite(
        _ entry: TensorEntry, _ bytes: UnsafeRawBufferPointer, elementOffset: Int, file: String, into result: inout Result
    ) {
        let (count, first) = NonFinite.scan(bytes, dtype: entry.dtype)
        guard count > 0, let first else { return }
        result.nonFinite.append((file, entry.name, count, elementOffset + first))
    }

    /// One finding per tensor with NaN/Inf, however many row ranges reported it, in first-seen order.
    static func nonFiniteFindings(_ partials: [(file: String, tensor: String, count: Int, first: Int)]) -> [Finding] {
        var order: [String] = []
        var totals: [String: (file: String, count: Int, first: Int)] = [:]
        for p in partials {
            if let t = totals[p.tensor] {
                totals[p.tensor] = (t.file, t.count + p.count, min(t.first, p.first))
            } else {
                order.append(p.tensor)
                totals[p.tensor] = (p.file, p.count, p.first)
            }
        }
        return order.map { tensor in
            let t = totals[tensor]!
            return Finding(
                code: "non_finite_values", file: t.file, tensor: tensor,
                message: "\(displayed(t.file)): tensor '\(displayed(tensor))': \(t.count) NaN/Inf value\(t.count == 1 ? "" : "s"), first at flat index \(t.first)")
        }
    }
}

/// Counts NaN/Inf in floating-point data (BF16, F16, F32, F64); other dtypes have none.
enum NonFinite {
    static func scan(_ bytes: UnsafeRawBufferPointer, dtype: DType) -> (count: Int, first: Int?) {
        switch dtype {
        case .bf16: return FastScan.countAllOnes16(bytes, mask: 0x7F80)
        case .f16: return FastScan.countAllOnes16(bytes, mask: 0x7C00)
        case .f32: return count(bytes, as: UInt32.self, mask: 0x7F80_0000)
        case .f64: return count(bytes, as: UInt64.self, mask: 0x7FF0_0000_0000_0000)
        default: return (0, nil)
        }
    }

    /// A value is NaN or Inf when all its exponent bits (`mask`) are set.
    private static func count<T: FixedWidthInteger>(_ bytes: UnsafeRawBufferPointer, as: T.Type, mask: T) -> (Int, Int?) {
        let width = MemoryLayout<T>.size
        var n = 0
        var first: Int?
        for i in 0..<(bytes.count / width) where bytes.loadUnaligned(fromByteOffset: i * width, as: T.self) & mask == mask {
            n += 1
            if first == nil { first = i }
        }
        return (n, first)
    }
}

