import Foundation
import TestSupport
import Testing

/// A writer that fails after its shards, index and config.json are in place (here: a carried file whose path is
/// too long under the output folder) removes everything it wrote: no folder that looks finished but lacks files.
@Suite("failed writers leave no finished-looking folder")
struct WrittenOutputTests {
    /// 18 folders of 200 characters: the file's path fits under the input folder, not under the longer output.
    static let deepFolder = (0..<18).map { _ in String(repeating: "d", count: 200) }.joined(separator: "/")

    /// A copy of `fixture` carrying `deep/…/x.txt`.
    static func inputWithDeepFile(_ fixture: String, in dir: TemporaryDirectory) throws -> String {
        let input = dir.copy(fixture: fixture)
        try FileManager.default.createDirectory(atPath: input + "/" + deepFolder, withIntermediateDirectories: true)
        try Data("carried".utf8).write(to: URL(fileURLWithPath: input + "/" + deepFolder + "/x.txt"))
        return input
    }

    /// An output folder 502 characters longer than the temporary folder: the deep carried file's path exceeds
    /// PATH_MAX there.
    static func longOutput(_ dir: TemporaryDirectory, _ last: Character = "p") -> String {
        dir.path + "/" + String(repeating: "o", count: 250) + "/" + String(repeating: last, count: 250)
    }

    func expectNothingLeft(_ name: String, _ arguments: [String], output: String) throws {
        let r = try run(arguments + [output])
        #expect(r.status == 1, "\(name): status \(r.status)\n\(r.err)")
        // The long path is shown shortened: its start (the output folder) and end (the carried file's folder).
        #expect(r.err.hasPrefix("Error: \(output.prefix(60))"), "\(name): \(r.err)")
        #expect(r.err.contains("dddd: cannot create the folder: File name too long"), "\(name): \(r.err)")
        let left = (FileManager.default.enumerator(atPath: output)?.allObjects as? [String]) ?? []
        #expect(left.isEmpty, "\(name) left \(left.map { $0.count > 80 ? String($0.prefix(80)) + "…" : $0 })")
    }

    @Test("quantize: a carried file that cannot be written removes the shards, index and config.json too")
    func quantize() throws {
        let dir = TemporaryDirectory()
        let input = try Self.inputWithDeepFile("quantize/k2-thinking-bf16", in: dir)
        try expectNothingLeft("quantize", ["quantize", "--quiet", input], output: Self.longOutput(dir))
    }

    @Test("dequantize: a carried file that cannot be written removes the shards, index and config.json too")
    func dequantize() throws {
        let dir = TemporaryDirectory()
        let input = try Self.inputWithDeepFile("k2-thinking-tiny", in: dir)
        try expectNothingLeft("dequantize", ["dequantize", "--quiet", input], output: Self.longOutput(dir))
    }

    @Test("export and shard --merge: the same cleanup (one shared implementation)")
    func exportAndMerge() throws {
        let dir = TemporaryDirectory()
        let packed = dir.path + "/packed", set = dir.path + "/set"
        let c = try run(["convert", "--quiet", try Self.inputWithDeepFile("k25-tiny", in: dir), packed])
        #expect(c.status == 0, "\(c.err)")
        try expectNothingLeft("export", ["export", "--quiet", packed], output: Self.longOutput(dir))
        let s = try run(["shard", "--quiet", "--gpus", "2", "--tp", "2", try Self.inputWithDeepFile("deepseek-v3-tiny", in: dir), set])
        #expect(s.status == 0, "\(s.err)")
        try expectNothingLeft("shard --merge", ["shard", "--merge", "--quiet", set], output: Self.longOutput(dir, "m"))
    }
}
