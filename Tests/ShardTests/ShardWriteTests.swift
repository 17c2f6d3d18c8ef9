import Forward
import Foundation
import Inspection
import ModelStore
import PackFormat
import Parity
import Repack
import Shard
import TestSupport
import Testing

/// Every fixture under every layout of up to 8 ranks in {1×N, N×1, 2×N}: the ones the manifest's rules allow,
/// and for the others the refusal.
let shardCases: [(fixture: String, tp: Int, ep: Int)] = ["k25-tiny", "k2-thinking-tiny", "deepseek-v3-tiny"].flatMap { f in
    [(1, 2), (1, 4), (1, 8), (2, 1), (4, 1), (2, 2), (2, 4)].map { (f, $0.0, $0.1) }
}

@Suite("shard writes rank folders that merge back byte for byte and run like the unsharded model")
struct ShardWriteTests {
    func write(_ fixture: String, tp: Int, ep: Int, into dir: TemporaryDirectory, ranks: [Int]? = nil, vision: Bool = true) throws -> String {
        let out = dir.path + "/shards"
        _ = try ShardWriter.write(
            input: TestPaths.fixture(fixture), output: out,
            options: ShardWriter.Options(layout: ShardLayout(tp: tp, ep: ep, visionOnEveryRank: vision), ranks: ranks))
        return out
    }

    func unsharded(_ fixture: String) throws -> ForwardPass {
        let opened = try ModelStore.open(TestPaths.fixture(fixture))
        return ForwardPass(weights: try opened.weights(), threads: 2)
    }

