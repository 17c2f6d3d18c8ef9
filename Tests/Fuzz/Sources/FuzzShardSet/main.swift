import Forward
import Foundation
import FuzzSupport
import Inspection
import PackFormat
import Repack
import Shard

/// A shard set with one of its files replaced by the input (the first byte picks which): the set record
/// (version 2, with carried files), a rank's manifest, a rank's pack files, a kept source header, a carried file
/// (the set's copy or a rank's). Then everything that reads a set: verify (every rank, copies, tiling, carried
/// files), the forward pass from the ranks (blocks checked against the rules), and merge (carried files checked
/// while copied). The base set is deepseek-v3-tiny, with two of k25-tiny's carried files added, at tp 2 × ep 2,
/// written once per process.
/// The carried files of the base set (taken from k25-tiny).
let carried = ["tokenizer_config.json", "docs/deploy_guidance.md"]

let base: String = {
    let dir = ScratchFile.folder("set")
    let source = ScratchFile.folder("set-source")
    let fixtures = ProcessInfo.processInfo.environment["K2PACK_FIXTURES"] ?? "../../Fixtures"
    do {
        let files = FileManager.default
        try files.createDirectory(atPath: source + "/docs", withIntermediateDirectories: true)
        for name in ["config.json", "model.safetensors"] {
            try files.copyItem(atPath: fixtures + "/deepseek-v3-tiny/" + name, toPath: source + "/" + name)
        }
        for name in carried { try files.copyItem(atPath: fixtures + "/k25-tiny/" + name, toPath: source + "/" + name) }
        _ = try ShardWriter.write(input: source, output: dir, options: ShardWriter.Options(layout: ShardLayout(tp: 2, ep: 2)))
    } catch {
        fatalError("cannot write the base shard set from \(fixtures)/deepseek-v3-tiny and k25-tiny: \(error)")
    }
    return dir
}()
let merged = ScratchFile.folder("set-merged")

let replaceable = [
    "shards.json", "rank-0001/k2pack.json", "rank-0001/layer-0001.k2p", "rank-0000/layer-0000.k2p", "rank-0002/globals.k2p",
    "source/model.safetensors.header", "tokenizer_config.json", "rank-0003/docs/deploy_guidance.md",
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
    _ = try? ShardMerger.merge(input: base, output: merged, threads: 1)
    try? FileManager.default.removeItem(atPath: merged)
    return 0
}

runFuzzer(fuzz)
