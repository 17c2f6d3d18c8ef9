import Checkpoint
import FileIO
import Forward
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import GGUF
import GGUFModel
import JSONCore
import ModelConfig
import Requantize
import TensorCore

/// A GGUF model (one file or a split set, `deepseek2`) written back as a Hugging Face checkpoint with the
/// original tensor names: `k2pack dequantize FILE.gguf OUT` and `k2pack convert FILE.gguf OUT --to hf`.
///
/// The tensors are the ones the written config.json implies (`ExpectedTensorList`, the same list `verify`
/// checks), each served from the GGUF through the weight source's slots (`GGUFWeightSource`, the tensor map
/// manifest `gguf_deepseek2.json`): experts unstacked, `kv_b_proj` rebuilt from `attn_k_b`/`attn_v_b`, the
/// router, its bias, the norms, the embedding and the head (none when tied). Every value is ggml's own
/// dequantization (`GGUFDequantizer`), then BF16 (round to nearest even) or F32; a tensor already stored in the
/// output dtype is copied byte for byte. With `repackExperts` (`--to hf`) and every routed-expert tensor Q4_0,
/// the experts are written as compressed-tensors INT4 by moving nibbles (`Q4_0Repack`), each scale checked first.
///
/// Streamed a block of rows at a time (memory bounded by `IOSizes.workBlock` per tensor, whatever its size);
/// shards of at most `shardBytes` (one tensor larger than that gets a shard of its own) with an index; every
/// file written atomically, and on any error everything written is removed (a folder this run created goes too).
public enum GGUFUnpacker {
    public struct Options: Sendable {
        /// BF16 or F32 for every dequantized tensor (F32 where the architecture keeps a tensor F32: the router bias).
        public var dtype: DType = .bf16
        /// Write Q4_0 routed experts as compressed-tensors INT4 (`convert --to hf`).
        public var repackExperts = false
        /// nil: `k2pack.source.model_type`, else deepseek-v3 (k25 when `visionFrom` is given).
        public var layout: UnpackLayout?
        /// A Kimi K2.5 Hugging Face folder whose vision config and vision tensors (byte for byte) complete the
        /// k25 layout.
        public var visionFrom: String?
        public var shardBytes = 5 << 30
        public var threads = ProcessInfo.processInfo.activeProcessorCount
        public init(dtype: DType = .bf16, repackExperts: Bool = false, layout: UnpackLayout? = nil, visionFrom: String? = nil) {
            self.dtype = dtype
            self.repackExperts = repackExperts
            self.layout = layout
            self.visionFrom = visionFrom
        }
    }

    public struct Report: Sendable, Codable {
        public var layout: String
        public var dtype: String
        public var tensors: Int
        /// Written from the GGUF's bytes unchanged (stored in the output dtype already).
        public var copiedTensors: Int
        /// Expert modules written as INT4 (weight_packed, weight_scale, weight_shape).
        public var repackedModules: Int
        public var shards: [String]
        public var outputBytes: Int
        public var notes: [String]
        public var seconds: Double
    }

    /// Test hook: called before each shard is written with the output folder and the shard's index; a throw
    /// stands for a write failure (a full disk) at that point.
    nonisolated(unsafe) public static var beforeShard: ((String, Int) throws -> Void)?

