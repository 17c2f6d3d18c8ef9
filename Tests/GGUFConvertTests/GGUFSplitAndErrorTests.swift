import Checkpoint
import FileIO
import Foundation
import GGUF
import Testing
import TestSupport

@testable import GGUFConvert

/// The entries of a folder (hidden ones included).
func listing(_ path: String) -> [String] { ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted() }

@Suite("convert --to gguf: split parts, --resume, refusals")
struct GGUFSplitAndErrorTests {
    static let noTokenizer = GGUFConverter.Options(requireTokenizer: false)

    @Test("--split-max-size: ≥ 3 parts named and keyed as gguf-split does, read back as one model with the single file's tensors")
    func split() throws {
        let single = try Converted("k2-thinking-tiny")
        let dir = TemporaryDirectory()
        var options = Self.noTokenizer
        options.splitMaxBytes = 80_000
        let report = try GGUFConverter.convert(input: TestPaths.fixture("k2-thinking-tiny"), output: dir.path + "/k2.gguf", options: options)
        let n = report.files.count
        #expect(n >= 3)
        #expect(report.files == (1...n).map { dir.path + "/k2-0000\($0)-of-0000\(n).gguf" })
        let model = try GGUF.GGUFModel(path: report.files[0])
        #expect(model.parts.count == n && model.tensorNames.count == 52)
        for t in single.file.tensors {
            let (file, info) = try #require(model.tensor(named: t.name))
            #expect(info.type == t.type && info.ne == t.ne)
            #expect(Array(try file.bytes(of: info)) == Array(try single.file.bytes(of: t)), "\(t.name)")
        }
        for (i, part) in model.parts.enumerated() {
            #expect(part["split.no"] == .u16(UInt16(i)))
            #expect(part["split.count"] == .u16(UInt16(n)))
            #expect(part["split.tensors.count"] == .i32(52))
            // Every key in the first part (gguf-split's gguf_set_kv), only the split keys in the others.
            let keys = part.metadata.map(\.key)
            if i == 0 {
                #expect(keys == single.file.metadata.map(\.key) + ["split.no", "split.count", "split.tensors.count"])
            } else {
                #expect(keys == ["split.no", "split.count", "split.tensors.count"])
            }
            // No part holds more than the limit, unless a single tensor is larger.
            let data = part.tensors.reduce(0) { $0 + ($1.byteCount + 31) / 32 * 32 }
            #expect(data <= 80_000 || part.tensors.count == 1)
        }
    }

    @Test("--resume keeps the finished parts whose length and SHA-256 match the record and rewrites the rest; without it, existing output is refused")
    func resume() throws {
        let dir = TemporaryDirectory()
        var options = Self.noTokenizer
        options.splitMaxBytes = 80_000
        let input = TestPaths.fixture("k2-thinking-tiny")
        let first = try GGUFConverter.convert(input: input, output: dir.path + "/k2.gguf", options: options)
        let original = try first.files.map { Array(try Data(contentsOf: URL(fileURLWithPath: $0))) }
        // Damage part 2 (same length, one byte changed).
        var damaged = original[1]
        damaged[damaged.count - 40] ^= 0xFF
        try Data(damaged).write(to: URL(fileURLWithPath: first.files[1]))

        #expect(throws: GGUFConvertError.output(path: first.files[0], reason: "already exists; remove it, choose another output, or pass --resume to keep the finished parts of an earlier run")) {
            _ = try GGUFConverter.convert(input: input, output: dir.path + "/k2.gguf", options: options)
        }
        options.resume = true
        let second = try GGUFConverter.convert(input: input, output: dir.path + "/k2.gguf", options: options)
        #expect(second.filesReused == first.files.enumerated().filter { $0.offset != 1 }.map(\.element))
        #expect(try second.files.map { Array(try Data(contentsOf: URL(fileURLWithPath: $0))) } == original)

        // A record that is not ours (not JSON, or another shape) keeps nothing; the output is the same.
        for garbage in ["not json", "{\"plan\": 3}", "[]"] {
            try Data(garbage.utf8).write(to: URL(fileURLWithPath: dir.path + "/.k2.gguf.k2pack-resume.json"))
            let again = try GGUFConverter.convert(input: input, output: dir.path + "/k2.gguf", options: options)
            #expect(again.filesReused.isEmpty, "\(garbage)")
            #expect(try again.files.map { Array(try Data(contentsOf: URL(fileURLWithPath: $0))) } == original)
        }

