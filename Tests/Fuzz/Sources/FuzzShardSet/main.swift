import Forward
import Foundation
import FuzzSupport
import Shard

/// A shard set with one of its files replaced by the input (the first byte picks which): the set record, a
/// rank's manifest, a rank's pack files, or a kept source header. Then everything that reads a set: verify
/// (every rank, copies, tiling), the forward pass from the ranks (blocks checked against the rules), and merge.
/// The base set is deepseek-v3-tiny at tp 2 × ep 2, written once per process.
let base: String = {
    let dir = (FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()) + "/k2pack-fuzz-set-\(getpid())"
    try? FileManager.default.removeItem(atPath: dir)
    let fixture = ProcessInfo.processInfo.environment["K2PACK_FIXTURES"] ?? "../../Fixtures"
    do {
        _ = try ShardWriter.write(
            input: fixture + "/deepseek-v3-tiny", output: dir, options: ShardWriter.Options(layout: ShardLayout(tp: 2, ep: 2)))
    } catch {
        fatalError("cannot write the base shard set from \(fixture)/deepseek-v3-tiny: \(error)")
    }
    return dir
}()

let replaceable = [
    "shards.json", "rank-0001/k2pack.json", "rank-0001/layer-0001.k2p", "rank-0000/layer-0000.k2p", "rank-0002/globals.k2p",
    "source/model.safetensors.header",
]

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ input: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data = input, size > 1 else { return 0 }
    let target = base + "/" + replaceable[Int(data[0]) % replaceable.count]
    guard let original = FileManager.default.contents(atPath: target) else { return 0 }
    defer { try? original.write(to: URL(fileURLWithPath: target)) }
    guard (try? Data(bytes: data + 1, count: size - 1).write(to: URL(fileURLWithPath: target))) != nil else { return 0 }
    _ = try? ShardVerifier.verify(folder: base, threads: 1)
    if let sharded = try? ShardSet.open(folder: base, threads: 1) {
        _ = try? sharded.logits(for: [1, 200, 3], batch: ForwardPass.Batch(sequences: 1, tokens: 3))
    }
    let merged = base + "-merged"
    _ = try? ShardMerger.merge(input: base, output: merged, threads: 1)
    try? FileManager.default.removeItem(atPath: merged)
    return 0
}

runFuzzer(fuzz)
