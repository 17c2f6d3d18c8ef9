import ArgumentParser
import FileIO
import GGUF
import Testing
import TestSupport

@testable import K2PackCLI

/// `compare` and `parity` run the forward pass from a GGUF file (the model path picks its source).
@Suite("GGUF models in compare and parity")
struct GGUFCommandTests {
    static let gguf = TestPaths.fixture("gguf-models/k2-thinking-tiny.Q4_0.gguf")

    @Test("compare REF.h5 FILE.gguf runs the GGUF on the reference's input_ids")
    func compare() throws {
        var command = try K2Pack.parseAsRoot(["compare", TestPaths.fixture("references/k2-thinking-tiny.h5") + ":/exact", Self.gguf, "--json", "--threads", "2"])
        try command.run()
    }

    @Test("parity FILE.gguf --reference DUMP passes against a dump of the file's dequantized weights")
    func parity() throws {
        var command = try K2Pack.parseAsRoot(
            ["parity", Self.gguf, "--reference", TestPaths.fixture("references/gguf-models.h5") + ":/k2-thinking-tiny.Q4_0", "--quiet", "--threads", "2"])
        try command.run()
    }

    @Test("parity of a GGUF against another model's dump fails (exit status 1)")
    func parityFails() throws {
        var command = try K2Pack.parseAsRoot(
            ["parity", Self.gguf, "--reference", TestPaths.fixture("references/gguf-models.h5") + ":/k25-tiny.Q8_0", "--quiet", "--threads", "2"])
        #expect(throws: ExitCode(1)) { try command.run() }
    }

    @Test("verify FILE.gguf exits 0 on a model fixture (text and --json) and 1 on a file with a NaN scale")
    func verify() throws {
        var text = try K2Pack.parseAsRoot(["verify", Self.gguf, "--threads", "2"])
        try text.run()
        var json = try K2Pack.parseAsRoot(["verify", Self.gguf, "--json"])
        try json.run()
        var bytes = try ReadOnlyFile(path: Self.gguf).readAll()
        let model = try GGUFFile(path: Self.gguf)
        let expert = try #require(model.tensor(named: "blk.1.ffn_up_exps.weight"))
        bytes[model.dataStart + expert.offset + 1] = 0x7E  // block 0's d: 0x7E00, NaN
        let dir = TemporaryDirectory()
        var bad = try K2Pack.parseAsRoot(["verify", dir.write("nan.gguf", bytes)])
        #expect(throws: ExitCode(1)) { try bad.run() }
        var sha = try K2Pack.parseAsRoot(["verify", Self.gguf, "--sha256", Self.gguf])
        #expect(throws: ValidationError.self) { try sha.run() }
    }

    @Test("inspect FILE.gguf --gpus N (text and --json)")
    func inspect() throws {
        var text = try K2Pack.parseAsRoot(["inspect", Self.gguf, "--gpus", "2"])
        try text.run()
        var json = try K2Pack.parseAsRoot(["inspect", Self.gguf, "--gpus", "2", "--json"])
        try json.run()
    }
}
