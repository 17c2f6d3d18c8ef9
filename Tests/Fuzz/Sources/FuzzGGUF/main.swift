import FuzzSupport
import GGUF

/// Input starting with "GGUF": a whole GGUF file (header, metadata, tensor infos, offsets), opened (and as a
/// model, which follows its split keys); then every dequantizable tensor of up to 2^20 elements is dequantized.
/// Otherwise: the first byte picks a dequantizable type and the rest is taken as that type's blocks (every byte
/// pattern must dequantize).
let dequantizable = GGMLType.allCases.filter(\.canDequantize)

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ input: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data = input, size > 0 else { return 0 }
    var sum: Float = 0
    if size >= 4, data[0] == 0x47, data[1] == 0x47, data[2] == 0x55, data[3] == 0x46 {
        let path = ScratchFile.write(data, size)
        guard let file = try? GGUFFile(path: path) else { return 0 }
        _ = try? GGUFModel(path: path)  // the split keys (a lone part names its missing siblings)
        for info in file.tensors {
            guard info.type.canDequantize, info.elementCount <= 1 << 20, let values = try? GGUFDequantizer.dequantize(info, of: file)
            else { continue }
            precondition(values.count == info.elementCount, "\(info.name): \(values.count) values for \(info.elementCount) elements")
            sum += values.first ?? 0
        }
    } else {
        let type = dequantizable[Int(data[0]) % dequantizable.count]
        let blocks = (size - 1) / type.typeSize
        let raw = UnsafeRawBufferPointer(start: data + 1, count: blocks * type.typeSize)
        var out = [Float](repeating: 0, count: blocks * type.blockSize)
        out.withUnsafeMutableBufferPointer { GGUFDequantizer.dequantize(type, blocks: raw, into: $0, threads: 2) }
        sum += out.first ?? 0
    }
    return CInt(sum.isNaN ? 0 : 0)
}

runFuzzer(fuzz)
