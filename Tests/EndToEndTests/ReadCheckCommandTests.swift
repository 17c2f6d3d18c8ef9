import FileIO
import Foundation
import TestSupport
import Testing

/// The read and check side of the reliability issue, on the real executable: exit codes and messages.
@Suite("verify's checks on the command line")
struct ReadCheckCommandTests {
    /// Fixtures/SHA256SUMS lines for one fixture, joined by `separator`.
    func list(for fixture: String, separator: String, dropping: String? = nil) throws -> [UInt8] {
        let text = try String(contentsOf: TestPaths.fixtures.appendingPathComponent("SHA256SUMS"), encoding: .utf8)
        let lines = text.split(separator: "\n").filter { $0.contains("  \(fixture)/") && !(dropping.map($0.hasSuffix) ?? false) }
        return Array((lines.joined(separator: separator) + separator).utf8)
    }

    @Test("--sha256: a CRLF list checks every file; an empty list, one for other files or one missing a shard exits 1")
    func sha256Lists() throws {
        let dir = TemporaryDirectory()
        let copy = dir.copy(fixture: "k25-tiny")
        let crlf = dir.write("crlf.sha256", try list(for: "k25-tiny", separator: "\r\n"))
        let good = try run(["verify", "--sha256", crlf, copy])
        #expect(good.status == 0, "\(good.out)\(good.err)")
        // A flipped byte is found through a CRLF list (before the fix, a CRLF list checked nothing).
        let shard = copy + "/model-00003-of-000006.safetensors"
        var bytes = try Array(Data(contentsOf: URL(fileURLWithPath: shard)))
        bytes[bytes.count - 1] ^= 1
        try Data(bytes).write(to: URL(fileURLWithPath: shard))
        let flipped = try run(["verify", "--sha256", crlf, copy])
        #expect(flipped.status == 1)
        #expect(flipped.out.contains("model-00003-of-000006.safetensors: SHA-256 mismatch"), "\(flipped.out)")

        let empty = dir.write("empty.sha256", [])
        let e = try run(["verify", "--sha256", empty, TestPaths.fixture("k25-tiny")])
        #expect(e.status != 0)
        #expect(e.err.contains("empty.sha256:1: the list has no entries: it would check nothing"), "\(e.err)")

        let other = dir.write("other.sha256", Array("\(String(repeating: "0", count: 64))  unrelated.bin\r\n".utf8))
        let o = try run(["verify", "--sha256", other, TestPaths.fixture("k25-tiny")])
        #expect(o.status == 1)
        #expect(o.out.contains("model-00001-of-000006.safetensors: no SHA-256 listed for this shard"), "\(o.out)")

        let partial = dir.write("partial.sha256", try list(for: "k25-tiny", separator: "\n", dropping: "model-00006-of-000006.safetensors"))
        let p = try run(["verify", "--sha256", partial, TestPaths.fixture("k25-tiny")])
        #expect(p.status == 1)
        #expect(p.out.contains("model-00006-of-000006.safetensors: no SHA-256 listed for this shard"), "\(p.out)")
        #expect(!p.out.contains("model-00005-of-000006.safetensors: no SHA-256"), "\(p.out)")
    }

    @Test("--sha256 with a k2pack folder or a shard set is refused (it would check nothing)")
    func sha256OnPackFolders() throws {
        let dir = TemporaryDirectory()
        let packed = dir.path + "/packed"
        let c = try run(["convert", TestPaths.fixture("deepseek-v3-tiny"), packed])
        #expect(c.status == 0, "\(c.err)")
        let list = dir.write("list.sha256", try list(for: "deepseek-v3-tiny", separator: "\n"))
        let r = try run(["verify", "--sha256", list, packed])
        #expect(r.status != 0)
        #expect(r.err.contains("--sha256 checks a Hugging Face checkpoint's files; \(packed) is a k2pack folder"), "\(r.err)")
        let set = dir.path + "/set"
        let s = try run(["shard", TestPaths.fixture("deepseek-v3-tiny"), set, "--gpus", "2", "--tp", "2"])
        #expect(s.status == 0, "\(s.err)")
        let rs = try run(["verify", "--sha256", list, set])
        #expect(rs.status != 0)
        #expect(rs.err.contains("is a shard set"), "\(rs.err)")
    }

    @Test("dequantize exits 1 on every INT4 case verify rejects, names the tensor, and writes nothing",
          arguments: ["nan_scale", "inf_scale", "zero_scale", "negative_scale", "wrong_weight_shape"])
    func dequantizeRefuses(name: String) throws {
        let dir = TemporaryDirectory()
        let out = dir.path + "/out"
        let v = try run(["verify", TestPaths.fixture("malformed/" + name)])
        #expect(v.status == 1)
        let r = try run(["dequantize", TestPaths.fixture("malformed/" + name), out])
        #expect(r.status != 0, "\(r.out)")
        #expect(r.err.contains("refusing to dequantize (run `k2pack verify`)"), "\(r.err)")
        #expect(r.err.contains(name == "wrong_weight_shape" ? ".weight_shape': weight_shape holds" : ".weight_scale': row "), "\(r.err)")
        let left = (try? FileManager.default.contentsOfDirectory(atPath: out)) ?? []
        #expect(left.isEmpty, "left behind: \(left)")
    }