    public static func unpack(input: String, output: String, options: Options = Options(), progress: ProgressCallback? = nil) throws -> Report {
        let start = Date()
        precondition(options.dtype == .bf16 || options.dtype == .f32, "dtype bf16 or f32")
        let source: GGUFWeightSource
        do { source = try GGUFWeightSource(path: input) } catch { throw GGUFUnpackError.source(error) }
        let model = source.model
        let file = model.first.path
        // The weight source has checked that the architecture has a map.
        let loaded: GGUFTensorMap?
        do { loaded = try GGUFTensorMap.load(architecture: model.first.architecture ?? "") } catch { throw GGUFUnpackError.source(error) }
        guard let map = loaded else {
            throw GGUFUnpackError.source(.unknownArchitecture(file: file, found: model.first.architecture, known: GGUFTensorMap.known))
        }
        var notes = source.notes
        let (layout, layoutNote) = try UnpackLayout.resolve(options.layout, model: model, visionFrom: options.visionFrom)
        if let layoutNote { notes.append(layoutNote) }
        let inputs = model.parts.map(\.path) + (options.visionFrom.map { [$0] } ?? [])
        // Refused before any work: an output that exists and is not empty, a link, or one overlapping an input.
        try OutputPaths.checkFolder(output, inputs: inputs)
        let vision = try options.visionFrom.map(VisionSource.init(folder:))

        let text = source.config.text
        let int4 = options.repackExperts && expertsAsInt4(model: model, map: map, text: text)
        if options.repackExperts, !int4 {
            notes.append("routed experts are not all Q4_0: written dequantized (BF16), not as INT4")
        }
        let dtype = options.dtype
        let quantization = int4 ? try ManifestLibrary.scheme(named: "kimi_int4_scheme") : nil
        var configObject = UnpackConfig.make(source: source.config.raw, model: model, layout: layout, dtype: dtype, quantization: quantization)
        if let vision { configObject = UnpackConfig.nested(text: configObject, vision: vision.config, textKey: vision.textKey) }
        let configBytes = UnpackConfig.bytes(configObject)
        let expected: ExpectedTensorList
        do {
            expected = try ExpectedTensorList(config: try ModelConfig.parse(configBytes))
        } catch {
            throw GGUFUnpackError.config(file: file, reason: error.description)
        }

        // The tensors, in the config's manifest order.
        let planner = Planner(source: source, map: map, model: model, threads: options.threads)
        var tensors: [OutputTensor] = []
        var copied = 0, repacked = 0
        for t in expected.tensors where t.vision || (t.layer.map { $0 < text.numLayers } ?? true) {
            if t.vision {
                guard let vision else { continue }
                tensors.append(try vision.copy(t))
                copied += 1
                continue
            }
            guard let slot = WeightSlot(rawValue: t.slot) else {
                throw GGUFUnpackError.config(file: file, reason: "\(t.name): slot \(t.slot) is not one the forward pass has")
            }
            let out = t.dtypes.first ?? dtype
            switch t.form {
            case .plain:
                let (tensor, wasCopied) = try planner.plain(t, slot: slot, dtype: out)
                tensors.append(tensor)
                if wasCopied { copied += 1 }
            case .packed, .scale, .shape:
                tensors.append(try planner.int4(t, slot: slot))
                if t.form == .packed { repacked += 1 }
            case .blockScale:
                throw GGUFUnpackError.config(file: file, reason: "\(t.name): FP8 block scales are not written")
            }
        }

        let total = tensors.reduce(0) { $0 + $1.length }
        let counter = ProgressCounter(total: total, report: progress)
        let shards = shardPlan(tensors, maxBytes: options.shardBytes).map { list in
            list.map { t -> OutputTensor in
                var counted = t
                let produce = t.produce
                counted.produce = { emit in try produce { try emit($0); counter.add($0.count) } }
                return counted
            }
        }
        let names = shards.indices.map { "model-\(fiveDigits($0 + 1))-of-\(fiveDigits(shards.count)).safetensors" }

        let existed = FileManager.default.fileExists(atPath: output)
        try OutputPaths.prepareFolder(output, inputs: inputs, existing: .empty)
        let folder = OutputPaths.trimmed(output)
        var written = 0
        do {
            for (i, shard) in shards.enumerated() {
                try beforeShard?(folder, i)
                written += try SafetensorsWriter.write(path: folder + "/" + names[i], tensors: shard)
                source.releaseViewed()
            }
            try AtomicFile.write(IndexWriter.bytes(shards: zip(names, shards).map { ($0, $1) }), to: folder + "/" + ShardIndex.fileName)
            try AtomicFile.write(configBytes, to: folder + "/" + ModelConfig.fileName)
            // The vision folder rewritten while it was read makes the output a mix: refused.
            try vision?.directory.checkUnchanged()
        } catch {
            // Nothing half-way: every file this run may have made goes, and the folder too when it made it.
            for name in names + [ShardIndex.fileName, ModelConfig.fileName] {
                unlink(folder + "/" + name)
                unlink(folder + "/." + name + ".partial")
            }
            if !existed { rmdir(folder) }
            throw error
        }
        if planner.rounded.count > 0 {
            notes.append("\(planner.rounded.count) float32 tensor(s) held values BF16 cannot represent exactly: rounded to nearest even")
        }
        return Report(
            layout: layout.rawValue, dtype: dtype.rawValue, tensors: tensors.count, copiedTensors: copied, repackedModules: repacked,
            shards: names, outputBytes: written, notes: notes, seconds: Date().timeIntervalSince(start))
    }

    static func fiveDigits(_ n: Int) -> String {
        let s = String(n)
        return String(repeating: "0", count: max(0, 5 - s.count)) + s
    }

