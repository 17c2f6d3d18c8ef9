import Forward
import TensorCore

/// A reference dump (docs/REFERENCE-DUMPS.md): `input_ids` [B, T] and optional activations under a group.
public final class ReferenceDump: @unchecked Sendable {
    public let file: HDF5File
    /// The group prefix, "" for the root or e.g. "/exact".
    public let group: String
    /// `file.h5` or `file.h5:/group`, for messages.
    public let label: String
    public let inputIDs: [Int32]
    public let batch: ForwardPass.Batch
    /// What the dump says about itself (`dequant`, `dtype`, … attributes), when present.
    public let dequant: String?
    public let dtype: String?

    /// Largest dump accepted per dataset (elements): 2³¹ floats is 8 GiB.
    public static let maxElements = 1 << 31
    /// Tokens per dump (B × T) accepted.
    public static let maxTokens = 1 << 20

    /// The file of a `path` or `path:/group` spec.
    public static func filePath(of spec: String) -> String {
        spec.range(of: ":/", options: .backwards).map { String(spec[..<$0.lowerBound]) } ?? spec
    }

    /// The group of a `path:/group` spec ("/a/b", empty components dropped), or "" for the file's root.
    public static func group(of spec: String) -> String {
        let path = filePath(of: spec)
        guard path.utf8.count < spec.utf8.count else { return "" }
        // What follows the file's ":/", with empty components dropped.
        let rest = String(decoding: spec.utf8.dropFirst(path.utf8.count + 2), as: UTF8.self)
        let group = "/" + rest.split(separator: "/").joined(separator: "/")
        return group == "/" ? "" : group
    }

    /// Opens `path` or `path:/group`.
    public init(spec: String) throws(HDF5File.HDF5Error) {
        let path = Self.filePath(of: spec)
        let group = Self.group(of: spec)
        label = group.isEmpty ? path : "\(path):\(group)"
        file = try HDF5File.open(path)
        self.group = group
        if !group.isEmpty, !file.exists(group) {
            throw HDF5File.HDF5Error(path: path, reason: "no group \(displayed(group))")
        }
        let name = group + "/input_ids"
        guard file.exists(name) else { throw HDF5File.HDF5Error(path: label, reason: "no input_ids dataset (the one dataset a dump must have)") }
        let (ids, shape) = try file.readInt64s(name, maxElements: Self.maxTokens)
        guard shape.count == 2, shape[0] > 0, shape[1] > 0 else {
            throw HDF5File.HDF5Error(path: label, reason: "input_ids has shape \(shape), expected [batch, tokens] with both > 0")
        }
        if let bad = ids.firstIndex(where: { $0 < 0 || $0 > Int64(Int32.max) }) {
            throw HDF5File.HDF5Error(path: label, reason: "input_ids[\(bad / shape[1])][\(bad % shape[1])] = \(ids[bad]) is not a token id")
        }
        inputIDs = ids.map { Int32($0) }
        batch = ForwardPass.Batch(sequences: shape[0], tokens: shape[1])
        let object = group.isEmpty ? "/" : group
        dequant = file.stringAttribute("dequant", of: object)
        dtype = file.stringAttribute("dtype", of: object)
    }

    public func has(_ name: String) -> Bool { file.exists(group + "/" + name) }

    /// A float dataset of shape [B, T, width], or nil when the dump does not have it.
    /// The dataset's shape is checked against the model's (`width`) before anything is read or allocated: a
    /// compressed dataset of a huge shape in a small file costs nothing.
    public func activation(_ name: String, width: Int) throws(HDF5File.HDF5Error) -> [Float]? {
        guard has(name) else { return nil }
        let expected = [batch.sequences, batch.tokens, width]
        return try relabel { () throws(HDF5File.HDF5Error) in
            try file.readFloats(group + "/" + name, expected: expected, maxElements: Self.maxElements) { shape in
                "\(displayed(name)) has shape \(shape), expected \(expected) (input_ids is [\(self.batch.sequences), \(self.batch.tokens)])"
            }
        }
    }

    /// Largest vocabulary accepted in a dump's logits (100× the real K2.5's 163,840).
    public static let maxVocabulary = 1 << 24

