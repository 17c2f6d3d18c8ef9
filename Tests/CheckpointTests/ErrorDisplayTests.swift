import Checkpoint
import JSONCore
import TensorCore
import TestSupport
import Testing

/// Every CheckpointError case shows each outside string (file, tensor, shard, key, dtype, digest) through
/// `displayed(_:)`: escaped, never raw, long ones shortened; reasons escaped but kept whole.
@Suite struct CheckpointErrorDisplayTests {
    static let h = "a\u{1B}[2J\nOK: b\u{202E}"
    static let e = "a\\x1B[2J\\nOK: b\\u{202E}"

    /// Each case with the number of hostile strings it carries.
    static let cases: [(CheckpointError, Int)] = [
        (.io(path: h, operation: "open", reason: h), 2),
        (.notACheckpoint(path: h, reason: h), 2),
        (.fileTooShort(file: h, byteCount: 3), 1),
        (.lfsPointer(file: h), 1),
        (.headerTooLarge(file: h, headerLength: 1 << 40, fileLength: 10), 1),
        (.headerPastEnd(file: h, headerLength: 100, fileLength: 10), 1),
        (.headerJSON(file: h, error: JSONError(offset: 3, reason: "duplicate key \"\(displayed(h))\"")), 2),
        (.headerJSON(file: h, error: JSONError(offset: 3, reason: h)), 2),
        (.headerMalformed(file: h, reason: h), 2),
        (.duplicateKey(file: h, tensor: h, offset: 9), 2),
        (.tensorEntryMalformed(file: h, tensor: h, reason: h), 3),
        (.unknownDType(file: h, tensor: h, dtype: h), 3),
        (.metadataNotString(file: h, key: h), 2),
        (.shapeOverflow(file: h, tensor: h, shape: [1 << 62, 8]), 2),
        (.misalignedSlice(file: h, tensor: h, shape: [3], dtype: .f4), 2),
        (.offsetsReversed(file: h, tensor: h, begin: 8, end: 4), 2),
        (.sizeMismatch(file: h, tensor: h, shape: [2], dtype: .u8, expectedBytes: 2, spanBytes: 3), 2),
        (.offsetGap(file: h, tensor: h, previous: h, expectedBegin: 0, begin: 4), 3),
        (.offsetGap(file: h, tensor: h, previous: nil, expectedBegin: 0, begin: 4), 2),
        (.offsetOverlap(file: h, tensor: h, previous: h, expectedBegin: 8, begin: 4), 3),
        (.truncated(file: h, fileLength: 10, expectedLength: 20), 1),
        (.trailingBytes(file: h, fileLength: 20, expectedLength: 10), 1),
        (.indexMalformed(file: h, reason: h), 2),
        (.unsafeShardName(index: h, shard: h), 2),
        (.shardMissing(shard: h, tensorCount: 2, example: h), 2),
        (.indexTensorNotInShard(tensor: h, shard: h, foundIn: h), 3),
        (.indexTensorNotInShard(tensor: h, shard: h, foundIn: nil), 2),
        (.shardTensorNotInIndex(tensor: h, shard: h), 2),
        (.duplicateTensor(tensor: h, firstShard: h, secondShard: h), 3),
        (.checksumMismatch(file: h, expected: h, actual: "ab"), 2),
        (.checksumListMalformed(file: h, line: 4, reason: h), 2),
        (.outsideFolder(file: h, target: h), 2),
    ]

    @Test func everyCaseEscapesEveryName() {
        for (error, fields) in Self.cases {
            let text = error.description
            #expect(rawTerminalControls(text).isEmpty && !text.unicodeScalars.contains("\n"), "\(text)")
            #expect(text.components(separatedBy: Self.e).count - 1 == fields, "\(text)")
        }
    }

    @Test func plainNamesAreUnchanged() {
        #expect(CheckpointError.shardTensorNotInIndex(tensor: "model.norm.weight", shard: "model-00001-of-00002.safetensors").description
            == "model-00001-of-00002.safetensors: tensor 'model.norm.weight' is in this shard but not in the index")
        #expect(CheckpointError.unknownDType(file: "模型.safetensors", tensor: "层.0", dtype: "F7").description.hasPrefix("模型.safetensors: tensor '层.0': unknown dtype \"F7\""))
    }

    @Test func longNamesShortenedReasonsKeptWhole() {
        let long = String(repeating: "n", count: 4_000)
        let reason = String(repeating: "r", count: 4_000)
        let text = CheckpointError.tensorEntryMalformed(file: long, tensor: long, reason: reason).description
        #expect(text.components(separatedBy: "characters left out").count == 3, "file and tensor shortened")
        #expect(text.hasSuffix(": " + reason), "the reason is ours: kept whole")
        #expect(text.count < 4_000 + 2 * displayLimit + 40)
    }

    @Test func jsonErrorsEscapeTheirReason() {
        let text = JSONError(offset: 7, reason: "duplicate key \"\u{1B}]0;x\u{7}\"").description
        #expect(text == "invalid JSON at byte 7: duplicate key \"\\x1B]0;x\\x07\"")
    }

    @Test("the JSON scanner and the index parser display the keys they name")
    func scannerKeys() throws {
        let header = Array("{\"k\u{1B}[2J\":1,\"k\u{1B}[2J\":2}".utf8)
        var escaped: [UInt8] = []
        for b in header { if b == 0x1B { escaped += Array("\\u001b".utf8) } else { escaped.append(b) } }
        #expect(throws: JSONError.self) { try JSONDocument.parse(escaped) }
        do { _ = try JSONDocument.parse(escaped) } catch {
            #expect(error.reason == "duplicate key \"k\\x1B[2J\"", "\(error.reason)")
        }
        let index = Array("{\"weight_map\":{\"t\\n\\u202e\":\"a.safetensors\",\"t\\n\\u202e\":\"a.safetensors\"}}".utf8)
        #expect(throws: CheckpointError.self) { try ShardIndex.parse(index) }
        do { _ = try ShardIndex.parse(index) } catch {
            #expect(error.description == "model.safetensors.index.json: not valid JSON: invalid JSON at byte 43: duplicate key \"t\\n\\u{202E}\"", "\(error.description)")
        }
    }
}
