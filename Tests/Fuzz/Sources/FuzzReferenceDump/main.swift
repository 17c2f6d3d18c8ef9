import FuzzSupport
import Parity

/// The reference reader's shape and dtype handling: the input chooses the datasets of a dump (names, ranks,
/// shapes, integer or float, values), which is written with libhdf5 and read back through ReferenceDump.
let path = ScratchFile.file(".h5")

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ input: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data = input, size > 0 else { return 0 }
    var input = Array(UnsafeBufferPointer(start: data, count: size))[...]
    func next() -> Int { input.isEmpty ? 0 : Int(input.removeFirst()) }
    do {
        let file = try HDF5File.create(path)
        let names = ["input_ids", "logits", "final_norm_out", "layers/0/layer_in", "layers/0/attn_out", "layers/1/topk_indices", "layers/1/mlp_out"]
        while !input.isEmpty {
            let name = names[next() % names.count]
            let rank = next() % 4
            let shape = (0..<rank).map { _ in next() % 5 }
            let count = shape.reduce(1, *)
            if next() % 2 == 0 {
                try? file.write(name, int32s: (0..<count).map { _ in Int32(truncatingIfNeeded: next() - 16) }, shape: shape)
            } else {
                try? file.write(name, floats: (0..<count).map { _ in Float(next()) - 100 }, shape: shape)
            }
        }
    } catch {
        return 0
    }
    guard let dump = try? ReferenceDump(spec: path) else { return 0 }
    for width in [1, 2, 4] {
        _ = try? dump.activation("logits", width: width)
        _ = try? dump.activation("layers/0/layer_in", width: width)
        _ = try? dump.topK(layer: 1, k: width, experts: 4)
    }
    _ = dump.layerCount(limit: 8)
    return 0
}

runFuzzer(fuzz)
