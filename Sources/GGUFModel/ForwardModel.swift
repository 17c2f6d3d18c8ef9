import Checkpoint
import Forward
import Foundation
import ModelStore

/// The one place a model path becomes the forward pass's weights, the source picked by what the path is: a GGUF
/// file (its first bytes are `GGUF`; one file or any part of a split set) is read by `GGUFWeightSource`; anything
/// else is a model folder (Hugging Face or k2pack) opened by `ModelStore`.
public enum ForwardModel {
    public enum Kind: String, Sendable { case huggingFace = "hf", k2pack, gguf }

    /// Whether `path` is a file that starts with GGUF's magic.
    public static func isGGUF(_ path: String) -> Bool {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue,
            let handle = FileHandle(forReadingAtPath: path)
        else { return false }
        defer { try? handle.close() }
        let head = (try? handle.read(upToCount: 4)) ?? Data()
        return Array(head) == Array("GGUF".utf8)
    }

    /// The weights of the model at `path` and what kind of model it is. `dequant` applies to INT4 weights of a
    /// folder (a GGUF's types dequantize one way only, ggml's).
    public static func open(_ path: String, dequant: Dequantization = .exact) throws -> (weights: any WeightSource, kind: Kind) {
        if isGGUF(path) { return (try GGUFWeightSource(path: path), .gguf) }
        let opened = try ModelStore.open(path)
        return (try opened.weights(dequant: dequant), opened.kind == .k2pack ? .k2pack : .huggingFace)
    }
}
