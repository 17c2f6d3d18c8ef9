import ArgumentParser
import Foundation
import Testing
import TestSupport

@testable import K2PackCLI

/// `convert --to gguf` on the command line: its options, their refusals, and a run.
@Suite("convert --to gguf on the command line")
struct ConvertGGUFCommandTests {
    func refusal(_ arguments: [String]) -> String? {
        do {
            _ = try K2Pack.parseAsRoot(arguments)
            return nil
        } catch {
            return K2Pack.message(for: error)
        }
    }

    @Test("--to defaults to k2pack; the GGUF options parse")
    func parses() throws {
        let plain = try #require(try K2Pack.parseAsRoot(["convert", "in", "out"]) as? ConvertCommand)
        #expect(plain.to == .k2pack && plain.outtype == .bf16 && plain.splitMaxSize == nil)
        let gguf = try #require(
            try K2Pack.parseAsRoot(["convert", "in", "out.gguf", "--to", "gguf", "--outtype", "q8_0", "--split-max-size", "50G", "--allow-inexact-scales", "--no-tokenizer", "--resume"])
                as? ConvertCommand)
        #expect(gguf.to == .gguf && gguf.outtype == .q8_0 && gguf.splitMaxSize == "50G" && gguf.allowInexactScales && gguf.noTokenizer && gguf.resume)
    }

    @Test(
        "options that do not fit the target are refused by validate(), with these messages",
        arguments: [
            (["convert", "i", "o", "--outtype", "f16"], "--outtype only apply with --to gguf"),
            (["convert", "i", "o", "--split-max-size", "1G", "--no-tokenizer"], "--split-max-size, --no-tokenizer only apply with --to gguf"),
            (["convert", "i", "o", "--mmproj", "m.gguf"], "--mmproj only apply with --to gguf"),
            (["convert", "i", "o", "--to", "gguf", "--compress"], "--compress writes the k2pack archive form; it does not apply with --to gguf"),
            (["convert", "i", "o", "--to", "gguf", "--split-max-size", "1.5G"], "--split-max-size 1.5G: expected a whole number"),
        ])
    func refusals(_ arguments: [String], _ message: String) {
        #expect(refusal(arguments)?.hasPrefix(message) == true, "\(arguments): \(refusal(arguments) ?? "accepted")")
    }

    @Test("convert --to gguf writes the file")
    func runs() throws {
        let dir = TemporaryDirectory()
        var command = try K2Pack.parseAsRoot(["convert", TestPaths.fixture("k2-thinking-tiny"), dir.path + "/k2.gguf", "--to", "gguf", "--no-tokenizer", "--json"])
        try command.run()
        #expect(FileManager.default.fileExists(atPath: dir.path + "/k2.gguf"))
    }

    @Test("convert --to gguf --mmproj writes the text GGUF and the mmproj")
    func runsWithMmproj() throws {
        let source = TemporaryDirectory(), dir = TemporaryDirectory()
        let folder = source.copy(fixture: "k25-tiny")
        try Data(#"{"media_proc_cfg": {"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}}"#.utf8)
            .write(to: URL(fileURLWithPath: folder + "/preprocessor_config.json"))
        var command = try K2Pack.parseAsRoot(["convert", folder, dir.path + "/k25.gguf", "--to", "gguf", "--no-tokenizer", "--mmproj", dir.path + "/mmproj-k25.gguf", "--json"])
        try command.run()
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted() == [".k25.gguf.k2pack-resume.json", "k25.gguf", "mmproj-k25.gguf"])
    }
}
