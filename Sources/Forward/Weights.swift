import TensorCore

/// Why the forward pass could not run.
public enum ForwardError: Error, Equatable, Sendable, CustomStringConvertible {
    case missingTensor(String)
    case wrongTensor(name: String, reason: String)
    case config(key: String, reason: String)
    case unsupported(String)
    case input(String)
    /// The checkpoint is structurally broken (`LoadedCheckpoint.unusableReason`).
    case unusableCheckpoint(reason: String)
    /// A Hugging Face folder without a readable config.json.
    case noReadableConfig(folder: String)
    /// A k2pack folder without its source config.json.
    case missingConfig(path: String)
    /// One rank of a shard set opened as a whole model.
    case rankOfSet(folder: String, rank: Int)
    case io(String)

    public var description: String {
        switch self {
        case .missingTensor(let name): "tensor \(displayed(name)) is missing from the checkpoint"
        case .wrongTensor(let name, let reason): "tensor \(displayed(name)): \(displayed(reason, limit: nil))"
        case .config(let key, let reason): "config.json \(displayed(key)): \(displayed(reason, limit: nil))"
        case .unsupported(let what): "not supported by the reference forward pass: \(displayed(what, limit: nil))"
        case .input(let reason): displayed(reason, limit: nil)
        case .unusableCheckpoint(let reason): displayed(reason, limit: nil)
        case .noReadableConfig(let folder): "\(displayed(folder)): no readable config.json"
        case .missingConfig(let path): "\(displayed(path)): missing (a k2pack folder carries the source config.json)"
        case let .rankOfSet(folder, rank): "\(displayed(folder)) is rank \(rank) of a shard set: run the forward pass from the whole set (parity --shards SET)"
        case .io(let reason): displayed(reason, limit: nil)
        }
    }
}

/// A stored tensor's bytes, viewed in place (a mapping owned by the store; valid while the store lives).
public struct TensorView: @unchecked Sendable {
    public var name: String
    public var dtype: DType
    public var shape: [Int]
    public var bytes: UnsafeRawBufferPointer
    /// Drops a byte range of this view (relative to its start) from the resident set once it has been used.
    public var release: (@Sendable (Range<Int>) -> Void)?
    /// Asks the kernel to read a byte range of this view (relative to its start) into the page cache ahead of use
    /// (`MADV_WILLNEED`: the reads go on in the background, though asking may wait for the device's queue).
    public var prefetch: (@Sendable (Range<Int>) -> Void)?
    public init(
        name: String, dtype: DType, shape: [Int], bytes: UnsafeRawBufferPointer, release: (@Sendable (Range<Int>) -> Void)? = nil,
        prefetch: (@Sendable (Range<Int>) -> Void)? = nil
    ) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.bytes = bytes
        self.release = release
        self.prefetch = prefetch
    }

    /// Releases the bytes of rows `rows` of a row-major view whose rows are `rowBytes` long.
    func releaseRows(_ rows: Range<Int>, rowBytes: Int) {
        release?((rows.lowerBound * rowBytes)..<min(bytes.count, rows.upperBound * rowBytes))
    }
}

/// How INT4 weights become float32.
public enum Dequantization: String, Sendable, CaseIterable {
    /// `q · scale` in float32 (exact).
    case exact
    /// `bf16(q · scale)`, as compressed-tensors' decompressor and transformers' loader compute it.
    case bf16
}

/// Rows of a stored matrix decoded by the weight source that serves it (`WeightMatrix.Storage.rows`): how a
/// file format with its own encodings (GGUF's block quantizations) plugs in without changing the forward pass.
public protocol MatrixRows: Sendable {
    /// Decodes rows `range` into `out` (row-major, the matrix's `cols` floats per row).
    func decodeRows(_ range: Range<Int>, into out: UnsafeMutablePointer<Float>)
    /// Drops the stored bytes behind rows `range` from the resident set once used (may do nothing).
    func releaseRows(_ range: Range<Int>)
    /// The rows as ggml blocks the fused few-token kernels multiply directly (`GGMLBlocks`), or nil (the
    /// default): then every product decodes rows first.
    var ggmlBlocks: GGMLBlocks? { get }
}

extension MatrixRows {
    public var ggmlBlocks: GGMLBlocks? { nil }
}

