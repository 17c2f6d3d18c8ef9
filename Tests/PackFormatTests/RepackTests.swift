import Checkpoint
import Foundation
import Inspection
import PackFormat
import Repack
import TestSupport
import Testing

/// The first differing byte of two files, for a readable failure.
func firstDifference(_ a: Data, _ b: Data) -> String {
    if a.count != b.count { return "sizes \(a.count) vs \(b.count)" }
    let i = zip(a, b).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? -1
    return "first difference at byte \(i)"
}

/// Every file of `original` is in `copy`, byte for byte, and nothing else.
func expectIdenticalFolders(_ original: String, _ copy: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
    let a = try folderContents(original), b = try folderContents(copy)
    #expect(Set(b.keys) == Set(a.keys), sourceLocation: sourceLocation)
    for (name, bytes) in a {
        let other = try #require(b[name], "\(name) was not exported", sourceLocation: sourceLocation)
        #expect(other == bytes, "\(name): \(firstDifference(other, bytes))", sourceLocation: sourceLocation)
    }
}

@Suite("convert and export")
struct RepackTests {
    @Test("export(convert(x)) is byte-identical to x, every file", arguments: ["k25-tiny", "k2-thinking-tiny", "deepseek-v3-tiny", "malformed/base"])
    func roundTrip(_ fixture: String) throws {
        let dir = TemporaryDirectory()
        let packed = dir.path + "/packed"
        let exported = dir.path + "/exported"
        _ = try Converter.convert(input: TestPaths.fixture(fixture), output: packed)
        _ = try Exporter.export(input: packed, output: exported)
        try expectIdenticalFolders(TestPaths.fixture(fixture), exported)
    }

    @Test("routed experts are stacked expert-major, page-aligned, bit-exact")
    func stacks() throws {
        let dir = TemporaryDirectory()
        let report = try Converter.convert(input: TestPaths.fixture("k25-tiny"), output: dir.path + "/p")
        #expect(report.stackedTensors == 2 * 3 * 3)
        let pack = try PackFile(path: dir.path + "/p/layer-0002.k2p")
        let name = "language_model.model.layers.2.mlp.experts.*.down_proj.weight_scale"
        let stacked = try #require(pack.table.tensors.first { $0.name == name })
        #expect(stacked.shape == [8, 64, 1])
        #expect(stacked.dtype == .bf16)
        #expect(stacked.offset % PackSpec.alignment == 0)
        #expect(stacked.sources.map(\.name) == (0..<8).map { "language_model.model.layers.2.mlp.experts.\($0).down_proj.weight_scale" })
        // Expert 5's scale lives in another shard of the source: follow the index, copy bit for bit.
        #expect(stacked.sources[5].shard == "model-00002-of-000006.safetensors")
        let source = try CheckpointDirectory(path: TestPaths.fixture("k25-tiny"))
        var expected: [UInt8] = []
        for s in stacked.sources {
            let (shard, entry) = try #require(source.entry(named: s.name))
            expected += Array(try shard.bytes(of: entry))
        }
        #expect(try pack.contents(of: stacked) == expected)
        #expect(pack.verifyChecksums().isEmpty)
    }

    @Test("--resume after an interruption keeps finished files, redoes the rest, and gives identical output")
    func resume() throws {
        let dir = TemporaryDirectory()
        let reference = dir.path + "/reference"
        let interrupted = dir.path + "/interrupted"
        _ = try Converter.convert(input: TestPaths.fixture("k25-tiny"), output: reference)
        _ = try Converter.convert(input: TestPaths.fixture("k25-tiny"), output: interrupted)
        // What a kill leaves: no manifest, one file never renamed into place, one left as a partial temp file,
        // and (a flaky disk) one finished file with a corrupt byte.
        let fm = FileManager.default
        try fm.removeItem(atPath: interrupted + "/k2pack.json")
        try fm.moveItem(atPath: interrupted + "/layer-0001.k2p", toPath: interrupted + "/.layer-0001.k2p.partial")
        var bytes = try Data(contentsOf: URL(fileURLWithPath: interrupted + "/layer-0002.k2p"))
        bytes[bytes.count - 100] ^= 0xFF
        try bytes.write(to: URL(fileURLWithPath: interrupted + "/layer-0002.k2p"))
        #expect(throws: PackError.outputExists(path: interrupted, resumable: true)) {
            _ = try Converter.convert(input: TestPaths.fixture("k25-tiny"), output: interrupted)
        }
        let report = try Converter.convert(input: TestPaths.fixture("k25-tiny"), output: interrupted, options: .init(resume: true))
        #expect(Set(report.filesReused) == ["globals.k2p", "layer-0000.k2p"])
        let a = try folderContents(reference)
        let b = try folderContents(interrupted)
        #expect(Set(a.keys) == Set(b.keys), "\(Set(b.keys).symmetricDifference(a.keys))")
        for (name, data) in a { #expect(b[name] == data, "\(name)") }
    }

