import Foundation
import Inspection
import PackFormat
import Repack
import TestSupport
import Testing

@Suite("the compressed archive form (convert --compress)")
struct ArchiveTests {
    @Test("export(convert --compress(x)) is byte-identical to x, and the archive verifies", arguments: ["k25-tiny", "k2-thinking-tiny", "deepseek-v3-tiny"])
    func roundTrip(_ fixture: String) throws {
        let dir = TemporaryDirectory()
        let packed = dir.path + "/z", exported = dir.path + "/x"
        let report = try Converter.convert(input: TestPaths.fixture(fixture), output: packed, options: Converter.Options(compressionLevel: 3))
        #expect(report.files.allSatisfy { $0.hasSuffix(".k2z") })
        #expect(report.fileBytes > 0)
        for file in report.files {
            let pack = try PackFile(path: packed + "/" + file)
            #expect(pack.isArchive && pack.table.compression == "zstd")
            // Every source slice starts a frame: one expert can be read without the others.
            for t in pack.table.tensors { #expect((t.frames ?? []).count >= t.sources.count, "\(t.name)") }
        }
        #expect(try PackVerifier.verify(folder: packed).passed)
        _ = try Exporter.export(input: packed, output: exported)
        try expectIdenticalFolders(TestPaths.fixture(fixture), exported)
    }

    @Test("one expert's slice of a stack decodes alone and equals the uncompressed form")
    func oneSource() throws {
        let dir = TemporaryDirectory()
        _ = try Converter.convert(input: TestPaths.fixture("k25-tiny"), output: dir.path + "/p")
        _ = try Converter.convert(input: TestPaths.fixture("k25-tiny"), output: dir.path + "/z", options: Converter.Options(compressionLevel: 5))
        let plain = try PackFile(path: dir.path + "/p/layer-0001.k2p"), archive = try PackFile(path: dir.path + "/z/layer-0001.k2z")
        let name = "language_model.model.layers.1.mlp.experts.*.gate_proj.weight_packed"
        let a = try #require(plain.table.tensors.first { $0.name == name }), b = try #require(archive.table.tensors.first { $0.name == name })
        var fromPlain: [UInt8] = [], fromArchive: [UInt8] = []
        try plain.readSource(a, 6) { fromPlain += $0 }
        try archive.readSource(b, 6) { fromArchive += $0 }
        #expect(fromArchive == fromPlain && fromPlain.count == a.sources[6].length)
        #expect(try archive.checksum(of: b) == b.xxh64)
    }

    @Test("--resume keeps finished archive files")
    func resume() throws {
        let dir = TemporaryDirectory()
        let options = Converter.Options(resume: true, compressionLevel: 3)
        let first = try Converter.convert(input: TestPaths.fixture("k25-tiny"), output: dir.path + "/z", options: options)
        let before = try folderContents(dir.path + "/z")
        try FileManager.default.removeItem(atPath: dir.path + "/z/layer-0002.k2z")
        try FileManager.default.removeItem(atPath: dir.path + "/z/" + PackManifest.fileName)
        let second = try Converter.convert(input: TestPaths.fixture("k25-tiny"), output: dir.path + "/z", options: options)
        #expect(Set(second.filesReused) == Set(first.files).subtracting(["layer-0002.k2z"]))
        #expect(try folderContents(dir.path + "/z") == before)
    }

    @Test("a flipped byte in a frame names the file and tensor")
    func corruption() throws {
        let dir = TemporaryDirectory()
        let folder = dir.path + "/z"
        _ = try Converter.convert(input: TestPaths.fixture("k25-tiny"), output: folder, options: Converter.Options(compressionLevel: 3))
        let file = "layer-0002.k2z"
        let pack = try PackFile(path: folder + "/" + file)
        var rng = SeededGenerator(seed: 7)
        for _ in 0..<12 {
            let tensor = pack.table.tensors[Int(rng.next() % UInt64(pack.table.tensors.count))]
            let frame = try #require(tensor.frames?.first)
            let position = frame.offset + Int(rng.next() % UInt64(frame.length))
            let url = URL(fileURLWithPath: folder + "/" + file)
            var data = try Data(contentsOf: url)
            data[position] ^= 0x10
            try data.write(to: url)
            let report = try PackVerifier.verify(folder: folder)
            #expect(!report.passed)
            #expect(report.findings.first?.file == file && report.findings.first?.tensor == tensor.name, "byte \(position): \(report.findings.map(\.message))")
            data[position] ^= 0x10
            try data.write(to: url)
        }
    }

    /// Rewrites an archive's table (fixing its length, hash and the file length), for hostile-table tests.
    func rewriteTable(_ path: String, _ change: (inout PackTable) -> Void) throws {
        var data = try Data(contentsOf: URL(fileURLWithPath: path))
        func u64(_ at: Int) -> Int { Int(data[at..<(at + 8)].withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }) }
        let offset = u64(24), length = u64(32)
        var table = try JSONDecoder().decode(PackTable.self, from: data[offset..<(offset + length)])
        change(&table)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let bytes = [UInt8](try encoder.encode(table))
        data = data[0..<offset] + Data(bytes)
        func put(_ v: Int, _ at: Int) { withUnsafeBytes(of: UInt64(v).littleEndian) { data.replaceSubrange(at..<(at + 8), with: $0) } }
        put(bytes.count, 32)
        put(data.count, 48)
        withUnsafeBytes(of: bytes.withUnsafeBytes { XXHash64.hash($0) }.littleEndian) { data.replaceSubrange(56..<64, with: $0) }
        try data.write(to: URL(fileURLWithPath: path))
    }

    @Test("hostile archive tables are refused before any frame is read", arguments: [
        ("frame larger than 64 MiB", "implausibly sized"),
        ("frames overlap", "out of order, overlaps"),
        ("frames short of the tensor", "its frames hold"),
        ("frame crosses a source boundary", "do not end where source"),
        ("compression missing", "must say compression"),
    ])
    func hostileTables(_ change: String, _ message: String) throws {
        let dir = TemporaryDirectory()
        _ = try Converter.convert(input: TestPaths.fixture("k25-tiny"), output: dir.path + "/z", options: Converter.Options(compressionLevel: 3))
        let path = dir.path + "/z/layer-0001.k2z"
        try rewriteTable(path) { table in
            let i = table.tensors.firstIndex { $0.sources.count > 1 }!
            var frames = table.tensors[i].frames!
            switch change {
            case "frame larger than 64 MiB": frames[0].size = PackSpec.maxFrameSize + 1
            case "frames overlap": frames[1].offset = frames[0].offset
            case "frames short of the tensor": frames.removeLast()
            case "frame crosses a source boundary":
                frames[0].size += 1
                frames[1].size -= 1
            default: table.compression = nil
            }
            table.tensors[i].frames = frames
        }
        do {
            _ = try PackFile(path: path)
            Issue.record("\(change) was accepted")
        } catch {
            #expect("\(error)".contains(message), "\(change): \(error)")
        }
    }
}