    /// Consecutive tensors in shards of at most `maxBytes` (a larger tensor alone in its shard); at least one shard.
    static func shardPlan(_ tensors: [OutputTensor], maxBytes: Int) -> [[OutputTensor]] {
        var shards: [[OutputTensor]] = [[]]
        var size = 0
        for t in tensors {
            if !shards[shards.count - 1].isEmpty, size + t.length > maxBytes {
                shards.append([])
                size = 0
            }
            shards[shards.count - 1].append(t)
            size += t.length
        }
        return shards
    }

    /// Whether the routed experts go out as INT4: every routed-expert tensor is Q4_0 (from the headers alone).
    /// Each block's scale is checked as it is repacked (`Planner.int4`): a bad one stops the write, naming it, and
    /// everything written is removed. Not checked in a pass of its own first, which would read every expert twice.
    static func expertsAsInt4(model: GGUF.GGUFModel, map: GGUFTensorMap, text: TextConfig) -> Bool {
        let slots: [WeightSlot] = [.routedExpertGate, .routedExpertUp, .routedExpertDown]
        var any = false
        for layer in text.moeLayers where layer < text.numLayers {
            for slot in slots {
                guard let name = map.name(slot, layer: layer), let (_, info) = model.tensor(named: name) else { continue }
                guard info.type == .q4_0 else { return false }
                any = true
            }
        }
        return any
    }
}

/// Makes each output tensor's producer from the GGUF.
struct Planner {
    let source: GGUFWeightSource
    let map: GGUFTensorMap
    let model: GGUF.GGUFModel
    let threads: Int
    /// Tensors whose BF16 rounding changed a value (counted as they are written).
    let rounded = InexactCounter()

    var file: String { model.first.path }

    /// The stored tensor serving `slot` at `layer` with one layout, or nil.
    func stored(_ slot: WeightSlot, layer: Int?, layout: GGUFTensorMap.Layout? = nil) -> (GGUFFile, GGUFTensorInfo)? {
        let entries = map.tensors.filter { $0.slot == slot.rawValue && (layout == nil || $0.layout == layout) }
        for entry in entries {
            let name = layer.map { entry.gguf.replacingOccurrences(of: "{L}", with: String($0)) } ?? entry.gguf
            if let found = model.tensor(named: name) { return found }
        }
        return nil
    }

    func forwardError(_ error: ForwardError, _ name: String) -> GGUFUnpackError {
        .source(.inconsistent(file: file, key: name, reason: error.description))
    }

