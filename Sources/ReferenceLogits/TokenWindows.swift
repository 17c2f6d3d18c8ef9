import Parity
import TensorCore

/// Why `k2pack logits` cannot make a reference from its input.
public enum LogitsError: Error, Equatable, Sendable, CustomStringConvertible {
    /// `--ctx 0`.
    case contextZero
    /// `--ctx` larger than the tokens there are: not one window.
    case contextTooLarge(context: Int, tokens: Int, source: String)
    /// `--ctx 1 --bos`: the window would hold the BOS token alone.
    case bosLeavesNoText
    /// `--ctx` given with `--ids` and not the dump's window length.
    case contextMismatch(context: Int, dump: String, tokens: Int)
    /// A token id the model has no embedding for, at [window, token] of the windows.
    case idOutsideVocabulary(source: String, window: Int, token: Int, id: Int, vocabulary: Int)
    /// The run would hold more than `--memory` bytes.
    case memory(needed: Int?, budget: Int, windows: Int, tokens: Int)
    /// `--top-k` outside its range.
    case topK(Int, minimum: Int)
    /// `--rank R --world N` that is not a place among N processes, or a share with no window.
    case rank(rank: Int, world: Int)
    case emptyShare(rank: Int, world: Int, windows: Int)
    /// `--resume` found a record beside the output that cannot be read or is not a record of this format.
    case resumeRecord(record: String, reason: String)
    /// `--resume` found a record of another run: `key` of its identity differs.
    case resumeMismatch(record: String, key: String, found: String, expected: String)
    /// `--resume` found the record's state file missing, truncated or changed.
    case resumeState(file: String, reason: String)

    public var description: String {
        switch self {
        case .contextZero: "--ctx 0: a window needs at least one token"
        case let .contextTooLarge(context, tokens, source):
            "--ctx \(context) is larger than the \(tokens) tokens of \(displayed(source)): not one whole window (give a smaller --ctx or a longer text)"
        case .bosLeavesNoText: "--ctx 1 with --bos leaves no room for a text token after the BOS token: give --ctx 2 or more"
        case let .contextMismatch(context, dump, tokens):
            "--ctx \(context) with --ids \(displayed(dump)), whose windows are \(tokens) tokens: leave --ctx out or give \(tokens)"
        case let .idOutsideVocabulary(source, window, token, id, vocabulary):
            "\(displayed(source)): token id \(id) at window \(window), token \(token) is outside the model's vocabulary of \(vocabulary)"
        case let .memory(needed, budget, windows, tokens):
            "\(windows) windows of \(tokens) tokens need about \(needed.map(formatBytes) ?? "more than \(Int.max) bytes") for one batch's activations and the logits "
                + "(the hidden states waiting in a temporary file beside the output), "
                + "over the --memory budget of \(formatBytes(budget)): use fewer or shorter windows, the compact form (no --full), or a larger --memory"
        case let .topK(k, minimum): "--top-k \(k): expected at least \(minimum) (compare's top-5 overlap needs five)"
        case let .rank(rank, world): "--rank \(rank) --world \(world): expected 0 ≤ rank < world"
        case let .emptyShare(rank, world, windows): "rank \(rank) of \(world) has no window of the \(windows) (every \(world)-th window from window \(rank))"
        case let .resumeRecord(record, reason):
            "--resume: \(displayed(record)) is not a usable record: \(reason); \(Self.startAfresh(record))"
        case let .resumeMismatch(record, key, found, expected):
            "--resume: \(displayed(record)) is the record of another run: its \(key) is \(displayed(found)), this run's is \(displayed(expected)); \(Self.startAfresh(record))"
        case let .resumeState(file, reason):
            "--resume: the saved hidden states \(displayed(file)) are \(reason); \(Self.startAfresh(file))"
        }
    }
}

/// Token ids cut into consecutive windows of `tokens` ids each, window-major: what `logits` runs.
public struct TokenWindows: Sendable, Equatable {
    public var ids: [Int32]
    public var windows: Int
    public var tokens: Int
    /// The window numbers in the whole input (all of them, or a rank's share).
    public var indices: [Int]
    /// For messages: the text file or the dump.
    public var source: String
    /// Text tokens left over after the last whole window (dropped).
    public var droppedTokens: Int

    /// Consecutive windows of `context` ids from `ids`; with `bos`, each window is that id followed by the next
    /// `context − 1` ids of the text. A tail that does not fill a window is dropped.
    public static func cut(_ ids: [Int], context: Int, bos: Int?, source: String) throws(LogitsError) -> TokenWindows {
        guard context > 0 else { throw .contextZero }
        if bos != nil, context == 1 { throw .bosLeavesNoText }
        let step = bos == nil ? context : context - 1
        guard ids.count >= step else { throw .contextTooLarge(context: context, tokens: ids.count + (bos == nil ? 0 : 1), source: source) }
        let windows = ids.count / step
        var out: [Int32] = []
        out.reserveCapacity(windows * context)
        for w in 0..<windows {
            if let bos { out.append(Int32(clamping: bos)) }
            for id in ids[(w * step)..<((w + 1) * step)] { out.append(Int32(clamping: id)) }
        }
        return TokenWindows(ids: out, windows: windows, tokens: context, indices: Array(0..<windows), source: source, droppedTokens: ids.count - windows * step)
    }

    /// A dump's `input_ids` as they are (`context`, when given, must be the dump's window length).
    public static func of(_ dump: ReferenceDump, context: Int?) throws(LogitsError) -> TokenWindows {
        if let context {
            guard context > 0 else { throw .contextZero }
            guard context == dump.batch.tokens else { throw .contextMismatch(context: context, dump: dump.label, tokens: dump.batch.tokens) }
        }
        return TokenWindows(
            ids: dump.inputIDs, windows: dump.batch.sequences, tokens: dump.batch.tokens, indices: Array(0..<dump.batch.sequences),
            source: dump.label, droppedTokens: 0)
    }

    /// Refuses the first id outside `0 ..< vocabulary`, naming its window and place.
    public func check(vocabulary: Int) throws(LogitsError) {
        if let bad = ids.firstIndex(where: { $0 < 0 || Int($0) >= vocabulary }) {
            throw .idOutsideVocabulary(source: source, window: indices[bad / tokens], token: bad % tokens, id: Int(ids[bad]), vocabulary: vocabulary)
        }
    }

    /// Rank `rank` of `world`'s share: windows rank, rank + world, rank + 2·world, …
    public func share(rank: Int, world: Int) throws(LogitsError) -> TokenWindows {
        guard world >= 1, rank >= 0, rank < world else { throw .rank(rank: rank, world: world) }
        let mine = Array(stride(from: rank, to: windows, by: world))
        guard !mine.isEmpty else { throw .emptyShare(rank: rank, world: world, windows: windows) }
        var out: [Int32] = []
        out.reserveCapacity(mine.count * tokens)
        for w in mine { out += ids[(w * tokens)..<((w + 1) * tokens)] }
        return TokenWindows(ids: out, windows: mine.count, tokens: tokens, indices: mine.map { indices[$0] }, source: source, droppedTokens: droppedTokens)
    }
}
