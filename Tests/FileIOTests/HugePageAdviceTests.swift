import FileIO
import TestSupport
import Testing

/// `ReadOnlyFile.adviseHugePages`: advice only, so the mapping's bytes are unchanged and calling it before the
/// file is mapped, or twice, is harmless.
@Suite("huge-page advice on a mapping")
struct HugePageAdviceTests {
    @Test("the mapping reads the same bytes after the advice, whenever and however often it is given")
    func adviceIsHarmless() throws {
        let dir = TemporaryDirectory()
        let content = (0..<(3 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 12) }
        let file = try ReadOnlyFile(path: dir.write("weights.bin", content))
        file.adviseHugePages()  // not mapped yet: nothing to advise
        let before = Array(try file.mapped())
        file.adviseHugePages()
        file.adviseHugePages()
        #expect(Array(try file.mapped()) == before)
        #expect(before == content)
        file.adviseDone(0..<(1 << 20))
        #expect(Array(try file.mapped()) == content)
        let empty = try ReadOnlyFile(path: dir.write("empty.bin", []))
        empty.adviseHugePages()
        #expect(try empty.mapped().isEmpty)
    }
}
