import ArgumentParser
import Foundation
import Inspection
import Testing
import TestSupport

@testable import K2PackCLI

/// `dequantize FILE.gguf` and `convert FILE.gguf --to hf` from the command line.
@Suite("GGUF unpack commands")
struct GGUFUnpackCommandTests {
    @Test("dequantize FILE.gguf OUT --dtype f32 writes a folder verify passes")
    func dequantize() throws {
        let dir = TemporaryDirectory()
        let out = dir.path + "/hf"
        var command = try K2Pack.parseAsRoot(["dequantize", GGUFUnpackTests.gguf("k25-tiny.Q8_0"), out, "--dtype", "f32", "--layout", "k2", "--quiet"])
        try command.run()
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/config.json"))) as? [String: Any]
        #expect(config?["model_type"] as? String == "kimi_k2" && config?["torch_dtype"] as? String == "float32")
        #expect(try Verifier.verify(path: out).passed)
    }

    @Test("convert FILE.gguf OUT --to hf writes INT4 experts")
    func convertToHF() throws {
        let dir = TemporaryDirectory()
        let out = dir.path + "/hf"
        var command = try K2Pack.parseAsRoot(["convert", GGUFUnpackTests.gguf("k2-thinking-tiny.BF16-Q4_0"), out, "--to", "hf", "--json"])
        try command.run()
        #expect(FileManager.default.fileExists(atPath: out + "/model-00001-of-00001.safetensors"))
        #expect(try Verifier.verify(path: out).passed)
    }

    @Test("convert FILE.gguf OUT --to hf --vision-from K25-DIR writes a K2.5 folder")
    func convertK25() throws {
        let dir = TemporaryDirectory()
        let out = dir.path + "/k25"
        var command = try K2Pack.parseAsRoot(["convert", GGUFUnpackTests.gguf("k25-tiny.Q8_0"), out, "--to", "hf", "--vision-from", TestPaths.fixture("k25-tiny"), "--quiet"])
        try command.run()
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/config.json"))) as? [String: Any]
        #expect(config?["model_type"] as? String == "kimi_k25")
        #expect(try Verifier.verify(path: out).passed)
    }

    @Test("dequantize FILE.gguf --format k2pack is refused: a GGUF goes back to a Hugging Face folder only")
    func formatK2pack() throws {
        let dir = TemporaryDirectory()
        var command = try K2Pack.parseAsRoot(["dequantize", GGUFUnpackTests.gguf("k25-tiny.Q8_0"), dir.path + "/out", "--format", "k2pack", "--quiet"])
        do {
            try command.run()
            Issue.record("ran")
        } catch let error as ValidationError {
            #expect(error.message.contains("--format k2pack: a GGUF is written back as a Hugging Face folder only"), "\(error.message)")
        }
        #expect(!FileManager.default.fileExists(atPath: dir.path + "/out"))
    }

    @Test("convert DIR --to hf is refused: the input must be a GGUF file")
    func convertFolderToHF() throws {
        let dir = TemporaryDirectory()
        var command = try K2Pack.parseAsRoot(["convert", TestPaths.fixture("k2-thinking-tiny"), dir.path + "/out", "--to", "hf", "--quiet"])
        do {
            try command.run()
            Issue.record("ran")
        } catch let error as ValidationError {
            #expect(error.message.contains("k2-thinking-tiny is not a GGUF file"), "\(error.message)")
        }
        #expect(!FileManager.default.fileExists(atPath: dir.path + "/out"))
    }

    @Test("options that do not fit the input are refused, naming them", arguments: [
        (["dequantize", "in.gguf", "o", "--exact", "--dtype", "f32"], "--exact and --dtype"),
        (["convert", "in.gguf", "o", "--to", "hf", "--resume"], "--to hf with --resume"),
        (["convert", "in.gguf", "o", "--to", "hf", "--compress"], "--to hf with --compress"),
        (["convert", "in", "o", "--vision-from", "k25"], "--vision-from only applies with --to hf"),
    ])
    func refusedOptions(arguments: [String], fragment: String) {
        do {
            _ = try K2Pack.parseAsRoot(arguments)
            Issue.record("parsed \(arguments)")
        } catch {
            #expect(K2Pack.message(for: error).contains(fragment), "\(K2Pack.message(for: error))")
        }
    }

    @Test("--exact with a GGUF, --dtype or --layout with a folder: refused before any work", arguments: [
        (["--exact"], true, "--exact: "),
        (["--dtype", "f32"], false, "--dtype applies to a GGUF input"),
        (["--layout", "k2"], false, "--layout applies to a GGUF input"),
    ])
    func mismatchedInput(options: [String], gguf: Bool, fragment: String) throws {
        let dir = TemporaryDirectory()
        let input = gguf ? GGUFUnpackTests.gguf("k25-tiny.Q8_0") : TestPaths.fixture("k2-thinking-tiny")
        var command = try K2Pack.parseAsRoot(["dequantize", input, dir.path + "/out", "--quiet"] + options)
        do {
            try command.run()
            Issue.record("ran")
        } catch let error as ValidationError {
            #expect(error.message.contains(fragment), "\(error.message)")
        }
        #expect(!FileManager.default.fileExists(atPath: dir.path + "/out"))
    }
}
