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

    /// Opens `path` or `path:/group`.
    public init(spec: String) throws(HDF5File.HDF5Error) {
        var path = spec, group = ""
        if let split = spec.range(of: ":/", options: .backwards) {
            path = String(spec[..<split.lowerBound])
            group = "/" + spec[split.upperBound...].split(separator: "/").joined(separator: "/")
            if group == "/" { group = "" }
        }
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
    public func activation(_ name: String, width: Int) throws(HDF5File.HDF5Error) -> [Float]? {
        guard has(name) else { return nil }
        let (values, shape) = try file.readFloats(group + "/" + name, maxElements: Self.maxElements)
        let expected = [batch.sequences, batch.tokens, width]
        guard shape == expected else {
            throw HDF5File.HDF5Error(path: label, reason: "\(displayed(name)) has shape \(shape), expected \(expected) (input_ids is [\(batch.sequences), \(batch.tokens)])")
        }
        return values
    }

    /// `logits` [B, T, V], the vocabulary read from the dataset, or nil when the dump has none.
    public func logits() throws(HDF5File.HDF5Error) -> (values: [Float], vocab: Int)? {
        guard has("logits") else { return nil }
        let (values, shape) = try file.readFloats(group + "/logits", maxElements: Self.maxElements)
        guard shape.count == 3, shape[0] == batch.sequences, shape[1] == batch.tokens else {
            throw HDF5File.HDF5Error(path: label, reason: "logits has shape \(shape), expected [\(batch.sequences), \(batch.tokens), vocab]")
        }
        return (values, shape[2])
    }

    /// `layers/{i}/topk_indices` [B, T, k] as expert ids, checked against the expert count.
    public func topK(layer: Int, k: Int, experts: Int) throws(HDF5File.HDF5Error) -> [Int32]? {
        let name = "layers/\(layer)/topk_indices"
        guard has(name) else { return nil }
        let (values, shape) = try file.readInt64s(group + "/" + name, maxElements: Self.maxElements)
        let expected = [batch.sequences, batch.tokens, k]
        guard shape == expected else { throw HDF5File.HDF5Error(path: label, reason: "\(displayed(name)) has shape \(shape), expected \(expected)") }
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
