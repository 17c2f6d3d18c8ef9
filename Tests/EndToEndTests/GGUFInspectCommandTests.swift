import Foundation
import Testing
import TestSupport

@Suite("k2pack inspect FILE.gguf")
struct GGUFInspectCommandTests {
    @Test("text and JSON reports of a split set from its second part; a hostile file is refused by name")
    func inspect() throws {
        let part = TestPaths.fixture("gguf/split-00002-of-00003.gguf")
        let text = try run(["inspect", part])
        #expect(text.status == 0, "\(text.err)")
        #expect(text.out.contains("(3 parts)") && text.out.contains("tensors: 5, 40 weights"), "\(text.out)")
        let json = try run(["inspect", part, "--json"])
        #expect(json.status == 0, "\(json.err)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.out.utf8)) as? [String: Any])
        #expect(object["tensor_count"] as? Int == 5)
        let dir = TemporaryDirectory()
        let bad = dir.write("bad.gguf", Array("GGUF".utf8) + [9, 0, 0, 0])
        let refused = try run(["inspect", bad])
        #expect(refused.status != 0)
        #expect(refused.err.contains("bad.gguf: GGUF version 9 is not supported"), "\(refused.err)")
    }
}