/// A weight matrix `[rows = out, cols = in]` decoded to float32 a block of rows at a time.
public struct WeightMatrix: Sendable {
    public enum Storage: Sendable {
        case plain(TensorView)
        /// pack-quantized: I32 words of `bits`-wide offset-binary codes, first element in the lowest bits.
        case packed(codes: TensorView, scales: TensorView, groupSize: Int, bits: Int, dequant: Dequantization, highFirst: Bool)
        /// FP8 E4M3 with float32 block scales (`weight_scale_inv`).
        case fp8Block(weight: TensorView, scales: TensorView, blockRows: Int, blockCols: Int)
        /// A stored form this module does not decode itself (a new file format's own block quantization): its
        /// source supplies the decoder.
        case rows(any MatrixRows)
    }

    public var name: String
    public var rows: Int
    public var cols: Int
    public var storage: Storage

    public init(name: String, rows: Int, cols: Int, storage: Storage) {
        self.name = name
        self.rows = rows
        self.cols = cols
        self.storage = storage
    }

    /// Decodes rows `range` into `out` (row-major, `cols` floats per row).
    public func decodeRows(_ range: Range<Int>, into out: UnsafeMutablePointer<Float>) {
        switch storage {
        case .plain(let view):
            Decode.plain(view, from: range.lowerBound * cols, count: range.count * cols, into: out)
        case let .packed(codes, scales, group, bits, dequant, highFirst):
            Decode.packed(codes: codes, scales: scales, rows: range, cols: cols, group: group, bits: bits,
                          dequant: dequant, highFirst: highFirst, into: out)
        case let .fp8Block(weight, scales, br, bc):
            Decode.fp8Block(weight: weight, scales: scales, rows: range, cols: cols, blockRows: br, blockCols: bc, into: out)
        case .rows(let decoder):
            decoder.decodeRows(range, into: out)
        }
    }

    /// Drops the stored bytes behind rows `range` from the resident set (the page cache keeps them): a large
    /// matrix (lm_head, 2.3 GB in K2.5) never sits in this process's memory whole.
    public func releaseRows(_ range: Range<Int>) {
        switch storage {
        case .plain(let view):
            view.releaseRows(range, rowBytes: cols * view.dtype.bitWidth / 8)
        case let .packed(codes, scales, _, _, _, _):
            codes.releaseRows(range, rowBytes: codes.bytes.count / max(rows, 1))
            scales.releaseRows(range, rowBytes: scales.bytes.count / max(rows, 1))
        case let .fp8Block(weight, _, _, _):
            weight.releaseRows(range, rowBytes: cols)
        case .rows(let decoder):
            decoder.releaseRows(range)
        }
    }

    /// Asks for the whole stored matrix to be read ahead (`TensorView.prefetch`; nothing where the source gives no way).
    public func prefetch() {
        switch storage {
        case .plain(let view): view.prefetch?(0..<view.bytes.count)
        case let .packed(codes, scales, _, _, _, _):
            codes.prefetch?(0..<codes.bytes.count)
            scales.prefetch?(0..<scales.bytes.count)
        case let .fp8Block(weight, scales, _, _):
            weight.prefetch?(0..<weight.bytes.count)
            scales.prefetch?(0..<scales.bytes.count)
        case .rows: break
        }
    }

    /// One row as an array (embedding lookups).
    public func row(_ r: Int) -> [Float] {
        [Float](unsafeUninitializedCapacity: cols) { buffer, count in
            decodeRows(r..<(r + 1), into: buffer.baseAddress!)
            count = cols
        }
    }

    /// The whole matrix (small matrices only: norms, routers).
    public func all() -> [Float] {
        [Float](unsafeUninitializedCapacity: rows * cols) { buffer, count in
            if rows * cols > 0 { decodeRows(0..<rows, into: buffer.baseAddress!) }
            count = rows * cols
        }
    }
}

/// One rank's place in a sharded model: its tensor-parallel and expert-parallel position and the routed experts
/// it holds. (Which block of each split tensor it stores is its weight source's business.)
public struct WeightPartition: Sendable, Equatable {
    public var tp: Int
    public var ep: Int
    public var tpRank: Int
    public var epRank: Int
    public var experts: Range<Int>

    public init(tp: Int, ep: Int, tpRank: Int, epRank: Int, experts: Range<Int>) {
        self.tp = tp
        self.ep = ep
        self.tpRank = tpRank
        self.epRank = epRank
        self.experts = experts
    }
}

extension WeightPartition {
    /// Whether this rank adds routed experts to the MoE sum: every rank when there is one expert group (the
    /// ranks split the experts by their tp rule), else tensor-parallel rank 0 of each group (the group's other
    /// ranks hold the same experts).
    public var addsRoutedExperts: Bool { ep == 1 || tpRank == 0 }
    /// Whether this rank adds its block of the shared expert: expert group 0's ranks (the other groups' copies
    /// are the same bytes).
    public var addsSharedExpert: Bool { epRank == 0 }
}
