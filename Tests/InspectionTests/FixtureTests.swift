import Checkpoint
import FileIO
import Foundation
import Inspection
import LoadedModel
import TestSupport
import Testing

@Suite("inspect and verify on the shipped fixtures")
struct FixtureTests {
    @Test("inspect agrees with the generator's record of counts, parameters and bytes", arguments: ["k25-tiny", "k2-thinking-tiny", "deepseek-v3-tiny", "malformed/base"])
    func inspectMatchesRecord(_ name: String) throws {
        let record = try FixtureRecord.load(name)
        let report = InspectReport(try LoadedCheckpoint(path: TestPaths.fixture(name)))
        #expect(report.architecture == record.architecture)
        #expect(report.tensorCount == record.tensorCount)
        #expect(report.shardCount == record.shardCount)
        #expect(report.totalBytes == record.totalBytes)
        #expect(report.totalParameters == record.totalParams)
        #expect(report.model?.layers == record.numLayers)
        #expect(report.model?.denseLayers == record.numDenseLayers)
        #expect(report.model?.moeLayers == record.numMoeLayers)
        #expect(report.model?.routedExperts == record.numRoutedExperts)
        #expect((report.quantization?.modules ?? 0) == record.quantizedModules)
        let params = Dictionary(uniqueKeysWithValues: report.roles.map { ($0.role, $0.parameters) })
        let bytes = Dictionary(uniqueKeysWithValues: report.roles.map { ($0.role, $0.bytes) })
        #expect(params == record.paramsByRole)
        #expect(bytes == record.bytesByRole)
        #expect(report.findings.isEmpty, "\(report.findings)")
    }

    @Test("verify passes every good fixture and reads every byte", arguments: goodFixtures)
    func verifyPasses(_ name: String) throws {
        let report = try Verifier.verify(path: TestPaths.fixture(name))
        #expect(report.passed, "\(report.findings.map(\.message))")
        let sizes = try FileManager.default.contentsOfDirectory(atPath: TestPaths.fixture(name))
            .filter { $0.hasSuffix(".safetensors") }
            .map { try FileManager.default.attributesOfItem(atPath: TestPaths.fixture(name) + "/" + $0)[.size] as! Int }
        #expect(report.bytesScanned == sizes.reduce(0, +))
    }

    @Test("INT4 statistics: the one all-zero group of k25-tiny is found")
    func int4Stats() throws {
        let report = try Verifier.verify(path: TestPaths.fixture("k25-tiny"))
        let q = try #require(report.int4)
        #expect(q.modules == 48)
        #expect(q.zeroGroups == 1)
        // 2 MoE layers × 8 experts × (2 × 32 rows × 2 groups + 64 rows × 1 group)
        let groups: Int = 2 * 8 * (2 * 32 * 2 + 64)
        #expect(q.groups == groups)
        let codes: Int = groups * 32
        #expect(q.codeHistogram.reduce(0, +) == codes)
    }

    @Test("the fixture files match Fixtures/SHA256SUMS")
    func fixtureChecksums() throws {
        let text = try String(contentsOf: TestPaths.fixtures.appendingPathComponent("SHA256SUMS"), encoding: .utf8)
        var checked = 0
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ", maxSplits: 1)
            let name = String(parts[1].trimmingCharacters(in: .whitespaces).drop { $0 == "*" })
            #expect(try ReadOnlyFile(path: TestPaths.fixture(name)).sha256Hex() == String(parts[0]), "\(name)")
            checked += 1
        }
        #expect(checked > 100)
    }
}

/// The finding code each malformed case must produce (the generator names the case; k2pack names the kind).
let expectedCodes: [String: String] = [
    "truncated_shard": "truncated", "header_length_past_eof": "header_past_end", "lfs_pointer": "lfs_pointer",
    "header_too_large": "header_too_large", "bad_header_json": "header_json", "header_invalid_utf8": "header_json",
    "unknown_dtype": "unknown_dtype", "duplicate_key": "duplicate_key", "overlapping_offsets": "bad_offsets",
    "offset_gap": "bad_offsets", "size_mismatch": "size_mismatch", "trailing_bytes": "trailing_bytes",
    "metadata_not_string": "metadata_not_string", "nan_scale": "scale_not_finite", "inf_scale": "scale_not_finite",
    "zero_scale": "scale_not_positive", "negative_scale": "scale_not_positive", "wrong_weight_shape": "wrong_weight_shape",
    "weight_shape_dtype": "wrong_dtype", "missing_expert": "missing_tensor", "missing_tensor": "missing_tensor",
    "unexpected_tensor": "unexpected_tensor", "wrong_shape": "wrong_shape", "wrong_dtype": "wrong_dtype",
    "index_missing_shard": "shard_missing", "index_wrong_shard": "index_tensor_not_in_shard",
    "shard_tensor_not_in_index": "shard_tensor_not_in_index", "config_missing_key": "config", "config_bad_json": "config",
]

