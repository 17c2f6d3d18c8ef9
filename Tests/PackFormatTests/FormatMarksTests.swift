import Checkpoint
import Foundation
import PackFormat
import Repack
import TensorCore
import TestSupport
import Testing

/// Issue 14, item 3: what a file's bytes mean is marked in its header (flags), and every table and folder record
/// is decoded strictly (unknown keys, duplicate keys and wrong types refused, naming the key).
@Suite("k2pack format: header flags and strict tables")
struct FormatMarksTests {
    static func u32(_ data: Data, _ at: Int) -> UInt32 { data[at..<(at + 4)].withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(as: UInt32.self)) } }
    static func u64(_ data: Data, _ at: Int) -> Int { Int(data[at..<(at + 8)].withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }) }

    static func setFlags(_ value: UInt32, in path: String) throws {
        var data = try Data(contentsOf: URL(fileURLWithPath: path))
        withUnsafeBytes(of: value.littleEndian) { data.replaceSubrange(12..<16, with: $0) }
        try data.write(to: URL(fileURLWithPath: path))
    }

    /// Rewrites the table text of a `.k2p` file (it must still fit before the data), fixing its length and hash.
    static func editTable(_ path: String, _ change: (String) -> String) throws {
        var data = try Data(contentsOf: URL(fileURLWithPath: path))
        let offset = u64(data, 24), length = u64(data, 32), dataOffset = u64(data, 40)
        let text = String(decoding: data[offset..<(offset + length)], as: UTF8.self)
        let edited = change(text)
        try #require(edited != text, "the edit changed nothing")
        let bytes = Array(edited.utf8)
        try #require(offset + bytes.count <= dataOffset)
        data.replaceSubrange(offset..<dataOffset, with: bytes + [UInt8](repeating: 0, count: dataOffset - offset - bytes.count))
        withUnsafeBytes(of: UInt64(bytes.count).littleEndian) { data.replaceSubrange(32..<40, with: $0) }
        withUnsafeBytes(of: bytes.withUnsafeBytes { XXHash64.hash($0) }.littleEndian) { data.replaceSubrange(56..<64, with: $0) }
        try data.write(to: URL(fileURLWithPath: path))
    }

    /// A one-tensor `.k2p` whose source is the second row of a 2 × 4 BF16 tensor (a rank's block).
    static func slicedFile(in dir: TemporaryDirectory) throws -> String {
        let source = [UInt8](0..<16)
        let slice = PackSlice(dimension: 0, start: 1, end: 2, runs: 1, stride: 8)
        let planned = PlannedTensor(
            name: "w", dtype: .bf16, shape: [1, 4], sources: [PackSource(name: "w", shard: "s.safetensors", offset: 8, length: 8, slice: slice)])
        let path = dir.path + "/sliced.k2p"
        _ = try source.withUnsafeBytes { raw in
            try PackWriter.write(path: path, tensors: [planned], read: { s in UnsafeRawBufferPointer(rebasing: raw[s.offset..<(s.offset + s.length)]) })
        }
        return path
    }

    func refusal(_ path: String) -> PackError? {
        do {
            _ = try PackFile(path: path, name: "f.k2p")
            return nil
        } catch { return error }
    }

    @Test("writers mark sliced sources (0x1) and the archive form (0x2); a whole-tensor .k2p keeps flags 0")
    func writtenFlags() throws {
        let dir = TemporaryDirectory()
        _ = try Converter.convert(input: TestPaths.fixture("k2-thinking-tiny"), output: dir.path + "/p")
        _ = try Converter.convert(input: TestPaths.fixture("k2-thinking-tiny"), output: dir.path + "/z", options: Converter.Options(compressionLevel: 3))
        #expect(Self.u32(try Data(contentsOf: URL(fileURLWithPath: dir.path + "/p/layer-0001.k2p")), 12) == 0)
        #expect(Self.u32(try Data(contentsOf: URL(fileURLWithPath: dir.path + "/z/layer-0001.k2z")), 12) == PackFlags.archive.rawValue)
        let sliced = try Self.slicedFile(in: dir)
        #expect(Self.u32(try Data(contentsOf: URL(fileURLWithPath: sliced)), 12) == PackFlags.slicedSources.rawValue)
        let file = try PackFile(path: sliced)
        #expect(try file.contents(of: file.table.tensors[0]) == [8, 9, 10, 11, 12, 13, 14, 15])
    }

    @Test("files written before the flags existed (flags 0) are still read: the magic and the table say the same")
    func unmarkedOlderFilesRead() throws {
        let dir = TemporaryDirectory()
        _ = try Converter.convert(input: TestPaths.fixture("k2-thinking-tiny"), output: dir.path + "/z", options: Converter.Options(compressionLevel: 3))
        let archive = dir.path + "/z/layer-0001.k2z"
        try Self.setFlags(0, in: archive)
        #expect(try PackFile(path: archive).verifyChecksums().isEmpty)
        let sliced = try Self.slicedFile(in: dir)
        try Self.setFlags(0, in: sliced)
        #expect(try PackFile(path: sliced).table.tensors[0].sources[0].slice?.start == 1)
    }

    @Test("a flag that does not describe the file is refused by name")
    func lyingFlags() throws {
        let dir = TemporaryDirectory()
        _ = try Converter.convert(input: TestPaths.fixture("k2-thinking-tiny"), output: dir.path + "/p")
        let path = dir.path + "/p/layer-0001.k2p"
        try Self.setFlags(PackFlags.archive.rawValue, in: path)
        #expect(refusal(path) == .headerInvalid(file: "f.k2p", reason: "flags 0x2 (archive) mark an archive, but the magic is K2PACK, not K2PACKZ"))
        try Self.setFlags(PackFlags.slicedSources.rawValue, in: path)
        #expect(refusal(path) == .tableInvalid(file: "f.k2p", reason: "the header's flags 0x1 (sliced sources) mark sliced sources, but no source has a slice"))
    }

    @Test("an older or newer file version is refused by name")
    func otherFileVersions() throws {
        let dir = TemporaryDirectory()
        _ = try Converter.convert(input: TestPaths.fixture("k2-thinking-tiny"), output: dir.path + "/p")
        let path = dir.path + "/p/layer-0001.k2p"
        for version in [UInt32(0), 2] {
            var data = try Data(contentsOf: URL(fileURLWithPath: path))
            withUnsafeBytes(of: version.littleEndian) { data.replaceSubrange(8..<12, with: $0) }
            let p = dir.path + "/v\(version).k2p"
            try data.write(to: URL(fileURLWithPath: p))
            let error = refusal(p)
            #expect(error == .unsupportedVersion(file: "f.k2p", version: version))
            #expect(error?.description == "f.k2p: k2pack format version \(version) is not supported (this build reads version 1)")
        }
    }

    @Test(
        "a .k2p table with an unknown key, a duplicate key or a wrong type is refused, naming the key",
        arguments: [
            ("^\\{\"alignment\"", "{\"extra\":1,\"alignment\"", "unknown key \"extra\""),
            ("^\\{\"alignment\":4096,", "{\"alignment\":4096,\"alignment\":4096,", "invalid JSON at byte 18: duplicate key \"alignment\""),
            ("\"shard\":\"[^\"]*\"", "\"shard\":1", "key \"tensors[0].sources[0].shard\": expected a string, found a number"),
            ("\"xxh64\":\"[0-9a-f]*\"", "\"xxh64\":null", "key \"tensors[0].xxh64\": expected a string, found null"),
            ("\"sources\":\\[\\{", "\"sources\":[{\"size\":1,", "key \"tensors[0].sources[0]\": unknown key \"size\""),
            ("\"alignment\":4096", "\"alignment\":4096.0", "key \"alignment\": 4096.0 is not an integer in the range of Int"),
        ])
    func strictTable(_ find: String, _ replace: String, _ reason: String) throws {
        let dir = TemporaryDirectory()
        _ = try Converter.convert(input: TestPaths.fixture("k2-thinking-tiny"), output: dir.path + "/p")
        let path = dir.path + "/p/layer-0001.k2p"
        try Self.editTable(path) { text in
            guard let range = text.range(of: find, options: .regularExpression) else { return text }
            return text.replacingCharacters(in: range, with: replace)
        }
        #expect(refusal(path) == .tableInvalid(file: "f.k2p", reason: reason))
    }

    @Test(
        "k2pack.json with an unknown key, a duplicate key or a wrong type is refused, naming the key",
        arguments: [
            ("\"format\"", "\"formats\" : 1, \"format\"", "not a valid k2pack.json: unknown key \"formats\""),
            ("\"format\"", "\"format\" : \"k2pack\", \"format\"", "duplicate key \"format\""),
            ("\"source_index\" : (true|false)", "\"source_index\" : \"yes\"", "not a valid k2pack.json: key \"source_index\": expected a boolean, found a string"),
            ("\"path\" : ", "\"mode\" : 1, \"path\" : ", "not a valid k2pack.json: key \"carried[0]\": unknown key \"mode\""),
        ])
    func strictFolderRecord(_ find: String, _ replace: String, _ reason: String) throws {
        let dir = TemporaryDirectory()
        _ = try Converter.convert(input: TestPaths.fixture("k25-tiny"), output: dir.path + "/p")
        let record = dir.path + "/p/k2pack.json"
        let text = try String(contentsOfFile: record, encoding: .utf8)
        let range = try #require(text.range(of: find, options: .regularExpression), "\(find) not in \(text)")
        try text.replacingCharacters(in: range, with: replace).write(toFile: record, atomically: false, encoding: .utf8)
        do {
            _ = try PackManifest.read(folder: dir.path + "/p")
            Issue.record("read a record with \(replace)")
        } catch let error as PackError {
            guard case let .notPack(file, message) = error else { Issue.record("\(error)"); return }
            #expect(file == record)
            #expect(message.contains(reason), "\(message)")
        }
    }

    @Test("an older or newer folder record version is refused by name")
    func otherRecordVersions() throws {
        let dir = TemporaryDirectory()
        _ = try Converter.convert(input: TestPaths.fixture("deepseek-v3-tiny"), output: dir.path + "/p")
        let record = dir.path + "/p/k2pack.json"
        let text = try String(contentsOfFile: record, encoding: .utf8)
        for version in [0, 3] {
            let edited = text.replacingOccurrences(of: #""version" : [0-9]+"#, with: "\"version\" : \(version)", options: .regularExpression)
            try #require(edited != text)
            try edited.write(toFile: record, atomically: false, encoding: .utf8)
            #expect(throws: PackError.notPack(file: record, reason: "folder record version \(version) is not supported (this build reads versions 1 to 2)")) {
                _ = try PackManifest.read(folder: dir.path + "/p")
            }
        }
    }
}
