import FuzzSupport
import Parity

/// The reference reader's shape and dtype handling: the input chooses the datasets of a dump (names, ranks,
/// shapes, integer or float, values, and layouts a dump must not use: soft and external links, external raw
/// storage, virtual datasets), which is written with libhdf5 and read back through ReferenceDump; logits are
/// then read in row blocks into the logit statistics.
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
            switch next() % 8 {
            case 0, 1, 2:
                try? file.write(name, int32s: (0..<count).map { _ in Int32(truncatingIfNeeded: next() - 16) }, shape: shape)
            case 3: try? file.linkSoft(name, to: "/" + names[next() % names.count])
            case 4: try? file.linkExternal(name, file: path + ".other", object: "/logits")
            case 5: try? file.create(name, shape: shape, layout: .externalStorage(file: path + ".external"))
            case 6: try? file.create(name, shape: shape, layout: .virtual(file: path + ".other", dataset: "/logits"))
            default:
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
    if let vocab = try? dump.logitsVocabulary() {
        let source = dump.logitSource(vocab: vocab)
        _ = try? LogitStatistics(
            ids: dump.inputIDs, sequences: dump.batch.sequences, tokens: dump.batch.tokens, vocab: vocab,
            reference: source, test: source, blockElements: 2 * vocab)
    }
    return 0
}

runFuzzer(fuzz)
