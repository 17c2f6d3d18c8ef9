import Forward
import ModelConfig
import PackFormat
import Testing

/// The typed cases that replaced `ShardError.input`/`.layout` and `ForwardError.input` strings say exactly what
/// those strings said.
@Suite struct TypedErrorTextTests {
    @Test func shardErrorText() {
        let cases: [(ShardError, String)] = [
            (.rankOutOfRange(rank: 4, ranks: 4, tp: 2, ep: 2), "cannot split the model: rank 4 is outside 0..<4 (tp 2 × ep 2)"),
            (.unusableCheckpoint(reason: "/m has 1 problem (run `k2pack verify`); first: x"), "/m has 1 problem (run `k2pack verify`); first: x"),
            (.namesClash(folder: "/in", reason: "carried file \"rank-0001/a\" takes the name \"rank-0001\", which the folder uses for its own records"),
             "/in: carried file \"rank-0001/a\" takes the name \"rank-0001\", which the folder uses for its own records"),
            (.outputNotEmpty(path: "/o"),
             "/o: already exists and is not empty; choose a new folder (an interrupted shard leaves rank folders without k2pack.json; remove the folder to start again)"),
            (.rankFolderExists(path: "/o/rank-0001"), "/o/rank-0001: already exists (written before, or being written by another process); remove it to write this rank again"),
            (.expertsNotRange(rankFolder: "/o/rank-0001", experts: [4, 2]), "/o/rank-0001/k2pack.json: experts [4, 2] is not a range [first, end)"),
            (.rankConfig(rankFolder: "/o/rank-0000", error: .missingConfig(path: "/o/rank-0000/config.json")),
             "/o/rank-0000: \(ConfigError.missingConfig(path: "/o/rank-0000/config.json"))"),
            (.blockMismatch(folder: "/o/rank-0000", tensor: "w", tpRank: 0, stored: "[0, 16) of dimension 0", rules: "[0, 16) of dimension 1"),
             "/o/rank-0000: 'w' is stored as [0, 16) of dimension 0; the rules give tp rank 0 [0, 16) of dimension 1"),
            (.strayBlock(folder: "/o/rank-0000", tensor: "w"), "/o/rank-0000: 'w' is stored as a block, but the rules give no tensor of that name a block"),
            (.archiveInSet(file: "rank-0000/globals.k2z"), "rank-0000/globals.k2z: a shard set holds uncompressed k2pack files only"),
            (.copiesDiffer(file: "rank-0001/layer-0000.k2p", tensor: "w", rank: 0, found: "00000000000000aa", expected: "00000000000000bb"),
             "rank-0001/layer-0000.k2p: 'w' differs from rank 0's copy (xxHash64 00000000000000aa vs 00000000000000bb)"),
            (.unlistedTensor(file: "rank-0000/globals.k2p", tensor: "model.norm.weight"), "rank-0000/globals.k2p: stores 'model.norm.weight', which no source header lists"),
            (.tiling(shard: "model.safetensors", tensor: "w", reason: "no rank stores it"), "model.safetensors: tensor 'w': no rank stores it"),
        ]
        for (error, text) in cases { #expect(error.description == text) }
    }

    @Test func forwardErrorText() {
        let cases: [(ForwardError, String)] = [
            (.unusableCheckpoint(reason: "/m has 1 problem (run `k2pack verify`); first: x"), "/m has 1 problem (run `k2pack verify`); first: x"),
            (.noReadableConfig(folder: "/m"), "/m: no readable config.json"),
            (.missingConfig(path: "/p/config.json"), "/p/config.json: missing (a k2pack folder carries the source config.json)"),
            (.rankOfSet(folder: "/s/rank-0000", rank: 0), "/s/rank-0000 is rank 0 of a shard set: run the forward pass from the whole set (parity --shards SET)"),
        ]
        for (error, text) in cases { #expect(error.description == text) }
    }
}
