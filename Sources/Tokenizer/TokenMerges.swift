/// What a GGUF vocabulary needs from the ranks (GGUFConvert's `GGUFVocabulary`): each token's bytes, and the pair
/// of tokens each token is merged from.
extension TokenTable {
    /// The bytes of rank `rank` (0 ..< count).
    public func tokenBytes(_ rank: Int) -> ArraySlice<UInt8> {
        precondition(rank >= 0 && rank < count, "rank \(rank) outside 0..<\(count)")
        return bytes(of: rank)
    }

    /// The ranks of the parts that byte-pair encoding leaves of rank `rank`'s bytes when only ranks below `rank`
    /// may merge: lowest rank first, the leftmost on ties, as tiktoken's BPE and llama.cpp's merge rebuild
    /// (`QwenModel.bpe(mergeable_ranks, token, max_rank=rank)`) do. Two parts are the merge that makes the token;
    /// a single byte gives itself; more than two parts mean the token is not reachable by one merge.
    public func mergeParts(of rank: Int) -> [Int] {
        precondition(rank >= 0 && rank < count, "rank \(rank) outside 0..<\(count)")
        var out: [Int] = []
        storage.withUnsafeBufferPointer { buf in
            let a = offsets[rank], b = offsets[rank + 1]
            BytePairEncoder.encode(UnsafeBufferPointer(rebasing: buf[a..<b]), self, limit: b - a == 1 ? .max : rank, into: &out)
        }
        return out
    }
}

extension TokenTable {
    /// The rank of `bytes`, or nil when they are not a token.
    public func rank(of bytes: [UInt8]) -> Int? {
        guard !bytes.isEmpty else { return nil }
        return bytes.withUnsafeBufferPointer { rank($0.baseAddress!, $0.count) }
    }
}