    @Test("convert refuses a structurally broken checkpoint, naming the first problem, and writes nothing")
    func refusesBadInput() throws {
        let dir = TemporaryDirectory()
        do {
            _ = try Converter.convert(input: TestPaths.fixture("malformed/wrong_shape"), output: dir.path + "/out")
            Issue.record("converted a checkpoint whose shapes contradict its config")
        } catch let error as PackError {
            #expect(error.description.contains("has 1 problem (run `k2pack verify`); first: model-00001-of-00002.safetensors: tensor 'model.layers.0.self_attn.q_b_proj.weight': shape [33, 32]"), "\(error)")
        }
        #expect(!FileManager.default.fileExists(atPath: dir.path + "/out"))
    }

    @Test("values are copied, not judged: a NaN scale converts bit for bit (verify is the check)")
    func valuesKept() throws {
        let dir = TemporaryDirectory()
        _ = try Converter.convert(input: TestPaths.fixture("malformed/nan_scale"), output: dir.path + "/p")
        _ = try Exporter.export(input: dir.path + "/p", output: dir.path + "/x")
        let a = try folderContents(TestPaths.fixture("malformed/nan_scale"))
        let b = try folderContents(dir.path + "/x")
        for (name, data) in a { #expect(b[name] == data, "\(name)") }
    }
}

@Suite("k2pack file validation")
struct PackFileTests {
    func converted() throws -> (TemporaryDirectory, String) {
        let dir = TemporaryDirectory()
        _ = try Converter.convert(input: TestPaths.fixture("k2-thinking-tiny"), output: dir.path + "/p")
        return (dir, dir.path + "/p/layer-0001.k2p")
    }

    func expectPackError(_ path: String, _ check: (PackError) -> Bool, sourceLocation: SourceLocation = #_sourceLocation) {
        do {
            _ = try PackFile(path: path, name: "f.k2p")
            Issue.record("opened a broken file", sourceLocation: sourceLocation)
        } catch {
            #expect(check(error), "\(error)", sourceLocation: sourceLocation)
        }
    }

    @Test("wrong magic, newer version, truncation and a corrupt table are refused")
    func headerErrors() throws {
        let (dir, path) = try converted()
        let original = try Data(contentsOf: URL(fileURLWithPath: path))
        func variant(_ name: String, _ change: (inout Data) -> Void) throws -> String {
            var d = original
            change(&d)
            let p = dir.path + "/" + name
            try d.write(to: URL(fileURLWithPath: p))
            return p
        }
        expectPackError(try variant("magic", { $0[0] = UInt8(ascii: "X") })) { $0 == .notPack(file: "f.k2p", reason: "wrong magic bytes") }
        expectPackError(try variant("version", { $0[8] = 2 })) { $0 == .unsupportedVersion(file: "f.k2p", version: 2) }
        expectPackError(try variant("short", { $0.removeLast(10) })) {
            if case .headerInvalid(_, let reason) = $0 { return reason.contains("truncated or extended") }
            return false
        }
        expectPackError(try variant("table", { $0[PackSpec.alignment + 3] ^= 1 })) {
            if case .tableChecksum = $0 { return $0.description.contains("tensor table is corrupt") }
            return false
        }
        expectPackError(try variant("tiny", { $0 = $0.prefix(10) })) { $0 == .notPack(file: "f.k2p", reason: "10 bytes is shorter than the 64-byte header") }
    }

    @Test("undefined flags are refused, naming the flags, in both forms (the Python reader refuses the same)")
    func undefinedFlags() throws {
        let (dir, path) = try converted()
        _ = try Converter.convert(input: TestPaths.fixture("k2-thinking-tiny"), output: dir.path + "/z", options: Converter.Options(compressionLevel: 3))
        for (source, label) in [(path, "k2p"), (dir.path + "/z/layer-0001.k2z", "k2z")] {
            let original = try Data(contentsOf: URL(fileURLWithPath: source))
            for (value, text) in [(UInt32(4), "0x4"), (UInt32(0x8000), "0x8000"), (UInt32(0x8000_0000), "0x80000000")] {
                var d = original
                withUnsafeBytes(of: value.littleEndian) { d.replaceSubrange(12..<16, with: $0) }
                let p = dir.path + "/flags-\(label)-\(value)"
                try d.write(to: URL(fileURLWithPath: p))
                expectPackError(p) {
                    $0 == .headerInvalid(file: "f.k2p", reason: "flags \(text) are not defined in version 1 (this build knows 0x3 (sliced sources, archive)): written by a newer or different tool")
                }
            }
        }
    }