    /// A plain tensor (a norm, bias, embedding, head or unquantized Linear weight) in `dtype`. Returns whether it is
    /// copied byte for byte.
    func plain(_ t: ExpectedTensor, slot: WeightSlot, dtype: DType) throws -> (OutputTensor, Bool) {
        let width = dtype == .f32 ? 4 : 2
        let elements = t.shape.reduce(1, *)
        let storedType: GGMLType = dtype == .f32 ? .f32 : .bf16
        let name = t.name
        // Stored already in the output dtype: the GGUF's bytes (an expert's slab for a routed expert).
        if slot != .attnKVB, let (part, info) = stored(slot, layer: t.layer), info.type == storedType {
            var range = 0..<info.byteCount
            if t.expert != nil, info.ne.count == 3 {
                let slab = info.byteCount / info.ne[2]
                let e = t.expert ?? 0
                range = (e * slab)..<((e + 1) * slab)
            }
            guard range.count == elements * width else {
                throw GGUFUnpackError.source(.wrongShape(file: part.path, tensor: info.name, found: info.ne, expected: t.shape.reversed()))
            }
            let bytes = try part.bytes(of: info)
            let fileStart = part.dataStart + info.offset
            let tensor = OutputTensor(name: name, dtype: dtype, shape: t.shape, length: range.count) { emit in
                var at = range.lowerBound
                while at < range.upperBound {
                    let n = min(IOSizes.copyPiece, range.upperBound - at)
                    try emit(UnsafeRawBufferPointer(rebasing: bytes[at..<(at + n)]))
                    part.file.adviseDone((fileStart + at)..<(fileStart + at + n))
                    at += n
                }
            }
            return (tensor, true)
        }
        // kv_b_proj from two BF16 halves, BF16 out: a permutation of the stored values.
        if slot == .attnKVB, dtype == .bf16, let k = stored(slot, layer: t.layer, layout: .mlaKB), let v = stored(slot, layer: t.layer, layout: .mlaVB),
            k.1.type == .bf16, v.1.type == .bf16
        {
            return (try kvbPermuted(t, k: k, v: v), true)
        }
        let counter = rounded
        let matrix: WeightMatrix?
        if t.shape.count == 1 {
            matrix = nil
        } else {
            do { matrix = try source.matrix(slot, layer: t.layer, expert: t.expert) } catch { throw forwardError(error, name) }
            guard let matrix, [matrix.rows, matrix.cols] == t.shape else {
                throw GGUFUnpackError.source(.inconsistent(file: file, key: name, reason: "the GGUF serves \(matrix.map { "[\($0.rows), \($0.cols)]" } ?? "nothing"), expected \(t.shape)"))
            }
        }
        let vectorValues: [Float]?
        if matrix == nil {
            do { vectorValues = try source.vector(slot, layer: t.layer) } catch { throw forwardError(error, name) }
            guard vectorValues?.count == elements else {
                throw GGUFUnpackError.source(.inconsistent(file: file, key: name, reason: "the GGUF holds \(vectorValues?.count ?? 0) values, expected \(elements)"))
            }
        } else {
            vectorValues = nil
        }
        let threads = self.threads
        // Only a float tensor's rounding is worth a note: a quantized type's values are rarely BF16 values.
        let from = (slot == .attnKVB ? stored(slot, layer: t.layer, layout: .mlaKB) : stored(slot, layer: t.layer))?.1.type
        let checkExact = dtype == .bf16 && (from == .f32 || from == .f16)
        let tensor = OutputTensor(name: name, dtype: dtype, shape: t.shape, length: elements * width) { emit in
            if let values = vectorValues {
                let bytes = Self.encode(values[...], dtype: dtype, counter: checkExact ? counter : nil, name: name)
                try bytes.withUnsafeBytes { try emit($0) }
                return
            }
            guard let matrix else { return }
            let cols = matrix.cols
            let blockRows = max(1, IOSizes.workBlock / max(1, cols * 4))
            var floats = [Float](repeating: 0, count: min(matrix.rows, blockRows) * cols)
            var at = 0
            while at < matrix.rows {
                let count = min(blockRows, matrix.rows - at)
                let base = at
                floats.withUnsafeMutableBufferPointer { buffer in
                    let target = SendablePointer(buffer.baseAddress!)
                    let share = (count + threads - 1) / max(threads, 1)
                    DispatchQueue.concurrentPerform(iterations: max(1, min(threads, count))) { i in
                        let lo = i * share, hi = min(count, lo + share)
                        if lo < hi { matrix.decodeRows((base + lo)..<(base + hi), into: target.pointer + lo * cols) }
                    }
                }
                let bytes = Self.encode(floats[0..<(count * cols)], dtype: dtype, counter: checkExact ? counter : nil, name: name)
                try bytes.withUnsafeBytes { try emit($0) }
                matrix.releaseRows(base..<(base + count))
                at += count
            }
        }
        return (tensor, false)
    }

    /// float32 values as little-endian bytes of `dtype` (BF16: round to nearest even, counting changed values).
    static func encode(_ values: ArraySlice<Float>, dtype: DType, counter: InexactCounter?, name: String) -> [UInt8] {
        if dtype == .f32 {
            var out = [UInt8](repeating: 0, count: values.count * 4)
            out.withUnsafeMutableBytes { raw in
                for (i, v) in values.enumerated() { raw.storeBytes(of: v.bitPattern.littleEndian, toByteOffset: 4 * i, as: UInt32.self) }
            }
            return out
        }
        var out = [UInt8](repeating: 0, count: values.count * 2)
        var changed = false
        out.withUnsafeMutableBytes { raw in
            for (i, v) in values.enumerated() {
                let b = BFloat16Bits.fromFloat(v)
                if !changed, v.bitPattern & 0xFFFF != 0, !v.isNaN { changed = true }
                raw.storeBytes(of: b.littleEndian, toByteOffset: 2 * i, as: UInt16.self)
            }
        }
        if changed { counter?.mark(name) }
        return out
    }