@Suite("the malformed corpus")
struct MalformedTests {
    @Test("the corpus is complete: every case has an expected kind")
    func corpus() {
        let cases = MalformedCase.all()
        #expect(cases.count == expectedCodes.count)
        #expect(Set(cases.map(\.case)) == Set(expectedCodes.keys))
    }

    @Test("verify fails each case with a message naming the culprit file and tensor", arguments: MalformedCase.all().map(\.case))
    func fails(_ name: String) throws {
        let c = try #require(MalformedCase.all().first { $0.case == name })
        let report = try Verifier.verify(path: c.path)
        #expect(!report.passed)
        let errors = report.findings.filter { $0.severity == .error }
        let code = try #require(expectedCodes[name])
        let matching = errors.filter { $0.code == code }
        #expect(!matching.isEmpty, "expected a \(code) finding, got \(errors.map(\.code))")
        for f in matching {
            if let file = c.culpritFile { #expect(f.message.contains(file), "\(f.message)") }
            if let tensor = c.culpritTensor { #expect(f.message.contains(tensor), "\(f.message)") }
        }
        // Only the defect is reported: no unrelated findings.
        #expect(errors.allSatisfy { $0.code == code }, "\(errors.map(\.message))")
    }
}

@Suite("SHA-256 lists")
struct ChecksumTests {
    /// A sha256sum list for one fixture, taken from Fixtures/SHA256SUMS.
    func list(for fixture: String) throws -> ChecksumList {
        let text = try String(contentsOf: TestPaths.fixtures.appendingPathComponent("SHA256SUMS"), encoding: .utf8)
        let lines = text.split(separator: "\n").filter { $0.contains("  \(fixture)/") }
        return try ChecksumList.parse(lines.joined(separator: "\n"), fileName: "list")
    }

    @Test("a clean checkpoint matches its list")
    func clean() throws {
        let report = try Verifier.verify(path: TestPaths.fixture("k25-tiny"), options: VerifyOptions(checksums: try list(for: "k25-tiny")))
        #expect(report.passed, "\(report.findings)")
        // 6 shards, config.json, the index, the 16 other top-level files and the two in docs/ and figures/ (the list's
        // lines all start "k25-tiny/": each is matched to the checkpoint path after that common prefix).
        #expect(report.checksums?.checked == 26)
        #expect(report.findings.isEmpty, "\(report.findings.map(\.message))")
        #expect(report.checksums?.mismatched == 0)
    }

    @Test("one flipped bit anywhere in a shard's data names that shard (24 seeded positions)")
    func bitFlip() throws {
        let dir = TemporaryDirectory()
        let copy = dir.copy(fixture: "k25-tiny")
        let list = try list(for: "k25-tiny")
        let shards = try FileManager.default.contentsOfDirectory(atPath: copy).filter { $0.hasSuffix(".safetensors") }.sorted()
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        func next() -> Int {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int(truncatingIfNeeded: state >> 33)
        }
        for _ in 0..<24 {
            let shard = shards[next() % shards.count]
            let url = URL(fileURLWithPath: copy + "/" + shard)
            var bytes = try Array(Data(contentsOf: url))
            let dataStart = 8 + Int(bytes[0..<8].withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) })
            let position = dataStart + next() % (bytes.count - dataStart)
            let bit = UInt8(1) << UInt8(next() % 8)
            bytes[position] ^= bit
            try Data(bytes).write(to: url)
            let report = try Verifier.verify(path: copy, options: VerifyOptions(checksums: list))
            let mismatches = report.findings.filter { $0.code == "checksum_mismatch" }
            #expect(mismatches.count == 1 && mismatches.first?.file == shard, "byte \(position) of \(shard): \(mismatches.map(\.message))")
            #expect(mismatches.first?.message.contains("SHA-256 mismatch") ?? false)
            bytes[position] ^= bit
            try Data(bytes).write(to: url)
        }
        #expect(try Verifier.verify(path: copy, options: VerifyOptions(checksums: list)).passed)
    }

