import Foundation
import TestSupport
import Testing

@Suite("parity of the vision tower on the command line")
struct VisionCommandTests {
    let ref = TestPaths.fixtures.appendingPathComponent("references/k25-tiny-vision.h5").path

    @Test("a vision dump runs the tower, merger and projector and passes; its JSON lists every point")
    func pass() throws {
        let r = try run(["parity", TestPaths.fixture("k25-tiny"), "--reference", ref + ":/images"])
        #expect(r.status == 0, "\(r.out)\(r.err)")
        #expect(r.out.contains("grids (1, 2, 2), (1, 6, 8): 52 patches, 13 merged tokens"))
        #expect(r.out.contains("PASS: every point within tolerance"))
        let j = try run(["parity", "--json", TestPaths.fixture("k25-tiny"), "--reference", ref + ":/video"])
        #expect(j.status == 0, "\(j.err)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(j.out.utf8)) as? [String: Any])
        #expect(object["pass"] as? Bool == true && object["tokens"] as? Int == 2)
        #expect((object["points"] as? [Any])?.count == 10)
    }

    @Test("a tolerance below float32 rounding fails at the first point with exit status 1")
    func fail() throws {
        let r = try run(["parity", TestPaths.fixture("k25-tiny"), "--reference", ref + ":/images", "--atol", "1e-9"])
        #expect(r.status == 1, "\(r.out)\(r.err)")
        #expect(r.out.contains("FAIL: first failing point patch_embed_out"))
    }

    @Test("parity --shards runs the vision tower from rank 0 of a shard set")
    func shards() throws {
        let temp = TemporaryDirectory()
        let set = temp.path + "/set"
        let w = try run(["shard", TestPaths.fixture("k25-tiny"), set, "--gpus", "2", "--tp", "1", "--ep", "2", "--vision", "rank0"])
        #expect(w.status == 0, "\(w.out)\(w.err)")
        let p = try run(["parity", "--shards", set, "--reference", ref + ":/video"])
        #expect(p.status == 0, "\(p.out)\(p.err)")
        #expect(p.out.contains("PASS: every point within tolerance"))
    }

    @Test("parity runs the vision tower from a k2pack folder as from the Hugging Face folder")
    func packFolder() throws {
        let temp = TemporaryDirectory()
        let pack = temp.path + "/pack"
        #expect(try run(["convert", "--quiet", TestPaths.fixture("k25-tiny"), pack]).status == 0)
        let p = try run(["parity", pack, "--reference", ref + ":/images"])
        #expect(p.status == 0, "\(p.out)\(p.err)")
        #expect(p.out.contains("PASS: every point within tolerance"))
    }

    @Test("a model without a vision tower is refused by name")
    func noTower() throws {
        let r = try run(["parity", TestPaths.fixture("k2-thinking-tiny"), "--reference", ref + ":/images"])
        #expect(r.status != 0)
        #expect(r.err.contains("Kimi K2 / K2-Thinking has no vision tower"), "\(r.err)")
    }
}

@Suite("inspect's vision summary")
struct VisionInspectTests {
    @Test("inspect prints the vision tower's sizes, parameters and tokens per image; a bad --image is refused")
    func inspect() throws {
        let r = try run(["inspect", TestPaths.fixture("k25-tiny"), "--image", "1000x300"])
        #expect(r.status == 0, "\(r.out)\(r.err)")
        #expect(r.out.contains("vision tower: 2 blocks × 32 wide, 2 heads, patch 14×14 pixels"))
        #expect(r.out.contains("parameters: vision_tower 36512, projector 24832"))
        #expect(r.out.contains("a 1000×300 image: 72×22 patches (after the processor's resize and padding), 396 tokens"))
        let text = try run(["inspect", TestPaths.fixture("k2-thinking-tiny")])
        #expect(text.status == 0 && !text.out.contains("vision tower:"))
        let bad = try run(["inspect", TestPaths.fixture("k25-tiny"), "--image", "448"])
        #expect(bad.status != 0)
        #expect(bad.err.contains("--image 448: expected HEIGHTxWIDTH in pixels, e.g. 448x448"), "\(bad.err)")
    }
}
