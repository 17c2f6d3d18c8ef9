import Foundation
import TestSupport
import Testing

@Suite("parity and compare on the command line")
struct ParityCommandTests {
    let ref = TestPaths.fixtures.appendingPathComponent("references").path

    @Test("parity passes on a fixture, writes the plot, and its JSON names the first failing layer (none)")
    func pass() throws {
        let temp = TemporaryDirectory()
        let plot = temp.path + "/error.svg"
        let r = try run(["parity", TestPaths.fixture("k25-tiny"), "--reference", ref + "/k25-tiny.h5:/exact", "--plot", plot, "--quiet"])
        #expect(r.status == 0, "\(r.out)\(r.err)")
        #expect(r.out.contains("PASS: 3 layer(s) and logits within tolerance"))
        #expect(r.out.contains("16/16 tokens with the reference's expert set"))
        let svg = try String(contentsOfFile: plot, encoding: .utf8)
        #expect(svg.hasPrefix("<svg") && svg.contains("polyline"))
        let j = try run(["parity", "--json", TestPaths.fixture("deepseek-v3-tiny"), "--reference", ref + "/deepseek-v3-tiny.h5:/fp32"])
        #expect(j.status == 0, "\(j.err)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(j.out.utf8)) as? [String: Any])
        #expect(object["pass"] as? Bool == true)
        #expect(object["first_failing_layer"] == nil)
        #expect((object["layers"] as? [Any])?.count == 3)
    }

    @Test("parity of another model's weights fails at layer 0 with exit status 1")
    func fail() throws {
        let r = try run(["parity", TestPaths.fixture("k2-thinking-tiny"), "--reference", ref + "/k25-tiny.h5:/exact"])
        #expect(r.status == 1, "\(r.out)\(r.err)")
        #expect(r.out.contains("FAIL: first failing layer 0"))
    }

    @Test("compare of two dumps and of a model folder")
    func compare() throws {
        let r = try run(["compare", "--json", ref + "/k25-tiny.h5:/exact", ref + "/k25-tiny.h5:/bf16"])
        #expect(r.status == 0, "\(r.err)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [String: Any])
        #expect(object["same_top1"] as? Double == 1)
        let kld = try #require(object["kld"] as? [String: Any])
        #expect((kld["mean"] as? Double ?? 1) < 1e-7)
        let m = try run(["compare", ref + "/k25-tiny.h5:/exact", TestPaths.fixture("k25-tiny")])
        #expect(m.status == 0, "\(m.err)")
        #expect(m.out.contains("Mean KLD:") && m.out.contains("Same top-1:      100.0000%"))
        let bad = try run(["compare", ref + "/k25-tiny.h5:/exact", ref + "/k25-tiny.h5:/nope"])
        #expect(bad.status == 1)
        #expect(bad.err.contains("k25-tiny.h5: no group /nope"), "\(bad.err)")
    }
}