    @Test("malformed lists are refused with the line number")
    func malformedList() {
        #expect(throws: CheckpointError.checksumListMalformed(file: "l", line: 2, reason: "'xyz' is not a 64-digit SHA-256")) {
            _ = try ChecksumList.parse("\(String(repeating: "a", count: 64))  f\nxyz  g\n", fileName: "l")
        }
        #expect(throws: CheckpointError.checksumListMalformed(file: "l", line: 1, reason: "expected '<sha256>  <file>'")) {
            _ = try ChecksumList.parse("justonefield\n", fileName: "l")
        }
        let a = String(repeating: "a", count: 64), b = String(repeating: "b", count: 64)
        // Each malformed line is named by its number, CRLF or not.
        let cases: [(String, Int, String)] = [
            ("\(a)  f\r\nxyz  g\r\n", 2, "'xyz' is not a 64-digit SHA-256"),
            ("# comment\r\n\r\n\(a)  \r\n", 3, "missing file name"),
            ("\(a)  f\n\(b)  ./f\n", 2, "'f' is listed twice with different digests (first on line 1)"),
            ("\(a)  f\n\(a.dropLast())g  h\n", 2, "'\(a.dropLast())g' is not a 64-digit SHA-256"),
            ("\(a)  \u{1B}[2J\n\(a)\u{1B}  x\n", 2, "'\(a)\\x1B' is not a 64-digit SHA-256"),
            ("\\\(a)  bad\\q\n", 1, "bad escape in the file name (only \\\\ and \\n are allowed)"),
            ("\(a)  dir/..\n", 1, "'dir/..' names no file"),
            ("", 1, "the list has no entries: it would check nothing"),
            ("# only a comment\r\n\r\n", 3, "the list has no entries: it would check nothing"),
        ]
        for (text, line, reason) in cases {
            #expect(throws: CheckpointError.checksumListMalformed(file: "l", line: line, reason: reason), "\(text.debugDescription)") {
                _ = try ChecksumList.parse(text, fileName: "l")
            }
        }
        #expect(throws: CheckpointError.checksumListMalformed(file: "l", line: 1, reason: "the file name is not valid UTF-8")) {
            _ = try ChecksumList.parse(bytes: Array("\(a)  ".utf8) + [0xFF, 0xFE, 0x0A], fileName: "l")
        }
    }

    @Test("CRLF, binary-mode, escaped and prefixed lines are read as sha256sum writes them")
    func listForms() throws {
        let a = String(repeating: "a", count: 64), b = String(repeating: "B", count: 64)
        let list = try ChecksumList.parse("\(a)  one.safetensors\r\n\(b) *./model/two.safetensors\r\n\\\(a)  back\\\\slash\r\n\(a)  one.safetensors\n", fileName: "l")
        #expect(list.digests.count == 3)
        #expect(list.digest(for: "one.safetensors") == a)
        #expect(list.digest(for: "two.safetensors") == b.lowercased())
        #expect(list.digest(for: "back\\slash") == a)
        // Names equal under canonical equivalence are different files: NFC and NFD "é" are two entries.
        let both = try ChecksumList.parse("\(a)  caf\u{E9}\n\(b)  cafe\u{301}\n", fileName: "l")
        #expect(both.digests.count == 2)
        #expect(both.digest(for: "caf\u{E9}") == a)
        #expect(both.digest(for: "cafe\u{301}") == b.lowercased())
    }

    @Test("a list that does not cover every shard fails, naming each shard it misses")
    func coverage() throws {
        let text = try String(contentsOf: TestPaths.fixtures.appendingPathComponent("SHA256SUMS"), encoding: .utf8)
        let lines = text.split(separator: "\n").filter { $0.contains("  k25-tiny/") }
        // CRLF: every line still checked.
        let crlf = try ChecksumList.parse(lines.joined(separator: "\r\n") + "\r\n", fileName: "list")
        let clean = try Verifier.verify(path: TestPaths.fixture("k25-tiny"), options: VerifyOptions(checksums: crlf))
        #expect(clean.passed, "\(clean.findings.map(\.message))")
        #expect(clean.checksums?.checked == 26)  // as in `clean`: files in sub-folders are checked too
        // One shard left out, then a list for other files only: each uncovered shard is an error.
        let dropped = lines.filter { !$0.hasSuffix("model-00002-of-000006.safetensors") }
        for listed in [dropped, lines.filter { !$0.contains(".safetensors") }, ["\(String(repeating: "0", count: 64))  other.bin"]] {
            let list = try ChecksumList.parse(listed.joined(separator: "\n"), fileName: "list")
            let report = try Verifier.verify(path: TestPaths.fixture("k25-tiny"), options: VerifyOptions(checksums: list))
            #expect(!report.passed)
            let uncovered = report.findings.filter { $0.code == "checksum_not_listed" }
            #expect(uncovered.allSatisfy { $0.severity == .error })
            #expect(uncovered.count == (listed.count == dropped.count ? 1 : 6), "\(uncovered.map(\.message))")
            for f in uncovered {
                #expect(f.message == "\(f.file ?? ""): no SHA-256 listed for this shard: the list does not cover the checkpoint (a list for another version, or an incomplete one?)")
            }
        }
    }
}
