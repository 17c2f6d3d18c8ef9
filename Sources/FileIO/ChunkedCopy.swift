import TensorCore

/// The one way bytes are copied out of a mapped input: in order, in pieces of bounded size, each piece's pages
/// dropped from this process once it has been handed on, so a copy of any size keeps a bounded resident set
/// (the page cache keeps the pages). Convert, export, merge, quantize (tensors it keeps) and the carried files
/// all copy through it.
public enum ChunkedCopy {
    /// The largest piece handed on at once: 64 MiB (as large as a k2pack archive frame, `PackSpec.maxFrameSize`).
    public static let pieceBytes = IOSizes.copyPiece

    /// Hands `body` `bytes` in order, in pieces of at most `pieceBytes`; after each, `release` gets the piece's
    /// range within `bytes` (to drop its pages). `prefetch`, when given, gets each piece's range before `body`.
    public static func pieces(
        of bytes: UnsafeRawBufferPointer, pieceBytes: Int = pieceBytes, prefetch: ((Range<Int>) -> Void)? = nil,
        release: (Range<Int>) -> Void, _ body: (UnsafeRawBufferPointer) throws -> Void
    ) rethrows {
        precondition(pieceBytes > 0, "a piece holds at least one byte")
        var at = 0
        while at < bytes.count {
            let piece = at..<min(bytes.count, at + min(pieceBytes, bytes.count - at))
            prefetch?(piece)
            try body(UnsafeRawBufferPointer(rebasing: bytes[piece]))
            release(piece)
            at = piece.upperBound
        }
    }
}

extension ReadOnlyFile {
    /// Hands `body` the bytes of `range` of this file's mapping in order, in pieces of at most `pieceBytes`, each
    /// read ahead before it is used and dropped from this process after (`ChunkedCopy`). The file stays alive
    /// (and so mapped) until it returns.
    public func copyPieces(
        of range: Range<Int>, pieceBytes: Int = ChunkedCopy.pieceBytes, _ body: (UnsafeRawBufferPointer) throws -> Void
    ) throws {
        let whole = try mapped()
        guard range.lowerBound >= 0, range.upperBound <= whole.count else {
            throw FileIOError.io(path: path, operation: "read", reason: "bytes \(range.lowerBound)..<\(range.upperBound) lie outside the file's \(whole.count)")
        }
        let start = range.lowerBound
        try withExtendedLifetime(self) {
            try ChunkedCopy.pieces(
                of: UnsafeRawBufferPointer(rebasing: whole[range]), pieceBytes: pieceBytes,
                prefetch: { self.adviseSequential((start + $0.lowerBound)..<(start + $0.upperBound)) },
                release: { self.adviseDone((start + $0.lowerBound)..<(start + $0.upperBound)) }, body)
        }
    }
}