        // A different plan (another --outtype) keeps nothing.
        options.outType = .f16
        let third = try GGUFConverter.convert(input: input, output: dir.path + "/k2.gguf", options: options)
        #expect(third.filesReused.isEmpty)
    }

    @Test("a scale F16 cannot hold is refused naming file, tensor, expert, row and group, and leaves nothing; --allow-inexact-scales rounds and counts it")
    func inexactScale() throws {
        let work = TemporaryDirectory()
        let folder = work.copy(fixture: "k2-thinking-tiny")
        let tensor = "model.layers.1.mlp.experts.3.up_proj.weight_scale"
        let checkpoint = try CheckpointDirectory(path: folder)
        let (shard, entry) = try #require(checkpoint.entry(named: tensor))
        // Row 2, group 1 of [32, 2] BF16 scales: 2⁻³⁰, below F16's smallest subnormal.
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: shard.file.path))
        try handle.seek(toOffset: UInt64(entry.rangeInFile.lowerBound + 2 * (2 * 2 + 1)))
        try handle.write(contentsOf: Data([0x80, 0x30]))
        try handle.close()

        let out = TemporaryDirectory()
        let expected = GGUFConvertError.inexactScale(file: shard.name, tensor: tensor, expert: 3, row: 2, group: 1, scale: 0x1p-30, f16: 0)
        #expect(throws: expected) {
            _ = try GGUFConverter.convert(input: folder, output: out.path + "/k2.gguf", options: Self.noTokenizer)
        }
        #expect(expected.description.contains("tensor \(tensor), expert 3, row 2, group 1: scale 9.313226e-10 is not exact in F16"))
        #expect(expected.description.contains("--allow-inexact-scales"))
        #expect(listing(out.path).isEmpty)

        // Split output: the parts finished before the error are removed too.
        var split = Self.noTokenizer
        split.splitMaxBytes = 40_000
        #expect(throws: expected) { _ = try GGUFConverter.convert(input: folder, output: out.path + "/k2.gguf", options: split) }
        #expect(listing(out.path).isEmpty)

        var allow = Self.noTokenizer
        allow.allowInexactScales = true
        let report = try GGUFConverter.convert(input: folder, output: out.path + "/k2.gguf", options: allow)
        #expect(report.inexactScales == 1)
        #expect(report.warnings.contains { $0.hasPrefix("1 group scale was not exact in F16 and rounded") })
        // Kept by --resume, the part's rounded scale is still reported.
        allow.resume = true
        let resumed = try GGUFConverter.convert(input: folder, output: out.path + "/k2.gguf", options: allow)
        #expect(resumed.filesReused == resumed.files && resumed.inexactScales == 1)
    }

    @Test("a NaN scale (malformed/nan_scale) is refused as not exact in F16, naming its tensor, expert, row and group")
    func nanScale() throws {
        let out = TemporaryDirectory()
        do {
            _ = try GGUFConverter.convert(input: TestPaths.fixture("malformed/nan_scale"), output: out.path + "/m.gguf", options: Self.noTokenizer)
            Issue.record("a NaN scale was accepted")
        } catch {
            guard case let .inexactScale(file, tensor, expert, row, group, scale, _) = error else { Issue.record("\(error)"); return }
            #expect(file == "model-00002-of-00002.safetensors" && tensor == "model.layers.1.mlp.experts.1.gate_proj.weight_scale")
            #expect(expert == 1 && row == 3 && group == 0 && scale.isNaN)
        }
        #expect(listing(out.path).isEmpty)
    }

    @Test("BF16 routed experts (deepseek-v3-tiny) are refused with a pointer to quantize; nothing is created")
    func bf16Experts() throws {
        let out = TemporaryDirectory()
        let target = out.path + "/new-folder"
        do {
            _ = try GGUFConverter.convert(input: TestPaths.fixture("deepseek-v3-tiny"), output: target, options: Self.noTokenizer)
            Issue.record("BF16 experts were accepted")
        } catch {
            guard case let .bf16Experts(file, tensor, gguf) = error else { Issue.record("\(error)"); return }
            #expect(file == "model.safetensors" && tensor.hasSuffix(".mlp.experts.0.gate_proj.weight") && gguf.hasSuffix(".ffn_gate_exps.weight"))
            #expect(error.description.contains("run `k2pack quantize` on the folder first"))
        }
        #expect(!FileManager.default.fileExists(atPath: target))
    }

    @Test("a folder without tokenizer files is refused unless --no-tokenizer")
    func noTokenizer() throws {
        let out = TemporaryDirectory()
        // k2-thinking-tiny without its tokenizer files.
        let input = out.copy(fixture: "k2-thinking-tiny")
        for name in ["tiktoken.model", "tokenizer_config.json"] { try FileManager.default.removeItem(atPath: input + "/" + name) }
        let written = TemporaryDirectory()
        #expect(throws: GGUFConvertError.noTokenizer(folder: input)) {
            _ = try GGUFConverter.convert(input: input, output: written.path + "/k2.gguf")
        }
        #expect(GGUFConvertError.noTokenizer(folder: input).description.contains("pass --no-tokenizer"))
        #expect(listing(written.path).isEmpty)
    }

    @Test("a checkpoint convert refuses is refused the same way (missing expert, wrong shape), naming the tensor")
    func structuralRefusals() throws {
        for (name, culprit) in [("missing_expert", "model.layers.1.mlp.experts.2.up_proj"), ("wrong_shape", "model.layers.0.self_attn.q_b_proj.weight")] {
            let out = TemporaryDirectory()
            do {
                _ = try GGUFConverter.convert(input: TestPaths.fixture("malformed/\(name)"), output: out.path + "/m.gguf", options: Self.noTokenizer)
                Issue.record("\(name) was accepted")
            } catch {
                guard case .sourceInvalid = error else { Issue.record("\(error)"); continue }
                #expect(error.description.contains(culprit), "\(error)")
            }
            #expect(listing(out.path).isEmpty)
        }
    }

    @Test("an output inside the input is refused")
    func outputInsideInput() throws {
        let work = TemporaryDirectory()
        let folder = work.copy(fixture: "k2-thinking-tiny")
        #expect(throws: GGUFConvertError.self) { _ = try GGUFConverter.convert(input: folder, output: folder + "/x.gguf", options: Self.noTokenizer) }
        #expect(!FileManager.default.fileExists(atPath: folder + "/x.gguf"))
    }

    @Test("--split-max-size parses decimal K, M, G, T and plain byte counts", arguments: [("50G", 50_000_000_000), ("500M", 500_000_000), ("20K", 20_000), ("123", 123), ("2g", 2_000_000_000)])
    func sizes(_ text: String, _ bytes: Int) throws {
        #expect(try GGUFConverter.parseSize(text) == bytes)
    }

    @Test("bad --split-max-size values are refused with the reason", arguments: ["", "G", "1.5G", "-5M", "0", "12X", "99999999999999T"])
    func badSizes(_ text: String) {
        do {
            _ = try GGUFConverter.parseSize(text)
            Issue.record("accepted \(text)")
        } catch {
            #expect(error.description.hasPrefix("--split-max-size \(text): "))
        }
    }
}