    /// `kv_b_proj` `[heads·(nope+v), kv_lora]` from BF16 `attn_k_b` (ne {nope, kv_lora, heads}) and `attn_v_b`
    /// (ne {kv_lora, v, heads}), element for element (the inverse of the per-head split).
    func kvbPermuted(_ t: ExpectedTensor, k: (GGUFFile, GGUFTensorInfo), v: (GGUFFile, GGUFTensorInfo)) throws -> OutputTensor {
        let nope = k.1.ne[0], latent = k.1.ne[1], heads = k.1.ne[2], vDim = v.1.ne[1]
        guard v.1.ne == [latent, vDim, heads], t.shape == [heads * (nope + vDim), latent] else {
            throw GGUFUnpackError.source(.wrongShape(file: v.0.path, tensor: v.1.name, found: v.1.ne, expected: [latent, vDim, heads]))
        }
        let kBytes = try k.0.bytes(of: k.1), vBytes = try v.0.bytes(of: v.1)
        let kb = SendableBytes(kBytes), vb = SendableBytes(vBytes)
        return OutputTensor(name: t.name, dtype: .bf16, shape: t.shape, length: t.shape[0] * latent * 2) { emit in
            var row = [UInt8](repeating: 0, count: latent * 2)
            for h in 0..<heads {
                for d in 0..<(nope + vDim) {
                    row.withUnsafeMutableBytes { out in
                        for c in 0..<latent {
                            let src = d < nope ? kb.bytes.baseAddress! + 2 * ((h * latent + c) * nope + d)
                                : vb.bytes.baseAddress! + 2 * ((h * vDim + (d - nope)) * latent + c)
                            out.baseAddress!.advanced(by: 2 * c).copyMemory(from: src, byteCount: 2)
                        }
                    }
                    try row.withUnsafeBytes { try emit($0) }
                }
            }
        }
    }

    /// An INT4 tensor of a routed expert (`weight_packed`, `weight_scale` or `weight_shape`) from its Q4_0 slab.
    func int4(_ t: ExpectedTensor, slot: WeightSlot) throws -> OutputTensor {
        guard let module = t.module, let logical = t.logicalShape, let expert = t.expert,
            let (part, info) = stored(slot, layer: t.layer, layout: .experts), info.type == .q4_0, info.ne.count == 3
        else {
            throw GGUFUnpackError.config(file: file, reason: "\(t.name): INT4 is written only for Q4_0 routed experts")
        }
        let rows = logical[0], cols = logical[1]
        guard info.ne[0] == cols, info.ne[1] == rows, expert < info.ne[2], cols % Q4_0Repack.groupSize == 0 else {
            throw GGUFUnpackError.source(.wrongShape(file: part.path, tensor: info.name, found: info.ne, expected: [cols, rows, info.ne[2]]))
        }
        let groups = cols / Q4_0Repack.groupSize
        let slabBlocks = rows * groups
        let all = try part.bytes(of: info)
        let slab = SendableBytes(UnsafeRawBufferPointer(rebasing: all[(expert * slabBlocks * Q4_0Repack.blockBytes)..<((expert + 1) * slabBlocks * Q4_0Repack.blockBytes)]))
        let slabStart = part.dataStart + info.offset + expert * slabBlocks * Q4_0Repack.blockBytes
        switch t.form {
        case .shape:
            let dtype = t.dtypes.contains(.i64) ? DType.i64 : .i32
            let values = [rows, cols]
            var bytes: [UInt8] = []
            for v in values {
                if dtype == .i64 { withUnsafeBytes(of: Int64(v).littleEndian) { bytes += $0 } } else { withUnsafeBytes(of: Int32(v).littleEndian) { bytes += $0 } }
            }
            let fixed = bytes
            return OutputTensor(name: module + ".weight_shape", dtype: dtype, shape: [2], length: fixed.count) { emit in
                try fixed.withUnsafeBytes { try emit($0) }
            }
        case .packed, .scale:
            let packed = t.form == .packed
            let length = packed ? rows * cols / 2 : rows * groups * 2
            return OutputTensor(name: t.name, dtype: packed ? .i32 : .bf16, shape: t.shape, length: length) { emit in
                let blockRows = max(1, IOSizes.workBlock / max(1, groups * 16))
                var codes = [UInt8](repeating: 0, count: min(rows, blockRows) * groups * 16)
                var scales = [UInt8](repeating: 0, count: min(rows, blockRows) * groups * 2)
                var at = 0
                while at < rows {
                    let count = min(blockRows, rows - at)
                    let blocks = UnsafeRawBufferPointer(rebasing: slab.bytes[(at * groups * Q4_0Repack.blockBytes)..<((at + count) * groups * Q4_0Repack.blockBytes)])
                    if let bad = Q4_0Repack.firstBadScale(blocks, count: count * groups) {
                        throw GGUFUnpackError.inexactScale(
                            file: part.path, tensor: info.name, expert: expert, row: at + bad / groups, group: bad % groups,
                            value: GGUFDequantizer.halfToFloat(Q4_0Repack.scaleBits(blocks, block: bad)))
                    }
                    codes.withUnsafeMutableBytes { c in
                        scales.withUnsafeMutableBytes { s in
                            Q4_0Repack.repack(blocks, count: count * groups, codes: c.baseAddress!, scales: s.baseAddress!)
                        }
                    }
                    if packed {
                        try codes.withUnsafeBytes { try emit(UnsafeRawBufferPointer(rebasing: $0[0..<(count * groups * 16)])) }
                    } else {
                        try scales.withUnsafeBytes { try emit(UnsafeRawBufferPointer(rebasing: $0[0..<(count * groups * 2)])) }
                    }
                    at += count
                }
                // The scales are written after the codes: the expert's slab is done with.
                if !packed { part.file.adviseDone(slabStart..<(slabStart + slab.bytes.count)) }
            }
        case .plain, .blockScale:
            throw GGUFUnpackError.config(file: file, reason: "\(t.name): not an INT4 tensor")
        }
    }
}

