import FuzzSupport
import Checkpoint

/// model.safetensors.index.json: weight_map, total_size, shard names.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ input: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data = input, size > 0 else { return 0 }
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    if let index = try? ShardIndex.parse(bytes) {
        _ = index.weightMap.values.allSatisfy(ShardIndex.isPlainFileName)
    }
    return 0
}

runFuzzer(fuzz)
