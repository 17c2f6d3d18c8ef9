import Checkpoint
import FileIO
import Foundation
import Inspection
import PackFormat
import Repack
import TestSupport
import Testing

@Suite("shard names and output paths are bytes: NFC and NFD spellings, separators with combining marks")
struct ByteNameTests {
    @Test("an index naming both the NFC and the NFD spelling of a shard converts (no trap) and exports the same bytes")
    func normalizationTwinsConvert() throws {
        let dir = TemporaryDirectory()
        let (input, shards) = try normalizationTwins(in: dir)
        #expect(shards[0].name == shards[1].name)  // equal as Swift Strings, two files on disk
        let packed = dir.path + "/packed", out = dir.path + "/out"
        _ = try Converter.convert(input: input, output: packed)
        let manifest = try PackManifest.read(folder: packed)
        let recorded = manifest.sourceShards.map { Array($0.utf8) }
        for shard in shards { #expect(recorded.contains(Array(shard.name.utf8))) }
        _ = try Exporter.export(input: packed, output: out)
        for shard in shards {
            let written = try Data(contentsOf: URL(fileURLWithPath: out + "/" + shard.name))
            #expect(written == shard.bytes, "\(Array(shard.name.unicodeScalars))")
        }
        #expect(try PackVerifier.verify(folder: packed).passed)
    }

    @Test("output paths split on the byte /: folder and name of a path with a separator before a combining mark")
    func outputPathParts() {
        #expect(OutputPaths.folder(of: "out/\u{301}x").utf8.elementsEqual("out".utf8))
        #expect(OutputPaths.name(of: "out/\u{301}x").utf8.elementsEqual("\u{301}x".utf8))
        #expect(OutputPaths.folder(of: "/\u{301}x") == "/")
        #expect(OutputPaths.folder(of: "x") == ".")
        #expect(OutputPaths.folder(of: "a/b/") == "a")
        #expect(OutputPaths.name(of: "a/b//") == "b")
        #expect(OutputPaths.trimmed("/") == "/")
    }

    @Test("a path to be created resolves its .. components even after a separator with a combining mark")
    func resolvesDotDot() throws {
        let dir = TemporaryDirectory()
        let root = try #require(OutputPaths.resolved(dir.path))
        // "new/../\u{301}x": the file system sees "new", "..", "\u{301}x" — i.e. "<dir>/\u{301}x".
        let resolved = try #require(OutputPaths.resolved(dir.path + "/new/../\u{301}x"))
        #expect(resolved == root + [0x2F] + Array("\u{301}x".utf8))
        // An output climbing out of an input through such a name is outside it, and one inside is refused.
        let input = dir.path + "/in"
        try FileManager.default.createDirectory(atPath: input, withIntermediateDirectories: true)
        #expect(throws: Never.self) { try OutputPaths.refuseOverlap(output: input + "/../\u{301}out", inputs: [input]) }
        let inside = input + "/new/../\u{301}out"
        #expect(throws: FileIOError.io(path: inside, operation: "write there", reason: "it lies inside the input \(input) (\(String(decoding: try #require(OutputPaths.resolved(input)), as: UTF8.self))); choose a path outside it")) {
            try OutputPaths.refuseOverlap(output: inside, inputs: [input])
        }
    }

    @Test("a carried file in a sub-folder named with a combining mark after the separator is copied inside the output")
    func carriedCombining() throws {
        let dir = TemporaryDirectory()
        let source = dir.path + "/src", out = dir.path + "/out"
        dir.write("src/d/\u{301}x.txt", Array("hello".utf8))
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let copied = try CarriedFiles.copy("d/\u{301}x.txt", from: source, to: out)
        #expect(copied.size == 5)
        #expect(fileText(out + "/d/\u{301}x.txt") == "hello")
        #expect(try FileManager.default.contentsOfDirectory(atPath: out) == ["d"])
        #expect(CarriedFiles.problem(paths: ["d/\u{301}x.txt", "..\u{301}/y"], reserved: []) == nil)
    }
}
