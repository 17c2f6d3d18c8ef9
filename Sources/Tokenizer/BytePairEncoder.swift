/// tiktoken's byte-level BPE over one piece: start from single bytes and repeatedly merge the adjacent pair whose
/// concatenation has the lowest rank (ties: the leftmost), until no adjacent pair is a token. With `limit`, only
/// ranks below it count as tokens for merging (the merge-list rebuild, `TokenTable.mergeParts(of:)`); the parts
/// themselves are always tokens, single bytes included.
enum BytePairEncoder {
    /// Pieces up to this many bytes use the quadratic scan tiktoken itself uses; longer ones a heap that
    /// makes the same choices (lowest rank, then leftmost) in n log n.
    static let scanLimit = 48

    static func encode(_ piece: UnsafeBufferPointer<UInt8>, _ table: TokenTable, limit: Int = .max, into out: inout [Int]) {
        let n = piece.count
        guard n > 0 else { return }
        let base = piece.baseAddress!
        if let r = table.rank(base, n), r < limit {
            out.append(r)
            return
        }
        if n <= scanLimit {
            scan(base, n, table, limit: limit, into: &out)
        } else {
            heap(base, n, table, limit: limit, into: &out)
        }
    }

    /// The rank of `count` bytes at `p` when it is below `limit`.
    @inline(__always) static func rank(_ table: TokenTable, _ p: UnsafePointer<UInt8>, _ count: Int, below limit: Int) -> Int? {
        guard let r = table.rank(p, count), r < limit else { return nil }
        return r
    }

    /// The tiktoken algorithm as written: part starts with the rank of the pair that begins there.
    static func scan(_ p: UnsafePointer<UInt8>, _ n: Int, _ table: TokenTable, limit: Int = .max, into out: inout [Int]) {
        var starts = [Int](0...n)
        var ranks = [Int](repeating: .max, count: n + 1)
        for i in 0..<(n - 1) { ranks[i] = rank(table, p + i, 2, below: limit) ?? .max }
        func pairRank(_ i: Int) -> Int {
            i + 2 < starts.count ? (rank(table, p + starts[i], starts[i + 2] - starts[i], below: limit) ?? .max) : .max
        }
        while true {
            var best = Int.max, at = -1
            for i in 0..<(starts.count - 1) where ranks[i] < best {
                best = ranks[i]
                at = i
            }
            if at < 0 { break }
            starts.remove(at: at + 1)
            ranks.remove(at: at + 1)
            ranks[at] = pairRank(at)
            if at > 0 { ranks[at - 1] = pairRank(at - 1) }
        }
        for i in 0..<(starts.count - 1) {
            out.append(table.rank(p + starts[i], starts[i + 1] - starts[i])!)
        }
    }

    /// Same merges with a binary heap of (rank, start) over a linked list of parts; stale entries are skipped.
    static func heap(_ p: UnsafePointer<UInt8>, _ n: Int, _ table: TokenTable, limit: Int = .max, into out: inout [Int]) {
        // Parts are identified by their start offset; next[i] is the start of the part after i (n: none).
        var next = [Int](1...n)
        var prev = [Int](-1..<(n - 1))
        var alive = [Bool](repeating: true, count: n)
        var heap = Heap()
        for i in 0..<(n - 1) {
            if let r = rank(table, p + i, 2, below: limit) { heap.push(r, i, i + 2) }
        }
        while let (_, start, end) = heap.pop() {
            guard alive[start] else { continue }
            let mid = next[start]
            guard mid < n, next[mid] == end else { continue }
            alive[mid] = false
            next[start] = end
            if end < n { prev[end] = start }
            if end < n, let r = rank(table, p + start, next[end] - start, below: limit) { heap.push(r, start, next[end]) }
            let before = prev[start]
            if before >= 0, let r = rank(table, p + before, end - before, below: limit) { heap.push(r, before, end) }
        }
        var i = 0
        while i < n {
            out.append(table.rank(p + i, next[i] - i)!)
            i = next[i]
        }
    }

    /// A min-heap of (rank, start, end), ordered by rank then start.
    struct Heap {
        var items: [(rank: Int, start: Int, end: Int)] = []

        @inline(__always) static func less(_ a: (rank: Int, start: Int, end: Int), _ b: (rank: Int, start: Int, end: Int)) -> Bool {
            a.rank != b.rank ? a.rank < b.rank : a.start < b.start
        }

        mutating func push(_ rank: Int, _ start: Int, _ end: Int) {
            items.append((rank, start, end))
            var i = items.count - 1
            while i > 0 {
                let parent = (i - 1) / 2
                guard Self.less(items[i], items[parent]) else { break }
                items.swapAt(i, parent)
                i = parent
            }
        }

        mutating func pop() -> (Int, Int, Int)? {
            guard let top = items.first else { return nil }
            let last = items.removeLast()
            if !items.isEmpty {
                items[0] = last
                var i = 0
                while true {
                    let l = 2 * i + 1, r = l + 1
                    var m = i
                    if l < items.count && Self.less(items[l], items[m]) { m = l }
                    if r < items.count && Self.less(items[r], items[m]) { m = r }
                    if m == i { break }
                    items.swapAt(i, m)
                    i = m
                }
            }
            return (top.rank, top.start, top.end)
        }
    }
}
