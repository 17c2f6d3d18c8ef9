import FileIO
import TestSupport
import Testing

/// The one chunked copy: bytes handed on in order, in bounded pieces, each released after use.
@Suite("chunked copy with page release")
struct ChunkedCopyTests {
    @Test("a buffer is handed on in order in pieces of at most the piece size, each released after it was used")
    func pieces() {
        let bytes = (0..<1000).map { UInt8($0 % 251) }
        var seen: [UInt8] = []
        var events: [String] = []
        bytes.withUnsafeBytes { raw in
            ChunkedCopy.pieces(
                of: raw, pieceBytes: 300, prefetch: { events.append("prefetch \($0)") }, release: { events.append("release \($0)") }
            ) { piece in
                events.append("use \(piece.count)")
                seen += piece
            }
        }
        #expect(seen == bytes)
        #expect(events == [
            "prefetch 0..<300", "use 300", "release 0..<300", "prefetch 300..<600", "use 300", "release 300..<600",
            "prefetch 600..<900", "use 300", "release 600..<900", "prefetch 900..<1000", "use 100", "release 900..<1000",
        ])
        var calls = 0
        [UInt8]().withUnsafeBytes { raw in ChunkedCopy.pieces(of: raw, release: { _ in calls += 1 }) { _ in calls += 1 } }
        #expect(calls == 0)
    }

    @Test("a range of a file's mapping is copied exactly, in pieces; a range past the end is refused by name")
    func fileRange() throws {
        let dir = TemporaryDirectory()
        let content = (0..<5000).map { UInt8($0 % 253) }
        let path = dir.write("data.bin", content)
        let file = try ReadOnlyFile(path: path)
        var copied: [UInt8] = []
        var sizes: [Int] = []
        try file.copyPieces(of: 100..<4100, pieceBytes: 1024) { piece in
            copied += piece
            sizes.append(piece.count)
        }
        #expect(copied == Array(content[100..<4100]))
        #expect(sizes == [1024, 1024, 1024, 928])
        #expect(throws: FileIOError.io(path: path, operation: "read", reason: "bytes 4000..<5001 lie outside the file's 5000")) {
            try file.copyPieces(of: 4000..<5001) { _ in Issue.record("nothing may be handed on") }
        }
        #expect(FileIOError.io(path: path, operation: "read", reason: "bytes 4000..<5001 lie outside the file's 5000").description
            == "\(path): cannot read: bytes 4000..<5001 lie outside the file's 5000")
    }
}
