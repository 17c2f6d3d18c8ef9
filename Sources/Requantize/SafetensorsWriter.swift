import FileIO
import Foundation
import JSONCore
import PackFormat
import TensorCore

/// One tensor of a safetensors file being written: its header entry, and how to produce its bytes in order.
/// Each is produced by one writer thread (shards are written in parallel, each by one thread). Public for the
/// other writers of Hugging Face checkpoints (GGUFUnpack).
public struct OutputTensor: @unchecked Sendable {
    public var name: String
    public var dtype: DType
    public var shape: [Int]
    public var length: Int
    /// Calls `emit` with the tensor's bytes, in order, in pieces of any size.
    public var produce: (_ emit: (UnsafeRawBufferPointer) throws -> Void) throws -> Void

    public init(
        name: String, dtype: DType, shape: [Int], length: Int,
        produce: @escaping (_ emit: (UnsafeRawBufferPointer) throws -> Void) throws -> Void
    ) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.length = length
        self.produce = produce
    }
}

/// Writes safetensors files: 8-byte header length, JSON header (`__metadata__` first, then the tensors in data
/// order, padded with spaces to a multiple of 8), then the data. Atomic: temporary name, fsync, rename.
public enum SafetensorsWriter {
    public static func header(_ tensors: [OutputTensor]) -> [UInt8] {
        var object = JSONObject()
        var meta = JSONObject()
        meta.append("format", .string("pt"))
        object.append("__metadata__", .object(meta))
        var offset = 0
        for t in tensors {
            var entry = JSONObject()
            entry.append("dtype", .string(t.dtype.rawValue))
            entry.append("shape", .array(t.shape.map { .number(String($0)) }))
            entry.append("data_offsets", .array([.number(String(offset)), .number(String(offset + t.length))]))
            object.append(t.name, .object(entry))
            offset += t.length
        }
        var json = Array(JSONValue.object(object).serialized(indent: nil).utf8)
        while json.count % 8 != 0 { json.append(0x20) }
        return withUnsafeBytes(of: UInt64(json.count).littleEndian) { Array($0) } + json
    }

    /// Writes the file; returns its length. A producer that emits more or fewer bytes than declared is our bug.
    @discardableResult
    public static func write(path: String, tensors: [OutputTensor]) throws -> Int {
        let head = header(tensors)
        let file = try AtomicFile(path: path)
        let total = head.count + tensors.reduce(0) { $0 + $1.length }
        try file.setLength(total)
        try file.write(head, at: 0)
        var at = head.count
        for t in tensors {
            let start = at
            try t.produce { piece in
                try file.write(piece, at: at)
                at += piece.count
            }
            precondition(at - start == t.length, "\(t.name): produced \(at - start) bytes, declared \(t.length)")
        }
        try file.commit()
        return total
    }
}

/// `model.safetensors.index.json` for written shards.
public enum IndexWriter {
    public static func bytes(shards: [(name: String, tensors: [OutputTensor])]) -> [UInt8] {
        var map: [(String, String)] = []
        for (name, tensors) in shards { for t in tensors { map.append((t.name, name)) } }
        map.sort { $0.0 < $1.0 }
        var weightMap = JSONObject()
        for (tensor, shard) in map { weightMap.append(tensor, .string(shard)) }
        var metadata = JSONObject()
        metadata.append("total_size", .number(String(shards.reduce(0) { $0 + $1.tensors.reduce(0) { $0 + $1.length } })))
        var object = JSONObject()
        object.append("metadata", .object(metadata))
        object.append("weight_map", .object(weightMap))
        return Array((JSONValue.object(object).serialized() + "\n").utf8)
    }
}

/// Mapped input bytes handed to row workers, which only read them.
struct SharedBytes: @unchecked Sendable {
    let bytes: UnsafeRawBufferPointer
    init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }
}
