import Foundation
import TestSupport
import Testing

/// Every command that reads config.json refuses what the forward pass cannot use, with the same message as
/// `verify`, and exits 1 (never a trap).
@Suite("config.json refused alike by every command")
struct ConfigCommandTests {
    /// A copy of the k2-thinking-tiny fixture whose config.json has `key` set to the raw JSON `value`.
    static func edited(_ dir: TemporaryDirectory, _ key: String, _ value: String, fixture: String = "k2-thinking-tiny") throws -> String {
        let folder = dir.copy(fixture: fixture)
        let path = folder + "/config.json"
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let pattern = try NSRegularExpression(pattern: "\"\(key)\": [^,\\n}]*")
        let range = NSRange(text.startIndex..., in: text)
        let template = NSRegularExpression.escapedTemplate(for: "\"\(key)\": \(value)")
        var edited = pattern.stringByReplacingMatches(in: text, range: range, withTemplate: template)
        if edited == text { edited = text.replacingOccurrences(of: "{", with: "{\"\(key)\": \(value), ", options: [], range: text.range(of: "{")) }
        try edited.write(toFile: path, atomically: true, encoding: .utf8)
        return folder
    }

    static let cases: [(key: String, value: String, message: String)] = [
        ("num_experts_per_tok", "0", "config.json: config key \"num_experts_per_tok\": must be at least 1 when n_routed_experts is 8, found 0"),
        ("hidden_act", "\"gelu\"", "config.json: config key \"hidden_act\": found \"gelu\", expected \"silu\""),
        ("n_group", "3", "config.json: config key \"n_group\": 3 groups do not divide n_routed_experts 8"),
        ("rms_norm_eps", "0", "config.json: config key \"rms_norm_eps\": must be greater than 0, found 0"),
        ("tie_word_embeddings", "\"false\"", "config.json: config key \"tie_word_embeddings\" must be a boolean (true or false), found a string \"false\""),
    ]

    @Test("verify, inspect, convert, quantize, dequantize, shard, parity and compare all refuse", arguments: 0..<5)
    func everyCommand(_ index: Int) throws {
        let c = Self.cases[index]
        let dir = TemporaryDirectory()
        let folder = try Self.edited(dir, c.key, c.value)
        let reference = TestPaths.fixtures.appendingPathComponent("references/k2-thinking-tiny.h5").path + ":/exact"
        let commands: [[String]] = [
            ["verify", folder], ["inspect", folder], ["convert", "--quiet", folder, dir.path + "/pack"],
            ["dequantize", "--quiet", folder, dir.path + "/bf16"], ["shard", "--quiet", "--gpus", "2", "--ep", "2", folder, dir.path + "/set"],
            ["parity", folder, "--reference", reference], ["compare", reference, folder],
        ]
        let bf16Dir = TemporaryDirectory()
        let bf16 = try Self.edited(bf16Dir, c.key, c.value, fixture: "quantize/k2-thinking-bf16")
        defer { withExtendedLifetime(bf16Dir) {} }
        for command in commands + [["quantize", "--quiet", bf16, dir.path + "/int4"]] {
            let r = try run(command)
            #expect(r.status == 1, "\(command[0]) \(c.key)=\(c.value): status \(r.status)\n\(r.out)\(r.err)")
            #expect((r.out + r.err).contains(c.message), "\(command[0]) \(c.key)=\(c.value):\n\(r.out)\(r.err)")
        }
        // Nothing was written by the refusing writers.
        for output in ["pack", "bf16", "set", "int4"] {
            let left = (try? FileManager.default.contentsOfDirectory(atPath: dir.path + "/" + output)) ?? []
            #expect(left.isEmpty, "\(output) left behind: \(left)")
        }
    }

    @Test("a k2pack folder or shard set whose config.json was edited afterwards is refused by parity, compare, inspect and verify")
    func packFolder() throws {
        let dir = TemporaryDirectory()
        let pack = dir.path + "/pack", set = dir.path + "/set"
        #expect(try run(["convert", "--quiet", TestPaths.fixture("k2-thinking-tiny"), pack]).status == 0)
        #expect(try run(["shard", "--quiet", "--gpus", "2", "--ep", "2", TestPaths.fixture("k2-thinking-tiny"), set]).status == 0)
        for path in [pack + "/config.json", set + "/rank-0000/config.json", set + "/rank-0001/config.json"] {
            let text = try String(contentsOfFile: path, encoding: .utf8)
            try text.replacingOccurrences(of: "\"num_experts_per_tok\": 2", with: "\"num_experts_per_tok\": 0").write(toFile: path, atomically: true, encoding: .utf8)
        }
        let reference = TestPaths.fixtures.appendingPathComponent("references/k2-thinking-tiny.h5").path + ":/exact"
        let commands = [
            ["parity", pack, "--reference", reference], ["compare", reference, pack], ["inspect", pack], ["verify", pack],
            ["parity", "--shards", set, TestPaths.fixture("k2-thinking-tiny")], ["parity", "--shards", set, "--reference", reference],
            ["verify", set],
        ]
        for command in commands {
            let r = try run(command)
            #expect(r.status == 1, "\(command[0]): status \(r.status)\n\(r.out)\(r.err)")
            #expect((r.out + r.err).contains("\"num_experts_per_tok\": must be at least 1"), "\(command[0]):\n\(r.out)\(r.err)")
        }
    }

    @Test("a k2pack.json or shards.json of the wrong types is named plainly, never as a raw DecodingError")
    func recordMessages() throws {
        let dir = TemporaryDirectory()
        let pack = dir.path + "/pack", set = dir.path + "/set"
        #expect(try run(["convert", "--quiet", TestPaths.fixture("k2-thinking-tiny"), pack]).status == 0)
        #expect(try run(["shard", "--quiet", "--gpus", "2", "--ep", "2", TestPaths.fixture("k2-thinking-tiny"), set]).status == 0)
        let edits: [(String, String, String, [String], String)] = [
            (pack + "/k2pack.json", "\"source_index\" : true", "\"source_index\" : 3", ["inspect", pack], "key \"source_index\": expected a boolean, found a number"),
            (pack + "/k2pack.json", "\"source_index\" : 3", "\"source_index\" : null", ["verify", pack], "key \"source_index\": expected a boolean, found null"),
            (set + "/shards.json", "\"format\"", "\"formats\"", ["verify", set], "unknown key \"formats\""),
        ]
        for (path, old, new, command, expected) in edits {
            let text = try String(contentsOfFile: path, encoding: .utf8)
            #expect(text.contains(old), "\(path) has no \(old)")
            try text.replacingOccurrences(of: old, with: new).write(toFile: path, atomically: true, encoding: .utf8)
            let r = try run(command)
            #expect(r.status == 1, "\(command): status \(r.status)")
            #expect((r.out + r.err).contains(expected), "\(command): \(r.out)\(r.err)")
            #expect(!(r.out + r.err).contains("DecodingError"), "\(command): \(r.out)\(r.err)")
        }
    }
}