    /// The vocabulary of `logits` [B, T, V] from its shape alone (nothing is read), or nil when the dump has none.
    /// The shape must be [B, T, V] with B, T those of `input_ids` and 1 ≤ V ≤ `maxVocabulary`.
    public func logitsVocabulary() throws(HDF5File.HDF5Error) -> Int? {
        guard has("logits") else { return nil }
        let shape = try relabel { () throws(HDF5File.HDF5Error) in try file.shape(group + "/logits") }
        guard shape.count == 3, shape[0] == batch.sequences, shape[1] == batch.tokens else {
            throw HDF5File.HDF5Error(path: label, reason: "logits has shape \(shape), expected [\(batch.sequences), \(batch.tokens), vocab] (input_ids is [\(batch.sequences), \(batch.tokens)])")
        }
        guard shape[2] >= 1 else { throw HDF5File.HDF5Error(path: label, reason: "logits has shape \(shape): a vocabulary of 0") }
        guard shape[2] <= Self.maxVocabulary else {
            throw HDF5File.HDF5Error(path: label, reason: "logits has a vocabulary of \(shape[2]), more than k2pack accepts (\(Self.maxVocabulary))")
        }
        return shape[2]
    }

    /// Runs `body`, naming the dump (`file.h5:/group`) rather than the bare file in its errors.
    func relabel<T>(_ body: () throws(HDF5File.HDF5Error) -> T) throws(HDF5File.HDF5Error) -> T {
        do { return try body() } catch { throw HDF5File.HDF5Error(path: error.path == file.path ? label : error.path, reason: error.reason) }
    }

    /// Rows `b·T + t` in `range` of `logits` [B, T, V], read a sequence piece at a time (never the whole dataset).
    public func logitRows(_ range: Range<Int>, vocab: Int) throws(HDF5File.HDF5Error) -> [Float] {
        var out: [Float] = []
        out.reserveCapacity(range.count * vocab)
        var r = range.lowerBound
        while r < range.upperBound {
            let b = r / batch.tokens, t = r % batch.tokens
            let n = min(range.upperBound - r, batch.tokens - t)
            out += try relabel { () throws(HDF5File.HDF5Error) in try file.readFloatBlock(group + "/logits", start: [b, t, 0], count: [1, n, vocab], maxElements: LogitStatistics.blockElements) }
            r += n
        }
        return out
    }

    /// The logits as a source for `LogitStatistics`, read in row blocks.
    public func logitSource(vocab: Int) -> LogitStatistics.Source {
        LogitStatistics.Source(label: "\(label) logits") { range in try self.logitRows(range, vocab: vocab) }
    }

    /// `logits` [B, T, V] read whole, the vocabulary read from the dataset's shape first, or nil when none.
    public func logits() throws(HDF5File.HDF5Error) -> (values: [Float], vocab: Int)? {
        guard let vocab = try logitsVocabulary() else { return nil }
        let values = try relabel { () throws(HDF5File.HDF5Error) in try file.readFloats(group + "/logits", expected: [batch.sequences, batch.tokens, vocab], maxElements: Self.maxElements) }
        return (values, vocab)
    }

    /// `layers/{i}/topk_indices` [B, T, k] as expert ids, checked against the expert count.
    public func topK(layer: Int, k: Int, experts: Int) throws(HDF5File.HDF5Error) -> [Int32]? {
        let name = "layers/\(layer)/topk_indices"
        guard has(name) else { return nil }
        let expected = [batch.sequences, batch.tokens, k]
        let values = try relabel { () throws(HDF5File.HDF5Error) in
            try file.readInt64s(group + "/" + name, expected: expected, maxElements: Self.maxElements) { shape in "\(displayed(name)) has shape \(shape), expected \(expected)" }
        }
        if let bad = values.firstIndex(where: { $0 < 0 || $0 >= Int64(experts) }) {
            throw HDF5File.HDF5Error(path: label, reason: "\(displayed(name)) holds expert \(values[bad]), outside 0..<\(experts)")
        }
        return values.map { Int32($0) }
    }

    /// The highest layer index with any dataset (to notice dumps of another model).
    public func layerCount(limit: Int) -> Int {
        var n = 0
        while n <= limit, has("layers/\(n)") { n += 1 }
        return n
    }
}