    @Test("a table offset or length that would overflow is refused, not trapped")
    func overflowingTablePosition() throws {
        let (dir, path) = try converted()
        let original = try Data(contentsOf: URL(fileURLWithPath: path))
        func put(_ value: UInt64, at offset: Int, in d: inout Data) {
            withUnsafeBytes(of: value.littleEndian) { d.replaceSubrange(offset..<(offset + 8), with: $0) }
        }
        for (field, value) in [(24, UInt64.max - 15), (24, UInt64.max), (24, UInt64(1) << 63), (32, UInt64.max)] {
            var d = original
            put(value, at: field, in: &d)
            let p = dir.path + "/overflow-\(field)-\(value)"
            try d.write(to: URL(fileURLWithPath: p))
            expectPackError(p) {
                guard case .headerInvalid(let file, let reason) = $0 else { return false }
                return file == "f.k2p" && reason.contains("do not fit a \(original.count)-byte file") && reason.contains("\(value)")
            }
        }
    }

    @Test("a flipped byte in tensor data is named by its checksum")
    func dataCorruption() throws {
        let (folder, path) = try converted()
        defer { withExtendedLifetime(folder) {} }
        let pack = try PackFile(path: path)
        let victim = pack.table.tensors[pack.table.tensors.count / 2]
        var data = try Data(contentsOf: URL(fileURLWithPath: path))
        data[victim.offset + victim.length / 2] ^= 0x01
        try data.write(to: URL(fileURLWithPath: path))
        let errors = try PackFile(path: path).verifyChecksums()
        #expect(errors.count == 1)
        if case .checksumMismatch(_, let tensor, _, _)? = errors.first { #expect(tensor == victim.name) } else { Issue.record("\(errors)") }
    }
}

@Suite("verify on k2pack folders")
struct PackVerifyTests {
    @Test("a clean conversion verifies")
    func clean() throws {
        let dir = TemporaryDirectory()
        _ = try Converter.convert(input: TestPaths.fixture("k25-tiny"), output: dir.path + "/p")
        let report = try PackVerifier.verify(folder: dir.path + "/p")
        #expect(report.passed, "\(report.findings.map(\.message))")
        #expect(report.tensorCount == 96)
        #expect(report.format == "k2pack")
    }

    @Test("one flipped bit anywhere in tensor data names that file and tensor (40 seeded positions)")
    func bitFlips() throws {
        let dir = TemporaryDirectory()
        let folder = dir.path + "/p"
        _ = try Converter.convert(input: TestPaths.fixture("k25-tiny"), output: folder)
        var targets: [(file: String, tensor: PackTensor)] = []
        for file in try PackManifest.read(folder: folder).files {
            for t in try PackFile(path: folder + "/" + file).table.tensors where t.length > 0 { targets.append((file, t)) }
        }
        var rng = SeededGenerator(seed: 2026)
        for _ in 0..<40 {
            let (file, tensor) = targets[Int(rng.next() % UInt64(targets.count))]
            let position = tensor.offset + Int(rng.next() % UInt64(tensor.length))
            let bit = UInt8(1) << UInt8(rng.next() % 8)
            let url = URL(fileURLWithPath: folder + "/" + file)
            var data = try Data(contentsOf: url)
            data[position] ^= bit
            try data.write(to: url)
            let report = try PackVerifier.verify(folder: folder)
            #expect(report.findings.count == 1)
            #expect(report.findings.first?.file == file && report.findings.first?.tensor == tensor.name, "byte \(position) of \(file): \(report.findings.map(\.message))")
            data[position] ^= bit
            try data.write(to: url)
        }
        #expect(try PackVerifier.verify(folder: folder).passed)
    }

    @Test("a stored tensor missing from the source records is reported")
    func coverage() throws {
        let dir = TemporaryDirectory()
        let folder = dir.path + "/p"
        _ = try Converter.convert(input: TestPaths.fixture("deepseek-v3-tiny"), output: folder)
        try FileManager.default.removeItem(atPath: folder + "/source/model.safetensors.header")
        let report = try PackVerifier.verify(folder: folder)
        #expect(report.findings.contains { $0.code == "pack_source_mismatch" && $0.message.contains("source header kept for export is missing") })
    }
}