    @Test("merge(shard(x)) == x, verify passes, and the sharded pass matches the unsharded one (logits ≤ 1e-5)", arguments: shardCases)
    func roundTrip(_ fixture: String, _ tp: Int, _ ep: Int) throws {
        let dir = TemporaryDirectory()
        let out: String
        do {
            out = try write(fixture, tp: tp, ep: ep, into: dir)
        } catch let error as ShardError {
            // Only a split the rules forbid may be refused: heads (2 per layer) over 4, or one INT4 group over 2.
            guard case .indivisible(let tensor, _) = error else { throw error }
            #expect(tp == 4 || (tp == 2 && ep == 1 && fixture != "deepseek-v3-tiny"), "\(fixture) \(tp)×\(ep) refused at \(tensor)")
            return
        }
        _ = try ShardMerger.merge(input: out, output: dir.path + "/merged")
        let original = try folderContents(TestPaths.fixture(fixture)), merged = try folderContents(dir.path + "/merged")
        #expect(Set(merged.keys) == Set(original.keys), "\(fixture) \(tp)×\(ep): files \(Set(merged.keys).symmetricDifference(original.keys))")
        for (name, data) in original { #expect(merged[name] == data, "\(fixture) \(tp)×\(ep): \(name) differs") }

        let report = try ShardVerifier.verify(folder: out)
        #expect(report.passed, "\(report.findings.prefix(3))")

        let whole = try unsharded(fixture)
        let sharded = try ShardSet.open(folder: out, threads: 2)
        let agreement = try ModelAgreement.run(sharded, against: whole, ids: ModelAgreement.probeIDs(count: 12, vocab: whole.forward.vocabSize))
        #expect(agreement.pass, "\(fixture) \(tp)×\(ep): logits max-abs \(agreement.logits.maxAbs) at \(agreement.logits.worstAt)")
        #expect(agreement.logits.maxAbs <= 1e-5, "\(fixture) \(tp)×\(ep): logits max-abs \(agreement.logits.maxAbs) at \(agreement.logits.worstAt)")
        #expect(agreement.embedding.maxAbs == 0, "the vocabulary blocks' lookups add up to the whole lookup exactly")
        for layer in agreement.layers {
            #expect(layer.routingMismatches ?? 0 == 0, "layer \(layer.layer) routes differently")
        }
    }

    @Test("ranks written one at a time (in any order) are the same bytes as all at once")
    func rankByRank() throws {
        let dir = TemporaryDirectory()
        let all = try write("k25-tiny", tp: 2, ep: 2, into: dir)
        let one = TemporaryDirectory()
        var out = ""
        for r in [3, 1, 0, 2] { out = try write("k25-tiny", tp: 2, ep: 2, into: one, ranks: [r]) }
        #expect(try folderContents(out) == folderContents(all))
        // A rank folder already written is not overwritten.
        #expect(throws: ShardError.rankFolderExists(path: "\(out)/rank-0001")) {
            _ = try write("k25-tiny", tp: 2, ep: 2, into: one, ranks: [1])
        }
        #expect(throws: ShardError.rankOutOfRange(rank: 4, ranks: 4, tp: 2, ep: 2)) { _ = try write("k25-tiny", tp: 2, ep: 2, into: one, ranks: [4]) }
        #expect(throws: ShardError.outputNotEmpty(path: out)) {
            _ = try write("k25-tiny", tp: 2, ep: 2, into: one)
        }
    }

    @Test("the vision tower on rank 0 only: other ranks hold none of it, and merge is still identical")
    func visionOnRankZero() throws {
        let dir = TemporaryDirectory()
        let out = try write("k25-tiny", tp: 1, ep: 2, into: dir, vision: false)
        func names(_ rank: Int) throws -> [String] {
            let manifest = try PackManifest.read(folder: out + "/" + ShardSetManifest.rankFolder(rank))
            return try manifest.files.flatMap { f in
                try PackFile(path: out + "/" + ShardSetManifest.rankFolder(rank) + "/" + f).table.tensors.flatMap { $0.sources.map(\.name) }
            }
        }
        #expect(try names(0).contains { $0.hasPrefix("vision_tower.") })
        #expect(try !names(1).contains { $0.hasPrefix("vision_tower.") || $0.hasPrefix("mm_projector.") })
        #expect(try PackManifest.read(folder: out + "/rank-0001").shard?.vision == false)
        _ = try ShardMerger.merge(input: out, output: dir.path + "/merged")
        #expect(try folderContents(dir.path + "/merged") == folderContents(TestPaths.fixture("k25-tiny")))
    }

    @Test("the simulation is sensitive: leaving out one expert group's experts is caught")
    func droppedContribution() throws {
        let dir = TemporaryDirectory()
        let out = try write("k2-thinking-tiny", tp: 1, ep: 2, into: dir)
        let good = try ShardSet.open(folder: out, threads: 2)
        var ranks = good.ranks
        let w = try #require(ranks[1].weights as? ManifestWeightSource)
        var partition = try #require(w.partition)
        partition.experts = 4..<4
        ranks[1] = ForwardPass(
            weights: try ManifestWeightSource(config: w.config, expected: w.expected, store: w.store, partition: partition, blocks: w.blocks), threads: 2)
        let broken = try ShardedForward(ranks: ranks)
        let whole = try unsharded("k2-thinking-tiny")
        let agreement = try ModelAgreement.run(broken, against: whole, ids: ModelAgreement.probeIDs(count: 8, vocab: 256))
        #expect(!agreement.pass && agreement.logits.maxAbs > 1e-3, "max-abs \(agreement.logits.maxAbs)")
        #expect(agreement.layers[0].layerOut.maxAbs <= 1e-6, "layer 0 is dense: unaffected")
        #expect(agreement.layers[1].mlpOut.maxAbs > 1e-3, "layer 1's experts 4..<8 are missing")
    }

    /// Rewrites a pack file with `change` applied to each tensor's bytes (a valid file: table and checksums
    /// are recomputed), and optionally to the table entries.
    func rewrite(_ path: String, sources: (PackTensor) -> [PackSource] = { $0.sources }, _ change: (PackTensor, inout [UInt8]) -> Void) throws {
        let pack = try PackFile(path: path)
        let planned = pack.table.tensors.map { PlannedTensor(name: $0.name, dtype: $0.dtype, shape: $0.shape, sources: sources($0)) }
        var buffers: [[UInt8]] = []
        for t in pack.table.tensors {
            var bytes = try pack.contents(of: t)
            change(t, &bytes)
            buffers.append(bytes)
        }
        try FileManager.default.removeItem(atPath: path)
        // The writer reads each source's span in the source shard and gathers its runs: lay each stored slice out
        // as that span, runs `stride` apart.
        var spans: [[UInt8]] = []
        for (t, bytes) in zip(planned, buffers) {
            var at = 0
            for source in t.sources {
                let run = source.runLength, stride = source.slice?.stride ?? run
                var span = [UInt8](repeating: 0, count: source.span ?? 0)
                for r in 0..<(source.slice?.runs ?? 1) {
                    span.replaceSubrange((r * stride)..<(r * stride + run), with: bytes[(at + r * run)..<(at + (r + 1) * run)])
                }
                at += source.length
                spans.append(span)
            }
        }
        let raw = spans.map { span -> UnsafeMutableRawBufferPointer in
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(span.count, 1), alignment: 16)
            buffer.copyBytes(from: span)
            return buffer
        }
        defer { raw.forEach { $0.deallocate() } }
        var next = 0
        _ = try PackWriter.write(path: path, tensors: planned, read: { _ in
            defer { next += 1 }
            return UnsafeRawBufferPointer(rebasing: raw[next][0..<spans[next].count])
        })
    }

    @Test("a block on the wrong dimension is refused before the forward pass computes with it")
    func wrongBlock() throws {
        let dir = TemporaryDirectory()
        let out = try write("deepseek-v3-tiny", tp: 2, ep: 1, into: dir)
        try rewrite(out + "/rank-0000/layer-0000.k2p", sources: { t in
            t.sources.map { s in
                var s = s
                if s.name.hasSuffix("o_proj.weight") { s.slice?.dimension = 0 }
                return s
            }
        }) { _, _ in }
        #expect(throws: ShardError.blockMismatch(
            folder: "\(out)/rank-0000", tensor: "model.layers.0.self_attn.o_proj.weight", tpRank: 0, stored: "[0, 16) of dimension 0",
            rules: "[0, 16) of dimension 1")) {
            _ = try ShardSet.open(folder: out)
        }
    }

    @Test("an unfinished rank, a missing file, copies that disagree, a flipped bit: merge and verify refuse, naming them")
    func damagedSets() throws {
        let dir = TemporaryDirectory()
        let out = try write("k25-tiny", tp: 1, ep: 2, into: dir)
        let fm = FileManager.default

        // A rank whose manifest lists one file fewer: its tensors are stored nowhere.
        let manifestPath = out + "/rank-0001/k2pack.json"
        let original = try #require(fm.contents(atPath: manifestPath))
        var manifest = try PackManifest.read(folder: out + "/rank-0001")
        manifest.files.removeAll { $0 == "layer-0001.k2p" }
        try Data(manifest.encoded()).write(to: URL(fileURLWithPath: manifestPath))
        #expect(throws: ShardError.tiling(
            shard: "model-00002-of-000006.safetensors", tensor: "language_model.model.layers.1.mlp.experts.4.down_proj.weight_packed", reason: "no rank stores it")) {
            _ = try ShardMerger.merge(input: out, output: dir.path + "/m1")
        }
        #expect(!fm.fileExists(atPath: dir.path + "/m1/model-00002-of-000006.safetensors"))
        let verify = try ShardVerifier.verify(folder: out)
        #expect(!verify.passed && verify.findings.contains { $0.code == "shard_coverage" && $0.message.contains("no rank stores it") }, "\(verify.findings)")
        try original.write(to: URL(fileURLWithPath: manifestPath))

        // A replicated tensor whose copy on rank 1 holds other bytes (a valid file, checksums and all).
        let layer = out + "/rank-0001/layer-0000.k2p"
        let pristine = try #require(fm.contents(atPath: layer))
        try rewrite(layer) { t, bytes in if t.name.hasSuffix("input_layernorm.weight") { bytes[0] ^= 1 } }
        do {
            _ = try ShardMerger.merge(input: out, output: dir.path + "/m2")
            Issue.record("merge accepted disagreeing copies")
        } catch let error as ShardError {
            #expect(error.description.contains("rank-0001/layer-0000.k2p: 'language_model.model.layers.0.input_layernorm.weight' differs from rank 0's copy"), "\(error)")
        }

        // A flipped bit in a rank's data (its table intact): merge checks every stored tensor it copies.
        try pristine.write(to: URL(fileURLWithPath: layer))
        let expertFile = out + "/rank-0001/layer-0001.k2p"
        let stack = try #require(try PackFile(path: expertFile).table.tensors.first { $0.sources.count > 1 })
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: expertFile))
        try handle.seek(toOffset: UInt64(stack.offset + 5))
        let byte = try #require(try handle.read(upToCount: 1)).first! ^ 0x10
        try handle.seek(toOffset: UInt64(stack.offset + 5))
        try handle.write(contentsOf: Data([byte]))
        try handle.close()
        do {
            _ = try ShardMerger.merge(input: out, output: dir.path + "/m5")
            Issue.record("merge copied corrupt data")
        } catch let error as PackError {
            guard case .checksumMismatch(let file, let tensor, _, _) = error else { throw error }
            #expect(file == "rank-0001/layer-0001.k2p" && tensor == stack.name, "\(error)")
        }
        #expect(try !fm.contentsOfDirectory(atPath: dir.path + "/m5").contains { $0.hasSuffix(".safetensors") }, "a finished shard was left behind")

        // An unfinished rank.
        try fm.removeItem(atPath: out + "/rank-0001/k2pack.json")
        #expect(throws: ShardError.input("\(out)/rank-0001: rank 1 of 2 is missing or unfinished (no k2pack.json)")) {
            _ = try ShardMerger.merge(input: out, output: dir.path + "/m3")
        }
        #expect(throws: ShardError.input("\(out)/rank-0001: rank 1 of 2 is missing or unfinished (no k2pack.json)")) {
            _ = try ShardSet.open(folder: out)
        }
        try fm.removeItem(atPath: out + "/shards.json")
        #expect(throws: ShardError.input("\(out)/shards.json: missing: not a shard set, or rank 0 has not finished writing it")) {
            _ = try ShardMerger.merge(input: out, output: dir.path + "/m4")
        }
    }
}