/// Counts tensors whose BF16 rounding changed a value.
final class InexactCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var names: Set<String> = []
    var count: Int {
        lock.lock()
        defer { lock.unlock() }
        return names.count
    }
    func mark(_ name: String) {
        lock.lock()
        names.insert(name)
        lock.unlock()
    }
}

/// Mapped input bytes read by a producer (the mapping outlives the write).
struct SendableBytes: @unchecked Sendable {
    let bytes: UnsafeRawBufferPointer
    init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }
}

/// `--vision-from`: a Kimi K2.5 folder lending its vision config and its vision tensors (copied byte for byte).
struct VisionSource {
    let directory: CheckpointDirectory
    let config: JSONObject
    let textKey: String

    init(folder: String) throws {
        let dir: CheckpointDirectory
        do { dir = try CheckpointDirectory(path: folder) } catch { throw GGUFUnpackError.visionSource(folder: folder, reason: error.description) }
        guard let bytes = dir.configBytes else { throw GGUFUnpackError.visionSource(folder: folder, reason: "no config.json") }
        let parsed: ModelConfig
        do { parsed = try ModelConfig.parse(bytes, file: folder + "/" + ModelConfig.fileName) } catch {
            throw GGUFUnpackError.visionSource(folder: folder, reason: error.description)
        }
        guard parsed.architecture.visionConfigKey != nil, let key = parsed.architecture.textConfigKey else {
            throw GGUFUnpackError.visionSource(
                folder: folder, reason: "config.json is \(parsed.architecture.displayName) (model_type \(parsed.raw["model_type"]?.stringValue ?? "absent")), which has no vision tower; expected a Kimi K2.5 folder")
        }
        directory = dir
        config = parsed.raw
        textKey = key
    }

    /// A vision tensor of the written config, from the folder: present, of the expected shape and dtype.
    func copy(_ t: ExpectedTensor) throws -> OutputTensor {
        guard let (shard, entry) = directory.entry(named: t.name) else {
            throw GGUFUnpackError.visionSource(folder: directory.path, reason: "tensor \(t.name) is missing")
        }
        let widen = entry.dtype == .bf16 && t.dtypes.first == .f32
        guard entry.shape == t.shape, t.dtypes.contains(entry.dtype) || widen else {
            throw GGUFUnpackError.visionSource(
                folder: directory.path,
                reason: "\(shard.name): tensor \(t.name) is \(entry.dtype.rawValue) \(entry.shape), expected \(t.dtypes.map(\.rawValue).joined(separator: " or ")) \(t.shape)")
        }
        guard widen else {
            return OutputTensor(name: t.name, dtype: entry.dtype, shape: entry.shape, length: entry.byteCount) { emit in
                try shard.file.copyPieces(of: entry.rangeInFile, emit)
            }
        }
        // --dtype f32: BF16 widened (exact).
        return OutputTensor(name: t.name, dtype: .f32, shape: entry.shape, length: entry.byteCount * 2) { emit in
            try shard.file.copyPieces(of: entry.rangeInFile) { piece in
                var out = [UInt8](repeating: 0, count: piece.count * 2)
                out.withUnsafeMutableBytes { raw in
                    for i in 0..<(piece.count / 2) {
                        let half = UInt32(piece[2 * i]) | UInt32(piece[2 * i + 1]) << 8
                        raw.storeBytes(of: (half << 16).littleEndian, toByteOffset: 4 * i, as: UInt32.self)
                    }
                }
                try out.withUnsafeBytes { try emit($0) }
            }
        }
    }
}
