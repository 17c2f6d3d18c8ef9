import FuzzSupport
import Checkpoint
import JSONCore

/// model.safetensors.index.json: weight_map, total_size, shard names.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ input: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data = input, size > 0 else { return 0 }
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    if let index = try? ShardIndex.parse(bytes) {
        _ = index.weightMap.values.allSatisfy(ShardIndex.isPlainFileName)
        // The name table answers as the map built from it: every name under its shard, nothing else.
        guard index.entryCount == index.weightMap.count else { fatalError("entryCount disagrees with weightMap") }
        for (name, shard) in index.weightMap {
            guard let p = index.shardPosition(of: name.string), p >= 0, ByteName(index.shardNames[p]) == ByteName(shard) else {
                fatalError("shardPosition disagrees with weightMap for \(name)")
            }
            guard index.shardPosition(of: name.string + "\u{0}") == nil || index.weightMap[ByteName(name.string + "\u{0}")] != nil else {
                fatalError("shardPosition finds a name the index does not list")
            }
        }
    }
    return 0
}

runFuzzer(fuzz)