@Suite("GGUF container writer")
struct GGUFContainerTests {
    /// Writes a layout and tensor bytes through the stream writer; returns the path.
    func write(_ layout: GGUFLayout, data: [[UInt8]], in dir: TemporaryDirectory) throws -> String {
        let path = dir.path + "/c.gguf"
        let writer = try GGUFStreamWriter(path: path, bufferBytes: 64)
        try writer.append(layout.header)
        for bytes in data {
            try writer.append(bytes)
            try writer.pad(to: layout.alignment)
        }
        let (count, _) = try writer.commit()
        #expect(count == layout.fileBytes)
        return path
    }

    @Test("metadata of every value type (nested arrays too) and tensors read back unchanged through GGUFFile")
    func everyType() throws {
        let metadata: [GGUFKeyValue] = [
            .init(key: "general.architecture", value: .string("deepseek2")), .init(key: "general.alignment", value: .u32(64)),
            .init(key: "a.u8", value: .u8(200)), .init(key: "a.i8", value: .i8(-3)), .init(key: "a.u16", value: .u16(65000)),
            .init(key: "a.i16", value: .i16(-30000)), .init(key: "a.u32", value: .u32(4_000_000_000)), .init(key: "a.i32", value: .i32(-7)),
            .init(key: "a.f32", value: .f32(0.1)), .init(key: "a.bool", value: .bool(true)), .init(key: "a.string", value: .string("é ✓")),
            .init(key: "a.u64", value: .u64(UInt64.max)), .init(key: "a.i64", value: .i64(Int64.min)), .init(key: "a.f64", value: .f64(-2.5e300)),
            .init(key: "a.strings", value: .array(.string(["a", "", "ü"]))), .init(key: "a.i32s", value: .array(.i32([1, -2, 3]))),
            .init(key: "a.bools", value: .array(.bool([true, false]))), .init(key: "a.f32s", value: .array(.f32([1.5, -0.0]))),
            .init(key: "a.nested", value: .array(.array([.u8([1, 2]), .u8([3])]))), .init(key: "a.empty", value: .array(.u64([]))),
        ]
        let tensors = [GGUFTensorDescriptor(name: "x", type: .f32, ne: [3]), GGUFTensorDescriptor(name: "y", type: .q8_0, ne: [32, 2])]
        let layout = try GGUFLayout(metadata: metadata, tensors: tensors)
        #expect(layout.offsets == [0, 64] && layout.alignment == 64)
        let data: [[UInt8]] = [Array(0..<12), (0..<68).map { UInt8($0) }]
        let dir = TemporaryDirectory()
        let file = try GGUFFile(path: try write(layout, data: data, in: dir))
        #expect(file.metadata == metadata)
        #expect(file.version == 3 && file.alignment == 64)
        #expect(file.tensors.map(\.name) == ["x", "y"] && file.tensors.map(\.ne) == [[3], [32, 2]])
        for (i, t) in file.tensors.enumerated() { #expect(Array(try file.bytes(of: t)) == data[i]) }
    }

    @Test(
        "headers the container cannot hold are refused before anything is written",
        arguments: [
            ([GGUFKeyValue(key: "k", value: .u8(1)), GGUFKeyValue(key: "k", value: .u8(2))], [], "GGUF metadata key k is given twice (each key may appear once)"),
            ([GGUFKeyValue(key: "general.alignment", value: .u32(48))], [], "GGUF metadata key general.alignment: found u32 48, expected a u32 power of two"),
            ([GGUFKeyValue(key: "general.alignment", value: .u64(32))], [], "GGUF metadata key general.alignment: found u64 32, expected a u32 power of two"),
            ([], [GGUFTensorDescriptor(name: "t", type: .f32, ne: [1]), GGUFTensorDescriptor(name: "t", type: .f32, ne: [1])], "GGUF tensor t is planned twice (each name may appear once)"),
            ([], [GGUFTensorDescriptor(name: String(repeating: "n", count: 65), type: .f32, ne: [1])], "GGUF tensor \(String(repeating: "n", count: 65)): the name is 65 bytes, GGUF allows 64"),
            ([], [GGUFTensorDescriptor(name: "t", type: .q4_0, ne: [16, 2])], "GGUF tensor t: ne[0] = 16 is not a whole number of Q4_0 blocks of 32"),
            ([], [GGUFTensorDescriptor(name: "t", type: .f32, ne: [1, 1, 1, 1, 1])], "GGUF tensor t: ne [1, 1, 1, 1, 1]: GGUF holds 1 to 4 non-negative dimensions"),
            ([], [GGUFTensorDescriptor(name: "t", type: .f32, ne: [Int.max, 2])], "GGUF tensor t: ne [\(Int.max), 2] overflows the size arithmetic"),
        ] as [([GGUFKeyValue], [GGUFTensorDescriptor], String)])
    func refusals(_ metadata: [GGUFKeyValue], _ tensors: [GGUFTensorDescriptor], _ message: String) {
        do {
            _ = try GGUFLayout(metadata: metadata, tensors: tensors)
            Issue.record("accepted: \(message)")
        } catch {
            #expect(error.description == message)
        }
    }

    @Test("a writer dropped before commit leaves neither the file nor its temporary")
    func uncommitted() throws {
        let dir = TemporaryDirectory()
        do {
            let writer = try GGUFStreamWriter(path: dir.path + "/w.gguf", bufferBytes: 16)
            try writer.append(Array(repeating: 1, count: 100))
        }
        #expect(listing(dir.path).isEmpty)
    }
}

@Suite("convert --to gguf in a subprocess: a full disk, a kill")
struct GGUFProcessTests {
    @Test("a write that fails part-way (a file size limit, as a full disk) is reported by file and leaves nothing behind")
    func writeFails() throws {
        let executable = try #require(TestPaths.executable, "k2pack is not built (swift build)")
        let dir = TemporaryDirectory()
        let output = dir.path + "/out"
        // Every file this process writes is limited to 64 blocks; SIGXFSZ ignored, so the write fails with EFBIG.
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = [
            "-c", "trap '' XFSZ; ulimit -f 64 && exec \"$0\" convert \"$1\" \"$2\" --to gguf --no-tokenizer --quiet --split-max-size 100K",
            executable.path, TestPaths.fixture("k2-thinking-tiny"), output + "/k2.gguf",
        ]
        let err = Pipe()
        process.standardOutput = FileHandle.nullDevice
        process.standardError = err
        try process.run()
        let data = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let message = String(decoding: data, as: UTF8.self)
        #expect(process.terminationStatus == 1, "\(message)")
        #expect(message.contains("\(output)/k2-0000") && message.contains(".gguf: cannot write: File too large"), "\(message)")
        #expect(listing(output).isEmpty, "left \(listing(output))")
    }
}

extension GGUFProcessTests {
    @Test("killed part-way (SIGKILL in part 2), --resume keeps the finished part and gives the same files as an uninterrupted run")
    func killedThenResumed() throws {
        let executable = try #require(TestPaths.executable, "k2pack is not built (swift build)")
        let dir = TemporaryDirectory()
        let input = TestPaths.fixture("k2-thinking-tiny")
        let process = Process()
        process.executableURL = executable
        process.arguments = ["convert", input, dir.path + "/k2.gguf", "--to", "gguf", "--no-tokenizer", "--quiet", "--split-max-size", "80K"]
        process.environment = launcherFreeEnvironment(["K2PACK_TEST_KILL_AFTER_BYTES": "150000"])
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        #expect(process.terminationReason == .uncaughtSignal && process.terminationStatus == SIGKILL)
        let left = listing(dir.path)
        // The first part is whole (its name says how many parts there are); the last is not there yet.
        let first = left.first { $0.hasPrefix("k2-00001-of-") } ?? "none"
        let parts = String(first.dropFirst("k2-00001-of-".count).prefix(5))
        #expect(parts.count == 5 && parts != "00001" && left.contains(".k2.gguf.k2pack-resume.json") && !left.contains("k2-\(parts)-of-\(parts).gguf"), "\(left)")

        var options = GGUFConverter.Options(splitMaxBytes: 80_000, resume: true, requireTokenizer: false)
        let resumed = try GGUFConverter.convert(input: input, output: dir.path + "/k2.gguf", options: options)
        #expect(resumed.filesReused.first == dir.path + "/" + first)
        let fresh = TemporaryDirectory()
        options.resume = false
        let reference = try GGUFConverter.convert(input: input, output: fresh.path + "/k2.gguf", options: options)
        for (a, b) in zip(resumed.files, reference.files) {
            #expect(try Data(contentsOf: URL(fileURLWithPath: a)) == Data(contentsOf: URL(fileURLWithPath: b)), "\(a)")
        }
        #expect(!listing(dir.path).contains { $0.hasSuffix(".partial") })
    }
}

/// This process's environment without launcher variables that would change what a child k2pack does, plus `extra`.
func launcherFreeEnvironment(_ extra: [String: String]) -> [String: String] {
    var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("K2PACK_") && $0.key != "RANK" && $0.key != "WORLD_SIZE" && !$0.key.hasPrefix("SLURM_") }
    for (k, v) in extra { environment[k] = v }
    return environment
}