    @Test("every file of a k2pack folder is guarded: a .k2p, config.json, k2pack.json, a kept header, the source folder",
          arguments: ["K2P", "config.json", "k2pack.json", "source/model.safetensors.header", "source"])
    func packFolderLinks(item: String) throws {
        let dir = TemporaryDirectory()
        let packed = dir.path + "/packed"
        let c = try run(["convert", TestPaths.fixture("deepseek-v3-tiny"), packed])
        #expect(c.status == 0, "\(c.err)")
        let name = item == "K2P" ? try #require(try FileManager.default.contentsOfDirectory(atPath: packed).sorted().first { $0.hasSuffix(".k2p") }) : item
        let outside = dir.path + "/outside-" + name.replacingOccurrences(of: "/", with: "-")
        try FileManager.default.moveItem(atPath: packed + "/" + name, toPath: outside)
        try FileManager.default.createSymbolicLink(atPath: packed + "/" + name, withDestinationPath: outside)
        // inspect reads the tables and config.json, not the kept source headers.
        let inspects = item.hasPrefix("source") ? [] : [["inspect", packed]]
        for command in [["verify", packed], ["export", packed, dir.path + "/exported"]] + inspects {
            let r = try run(command)
            #expect(r.status != 0, "\(command): \(r.out)")
            #expect((r.out + r.err).contains("outside the checkpoint folder"), "\(command): \(r.out)\(r.err)")
        }
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: dir.path + "/exported")) ?? []).isEmpty)
        // Allowed on request: the folder is then whole again.
        let allowed = try run(["verify", "--allow-outside-symlinks", packed])
        #expect(allowed.status == 0, "\(allowed.out)\(allowed.err)")
    }

    @Test("a shard set's shards.json and rank folders are guarded", arguments: ["shards.json", "rank-0001", "rank-0000/k2pack.json"])
    func shardSetLinks(item: String) throws {
        let dir = TemporaryDirectory()
        let set = dir.path + "/set"
        let s = try run(["shard", TestPaths.fixture("deepseek-v3-tiny"), set, "--gpus", "2", "--tp", "2"])
        #expect(s.status == 0, "\(s.err)")
        let outside = dir.path + "/outside-" + item.replacingOccurrences(of: "/", with: "-")
        try FileManager.default.moveItem(atPath: set + "/" + item, toPath: outside)
        try FileManager.default.createSymbolicLink(atPath: set + "/" + item, withDestinationPath: outside)
        for command in [["verify", set], ["shard", "--merge", set, dir.path + "/merged"]] {
            let r = try run(command)
            #expect(r.status != 0, "\(command): \(r.out)")
            #expect((r.out + r.err).contains("outside the checkpoint folder"), "\(command): \(r.out)\(r.err)")
        }
    }

    @Test("verify of a shard set checks its config.json and kept source headers against each other",
          arguments: ["hidden size", "no config", "edited header"])
    func shardSetRecords(change: String) throws {
        let dir = TemporaryDirectory()
        let set = dir.path + "/set"
        let s = try run(["shard", TestPaths.fixture("deepseek-v3-tiny"), set, "--gpus", "2", "--tp", "2"])
        #expect(s.status == 0, "\(s.err)")
        #expect(try run(["verify", set]).status == 0)
        let expected: String
        switch change {
        case "hidden size":
            let path = set + "/config.json"
            try String(contentsOfFile: path, encoding: .utf8).replacingOccurrences(of: "\"hidden_size\": 64", with: "\"hidden_size\": 96")
                .write(toFile: path, atomically: true, encoding: .utf8)
            expected = "model.safetensors: tensor 'model.embed_tokens.weight': shape [256, 64], expected [256, 96] from config.json"
        case "no config":
            try FileManager.default.removeItem(atPath: set + "/config.json")
            expected = "no config.json"
        default:
            let path = set + "/source/model.safetensors.header"
            let original = try Data(contentsOf: URL(fileURLWithPath: path))
            let text = String(decoding: original.dropFirst(8), as: UTF8.self)
            let edited = text.replacingOccurrences(of: "\"model.norm.weight\"", with: "\"model.norx.weight\"")
            try #require(edited != text)
            try (original.prefix(8) + Data(edited.utf8)).write(to: URL(fileURLWithPath: path))
            expected = "tensor 'model.norm.weight' is missing"
        }
        let r = try run(["verify", set])
        #expect(r.status == 1, "\(r.out)\(r.err)")
        #expect(r.out.contains(expected), "\(r.out)")
    }
}

@Suite("a --scheme file is read as a regular file")
struct SchemeFileTests {
    @Test("quantize --scheme refuses a FIFO, a folder and a missing file at once, naming it; nothing is written")
    func notRegular() throws {
        let dir = TemporaryDirectory()
        let fifo = dir.path + "/scheme.fifo", folder = dir.path + "/scheme.d", missing = dir.path + "/none.json"
        #expect(mkfifo(fifo, 0o644) == 0)
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: false)
        for (path, reason) in [(fifo, "not a regular file"), (folder, "not a regular file"), (missing, "No such file or directory")] {
            let out = dir.path + "/out"
            let r = try run(["quantize", "--quiet", TestPaths.fixture("quantize/k2-thinking-bf16"), out, "--scheme", path])
            #expect(r.status == 1, "\(path): \(r.status) \(r.err)")
            #expect(r.err.contains(path) && r.err.contains(reason), "\(path): \(r.err)")
            #expect(!somethingAt(out + "/config.json") && !somethingAt(out + "/model.safetensors.index.json"), "\(path)")
        }
    }
}
