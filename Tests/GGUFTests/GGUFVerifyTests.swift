import Foundation
import GGUF
import GGUFModel
@testable import Inspection
import Testing
import TensorCore
import TestSupport

extension GGUFBuilder {
    mutating func add(_ key: String, strings: [String]) {
        add(key, type: 9, Self.le(UInt32(8)) + Self.le(UInt64(strings.count)) + strings.flatMap { Self.str($0) })
    }

    mutating func add(_ key: String, i32s: [Int32]) {
        add(key, type: 9, Self.le(UInt32(5)) + Self.le(UInt64(i32s.count)) + i32s.flatMap { Self.le($0) })
    }

    mutating func add(_ key: String, u32s: [UInt32]) {
        add(key, type: 9, Self.le(UInt32(4)) + Self.le(UInt64(u32s.count)) + u32s.flatMap { Self.le($0) })
    }

    mutating func remove(_ key: String) { kvs.removeAll { $0.key == Array(key.utf8) } }

    /// The tensor named `name` (the test fails without one).
    func index(of name: String) throws -> Int { try #require(tensors.firstIndex { $0.name == name }, "no tensor \(name)") }

    /// Writes little-endian `bits` at byte `at` of tensor `name`'s data.
    mutating func poke(_ name: String, at: Int, _ bits: UInt16) throws {
        let i = try index(of: name)
        tensors[i].data[at] = UInt8(bits & 0xFF)
        tensors[i].data[at + 1] = UInt8(bits >> 8)
    }
}

/// Writes `builder` as `v.gguf` in a fresh folder and verifies it on two threads.
func verifyGGUF(_ builder: GGUFBuilder, name: String = "v.gguf") throws -> VerifyReport {
    let dir = TemporaryDirectory()
    let path = dir.write(name, builder.bytes())
    return try withExtendedLifetime(dir) { try GGUFVerifier.verify(path: path, options: VerifyOptions(threads: 2)) }
}

extension VerifyReport {
    func with(_ code: String) -> [Finding] { findings.filter { $0.code == code } }
    var errors: [Finding] { findings.filter { $0.severity == .error } }
}

/// Expects exactly one finding of `code` (and severity) holding every fragment and the file name.
@discardableResult
func expectFinding(
    _ report: VerifyReport, _ code: String, _ fragments: [String], severity: Finding.Severity = .error, tensor: String? = nil,
    sourceLocation: SourceLocation = #_sourceLocation
) -> Finding? {
    let found = report.with(code)
    #expect(found.count == 1, "\(code): \(report.findings.map(\.message))", sourceLocation: sourceLocation)
    guard let f = found.first else { return nil }
    #expect(f.severity == severity, sourceLocation: sourceLocation)
    if let tensor { #expect(f.tensor == tensor, sourceLocation: sourceLocation) }
    for fragment in fragments + ["v.gguf"] {
        #expect(f.message.contains(fragment), "message: \(f.message)", sourceLocation: sourceLocation)
    }
    return f
}

@Suite("verify FILE.gguf")
struct GGUFVerifyTests {
    static let models = ["deepseek-v3-tiny.Q8_0", "k2-thinking-tiny.BF16-Q4_0", "k2-thinking-tiny.Q4_0", "k25-tiny.Q8_0"]

    @Test("every model fixture verifies clean: all 52 tensors the metadata implies, scales finite", arguments: models)
    func fixturesClean(_ name: String) throws {
        let report = try GGUFVerifier.verify(path: GGUFWeightSourceTests.gguf(name), options: VerifyOptions(threads: 2))
        #expect(report.passed, "\(report.findings.map(\.message))")
        #expect(report.format == "gguf" && report.architecture == "deepseek2" && report.shardCount == 1)
        #expect(report.tensorCount == 52 && report.expectedTensorCount == 52)
        #expect(report.bytesScanned > 0)
        // No tokenizer in the fixtures: a warning, not an error.
        expectFindingIn(report, "tokenizer_missing", ["llama.cpp refuses to load the file"])
        #expect(report.renderText().contains("52 in 1 part"))
    }

    func expectFindingIn(_ report: VerifyReport, _ code: String, _ fragments: [String], sourceLocation: SourceLocation = #_sourceLocation) {
        let f = report.with(code)
        #expect(f.count == 1 && f.first?.severity == .warning, sourceLocation: sourceLocation)
        for fragment in fragments { #expect(f.first?.message.contains(fragment) == true, sourceLocation: sourceLocation) }
    }

    @Test("K2-Thinking's YaRN beta_fast 1 is a warning naming --yarn-beta-fast 1; K2.5's 32 / 1 are not")
    func yarnBetas() throws {
        let thinking = try GGUFVerifier.verify(path: GGUFWeightSourceTests.gguf("k2-thinking-tiny.Q4_0"))
        expectFindingIn(thinking, "yarn_beta_ignored", ["beta_fast 1 in the file", "uses 32 / 1", "pass --yarn-beta-fast 1 to llama.cpp"])
        #expect(thinking.with("yarn_beta_ignored").first?.message.contains("--yarn-beta-slow") == false)
        let k25 = try GGUFVerifier.verify(path: GGUFWeightSourceTests.gguf("k25-tiny.Q8_0"))
        #expect(k25.with("yarn_beta_ignored").isEmpty)
    }

    @Test("the dequantization fixture: its NaN and infinite values and IQ1_M's NaN scales are named; no tensor map for its architecture")
    func dequantFixture() throws {
        let report = try GGUFVerifier.verify(path: TestPaths.fixture("gguf/dequant.gguf"), options: VerifyOptions(threads: 2))
        #expect(!report.passed)
        let scales = report.with("scale_not_finite")
        #expect(scales.map(\.tensor) == ["q.IQ1_M"], "\(scales.map(\.message))")
        #expect(scales.first?.message.contains("3 of 8 IQ1_M blocks have a NaN/Inf scale; first: block 2 (row 0, block 2 of 4 in the row): d = NaN") == true, "\(scales.map(\.message))")
        let values = Set(report.with("non_finite_values").compactMap(\.tensor))
        #expect(values.isSuperset(of: ["q.F32", "q.F16", "q.BF16"]))
        let f16 = report.with("non_finite_values").first { $0.tensor == "q.F16" }
        #expect(f16?.message.contains("5 NaN/Inf values (F16); first: element 5 [0, 5] = inf") == true, "\(f16?.message ?? "")")
        #expect(report.with("architecture_unchecked").first?.message.contains("\"k2pack-fixture\": the tensor set is not checked") == true)
    }

    @Test("a NaN scale in a Q4_0 expert block is named by tensor, block, row and field")
    func nanScale() throws {
        var b = try GGUFWeightSourceHostileTests.fixture()
        try b.poke("blk.1.ffn_down_exps.weight", at: 3 * 18, 0x7E00)
        let report = try verifyGGUF(b)
        #expect(!report.passed)
        expectFinding(
            report, "scale_not_finite", ["tensor 'blk.1.ffn_down_exps.weight'", "1 of 512 Q4_0 blocks has a NaN/Inf scale", "block 3 (row [0, 3], block 0 of 1 in the row): d = NaN"],
            tensor: "blk.1.ffn_down_exps.weight")
        // --headers-only: no data read, so nothing found there.
        let dir = TemporaryDirectory()
        let headers = try GGUFVerifier.verify(path: dir.write("v.gguf", b.bytes()), options: VerifyOptions(scanData: false))
        #expect(headers.passed && headers.bytesScanned == 0 && headers.with("scale_not_finite").isEmpty)
    }

    @Test("an infinite F32 value is named by tensor and element")
    func infiniteValue() throws {
        var b = try GGUFWeightSourceHostileTests.fixture()
        let i = try b.index(of: "blk.0.attn_norm.weight")
        b.tensors[i].data.replaceSubrange(28..<32, with: GGUFBuilder.le(Float.infinity.bitPattern))
        let report = try verifyGGUF(b)
        expectFinding(report, "non_finite_values", ["tensor 'blk.0.attn_norm.weight'", "1 NaN/Inf value (F32)", "element 7 [7] = inf"], tensor: "blk.0.attn_norm.weight")
    }

    @Test("split into many items on three threads: one finding per tensor, the count summed and the first block kept")
    func itemsMerged() throws {
        var b = try GGUFWeightSourceHostileTests.fixture()
        try b.poke("blk.2.ffn_gate_exps.weight", at: 40 * 18, 0x7C00)
        try b.poke("blk.2.ffn_gate_exps.weight", at: 5 * 18, 0xFC00)
        let dir = TemporaryDirectory()
        let path = dir.write("v.gguf", b.bytes())
        let model = try GGUFModel(path: path)
        let progress = Locked(0)
        let (findings, bytes) = GGUFVerifier.scan(model, threads: 3, progress: { done, _ in progress.withLock { $0 = max($0, done) } }, itemBytes: 16 * 18)
        let (single, _) = GGUFVerifier.scan(model, threads: 1, progress: nil)
        #expect(findings == single)
        #expect(findings.count == 1)
        #expect(findings.first?.message.contains("2 of 512 Q4_0 blocks have a NaN/Inf scale; first: block 5 (row [0, 2], block 1 of 2 in the row): d = -inf") == true, "\(findings.map(\.message))")
        #expect(bytes == model.tensors.reduce(0) { $0 + $1.byteCount })
        #expect(progress.withLock { $0 } == bytes)
    }

    @Test("a missing and a surplus tensor are each named; llama.cpp's refusal of the surplus one is said")
    func missingAndSurplus() throws {
        var b = try GGUFWeightSourceHostileTests.fixture()
        b.tensors.removeAll { $0.name == "blk.2.attn_v_b.weight" }
        b.addF32("blk.2.extra.weight", count: 8)
        let report = try verifyGGUF(b)
        #expect(!report.passed)
        expectFinding(report, "missing_tensor", ["tensor 'blk.2.attn_v_b.weight' (slot attn_kv_b) is missing"], tensor: "blk.2.attn_v_b.weight")
        expectFinding(
            report, "unexpected_tensor", ["tensor 'blk.2.extra.weight' is not one the deepseek2 architecture has", "llama.cpp's loader refuses"],
            tensor: "blk.2.extra.weight")
        #expect(report.tensorCount == 52 && report.expectedTensorCount == 52)
    }

    @Test("a tensor whose shape is not what the metadata implies is named with both shapes")
    func wrongShape() throws {
        var b = try GGUFWeightSourceHostileTests.fixture()
        b.tensors[try b.index(of: "blk.1.attn_q_a_norm.weight")].ne = [16, 2]
        let report = try verifyGGUF(b)
        expectFinding(report, "wrong_shape", ["blk.1.attn_q_a_norm.weight has ne {16, 2}, expected {32}"], tensor: "blk.1.attn_q_a_norm.weight")
    }

    @Test("a head count the attention tensors do not have: every attention tensor of every layer named")
    func headCountVsShapes() throws {
        var b = try GGUFWeightSourceHostileTests.fixture()
        b.remove("deepseek2.attention.head_count")
        b.add("deepseek2.attention.head_count", u32: 4)
        let report = try verifyGGUF(b)
        let wrong = report.with("wrong_shape")
        let expected = (0..<3).flatMap { l in ["attn_q_b", "attn_k_b", "attn_v_b", "attn_output"].map { "blk.\(l).\($0).weight" } }
        #expect(Set(wrong.compactMap(\.tensor)) == Set(expected) && wrong.count == 12, "\(wrong.map(\.message))")
        #expect(wrong.contains { $0.message.contains("blk.0.attn_q_b.weight has ne {32, 48}, expected {32, 96} from the file's metadata") })
    }

    @Test("a tensor in a type k2pack cannot dequantize is named")
    func undecodable() throws {
        var b = try GGUFWeightSourceHostileTests.fixture()
        b.tensors[try b.index(of: "blk.0.attn_norm.weight")].type = 26  // I32, the same 4 bytes per element
        let report = try verifyGGUF(b)
        expectFinding(report, "cannot_decode", ["blk.0.attn_norm.weight is stored as I32"], tensor: "blk.0.attn_norm.weight")
    }

    @Test("metadata that contradicts itself (head_count_kv 2 for MLA) is a config error")
    func inconsistentMetadata() throws {
        var b = try GGUFWeightSourceHostileTests.fixture()
        b.remove("deepseek2.attention.head_count_kv")
        b.add("deepseek2.attention.head_count_kv", u32: 2)
        let report = try verifyGGUF(b)
        expectFinding(report, "config", ["deepseek2.attention.head_count_kv: 2 with 2 query heads, expected 1"])
        #expect(report.expectedTensorCount == nil)
    }

    @Test("a file the reader refuses is one gguf_invalid error; a file that is not there throws")
    func structure() throws {
        var bytes = try GGUFWeightSourceHostileTests.fixture().bytes()
        bytes.removeLast(100)
        let dir = TemporaryDirectory()
        let path = dir.write("v.gguf", bytes)
        let report = try GGUFVerifier.verify(path: path)
        #expect(!report.passed && report.findings.count == 1)
        #expect(report.findings.first?.code == "gguf_invalid")
        #expect(report.findings.first?.message.contains("truncated by") == true, "\(report.findings.map(\.message))")
        #expect(throws: GGUFError.self) { _ = try GGUFVerifier.verify(path: dir.path + "/absent.gguf") }
    }

    @Test("a split set verifies from any part: three parts, every tensor scanned")
    func splitSet() throws {
        let report = try GGUFVerifier.verify(path: TestPaths.fixture("gguf/split-00002-of-00003.gguf"))
        #expect(report.shardCount == 3 && report.tensorCount == 5)
        #expect(report.renderText().contains("5 in 3 parts"))
        // The reader fixture claims deepseek2 without its keys: the only error is that config.
        #expect(report.errors.map(\.code) == ["config"], "\(report.findings.map(\.message))")
    }
}

@Suite("GGUF scale scan")
struct GGUFScaleScanTests {
    static let types = GGMLType.allCases.filter { !GGUFScaleScan.fields($0).isEmpty }

    @Test("each block type's scale fields: a NaN in block 1 is found there, and the dequantizer reads that field", arguments: types)
    func fields(_ type: GGMLType) throws {
        for field in GGUFScaleScan.fields(type) {
            var bytes = [UInt8](repeating: 0, count: 3 * type.typeSize)
            let block = type.typeSize
            switch field.encoding {
            case .f16(let at):
                bytes[block + at] = 0x00
                bytes[block + at + 1] = 0x7E
            case .f32(let at):
                bytes.replaceSubrange((block + at)..<(block + at + 4), with: GGUFBuilder.le(Float.nan.bitPattern))
            case .iq1m:
                // 0x7E00 as the top nibbles of the four scale words (lowest first): 0, 0, E, 7.
                bytes[block + 48 + 5] = 0xE0
                bytes[block + 48 + 7] = 0x70
            }
            let result = bytes.withUnsafeBytes { GGUFScaleScan.scan(type, $0, firstIndex: 10) }
            #expect(result.count == 1, "\(type.name) \(field.name)")
            #expect(result.first?.index == 11 && result.first?.field == field.name && result.first?.value.isNaN == true, "\(type.name) \(field.name)")
            guard type.canDequantize else { continue }
            let values = [Float](unsafeUninitializedCapacity: 3 * type.blockSize) { out, n in
                bytes.withUnsafeBytes { GGUFDequantizer.dequantize(type, blocks: $0, into: out) }
                n = 3 * type.blockSize
            }
            #expect(values[type.blockSize..<(2 * type.blockSize)].contains { $0.isNaN }, "\(type.name) \(field.name): the dequantizer does not read it")
            #expect(!values[0..<type.blockSize].contains { $0.isNaN })
        }
        let clean = [UInt8](repeating: 0x11, count: 4 * type.typeSize)
        #expect(clean.withUnsafeBytes { GGUFScaleScan.scan(type, $0) }.count == 0)
    }

    @Test("the plain float types: every element checked; MXFP4 and the integer types have nothing to check")
    func plain() {
        let f16: [UInt8] = GGUFBuilder.le(UInt16(0x3C00)) + GGUFBuilder.le(UInt16(0x7C01)) + GGUFBuilder.le(UInt16(0xFC00))
        let r = f16.withUnsafeBytes { GGUFScaleScan.scan(.f16, $0) }
        #expect(r.count == 2 && r.first?.index == 1 && r.first?.field == nil)
        let bf16: [UInt8] = GGUFBuilder.le(UInt16(0x7F80))
        #expect(bf16.withUnsafeBytes { GGUFScaleScan.scan(.bf16, $0) }.count == 1)
        #expect(!GGUFScaleScan.checks(.mxfp4) && !GGUFScaleScan.checks(.i32) && GGUFScaleScan.checks(.f64))
    }
}

@Suite("verify FILE.gguf: the tokenizer")
struct GGUFTokenizerVerifyTests {
    /// The model fixture's vocabulary (token_embd's rows).
    static let vocab = (try? FixtureRecord.vocabularySize("k2-thinking-tiny")) ?? 0
    static let tokens = ["a", "b", "ab", "c", "abc"] + (5..<vocab).map { "<t\($0)>" }

    /// The model fixture with a sane gpt2 tokenizer of `vocab` tokens (the embedding's rows).
    static func withTokenizer(
        model: String? = "gpt2", pre: String? = "kimi-k2", tokens: [String] = tokens, types: [Int32]? = nil,
        merges: [String]? = ["a b", "ab c"], special: [String: UInt32] = ["bos": 3, "eos": 4, "padding": 5]
    ) throws -> GGUFBuilder {
        var b = try GGUFWeightSourceHostileTests.fixture()
        if let model { b.add("tokenizer.ggml.model", string: model) }
        if let pre { b.add("tokenizer.ggml.pre", string: pre) }
        b.add("tokenizer.ggml.tokens", strings: tokens)
        b.add("tokenizer.ggml.token_type", i32s: types ?? tokens.map { _ in 1 })
        if let merges { b.add("tokenizer.ggml.merges", strings: merges) }
        for (name, id) in special.sorted(by: { $0.key < $1.key }) { b.add("tokenizer.ggml.\(name)_token_id", u32: id) }
        return b
    }

    @Test("a sane tokenizer gives no finding; the inspect report counts its strings")
    func clean() throws {
        let report = try verifyGGUF(try Self.withTokenizer())
        #expect(report.passed && report.findings.filter { $0.code.hasPrefix("tokenizer") }.isEmpty, "\(report.findings.map(\.message))")
        let dir = TemporaryDirectory()
        let inspect = try GGUFInspectReport(path: dir.write("v.gguf", try Self.withTokenizer().bytes()), gpus: 1)
        #expect(inspect.tokenCount == Self.vocab && inspect.mergeCount == 2)
        #expect(inspect.tokenizerBytes == Self.tokens.reduce(0) { $0 + $1.utf8.count } + 3 + 4)
        #expect(inspect.renderText().contains("\(Self.vocab) tokens, 2 merges, "), "\(inspect.renderText())")
    }

    @Test("a merge that is not \"A B\" is named")
    func mergeWithoutSpace() throws {
        let report = try verifyGGUF(try Self.withTokenizer(merges: ["a b", "abc"]))
        expectFinding(report, "tokenizer_merge", ["merge 1 \"abc\" is not two tokens separated by a space"])
    }

    @Test("a merge whose part is not a token is named")
    func mergeUnknownPart() throws {
        let report = try verifyGGUF(try Self.withTokenizer(merges: ["a b", "ab zz"]))
        expectFinding(report, "tokenizer_merge", ["merge 1 \"ab zz\": \"zz\" is not a token"])
    }

    @Test("fewer tokens than token_embd has rows")
    func tokenCount() throws {
        let v = Self.vocab
        let report = try verifyGGUF(try Self.withTokenizer(tokens: Array(Self.tokens.dropLast()), types: Array(repeating: 1, count: v - 1)))
        let f = report.with("tokenizer_vocab_size")
        #expect(f.count == 2, "\(report.findings.map(\.message))")
        #expect(f.contains { $0.message.contains("holds \(v - 1) tokens but token_embd.weight has \(v) rows (ne {64, \(v)})") && $0.tensor == "token_embd.weight" })
        #expect(f.contains { $0.message.contains("holds \(v - 1) tokens but deepseek2.vocab_size is \(v)") })
    }

    @Test("token_type of another length or type")
    func tokenTypes() throws {
        let short = try verifyGGUF(try Self.withTokenizer(types: Array(repeating: 1, count: 200)))
        expectFinding(short, "tokenizer_token_type", ["tokenizer.ggml.token_type holds 200 entries, expected one per token (\(Self.vocab))"])
        var b = try Self.withTokenizer()
        b.remove("tokenizer.ggml.token_type")
        b.add("tokenizer.ggml.token_type", u32s: Array(repeating: 1, count: Self.vocab))
        expectFinding(try verifyGGUF(b), "tokenizer_token_type", ["tokenizer.ggml.token_type is array of u32, expected an array of i32"])
    }

    @Test("a special token id outside the vocabulary")
    func specialID() throws {
        let v = Self.vocab
        let report = try verifyGGUF(try Self.withTokenizer(special: ["bos": UInt32(v), "eos": 4]))
        expectFinding(report, "tokenizer_special_id", ["tokenizer.ggml.bos_token_id is \(v), outside the vocabulary of \(v) tokens (ids 0–\(v - 1))"])
    }

    @Test("a pre-tokenizer llama.cpp does not know; an absent one is a warning")
    func pre() throws {
        expectFinding(try verifyGGUF(try Self.withTokenizer(pre: "kimi-k3")), "tokenizer_pre_unknown", ["tokenizer.ggml.pre \"kimi-k3\" is not a pre-tokenizer llama.cpp knows"])
        expectFinding(try verifyGGUF(try Self.withTokenizer(pre: nil)), "tokenizer_pre_missing", ["falls back to the 'default' pre-tokenizer"], severity: .warning)
    }

    @Test("a duplicate token")
    func duplicate() throws {
        var tokens = Self.tokens
        tokens[10] = "a"
        expectFinding(try verifyGGUF(try Self.withTokenizer(tokens: tokens)), "tokenizer_duplicate_token", ["token 10 \"a\" is also token 0"])
    }

    @Test("an empty token is a warning")
    func emptyToken() throws {
        var tokens = Self.tokens
        tokens[20] = ""
        expectFinding(try verifyGGUF(try Self.withTokenizer(tokens: tokens)), "tokenizer_empty_token", ["1 empty token (first: id 20)"], severity: .warning)
    }

    @Test("merges may be absent for kimi-k2 only")
    func mergesAbsent() throws {
        #expect(try verifyGGUF(try Self.withTokenizer(merges: nil)).passed)
        expectFinding(try verifyGGUF(try Self.withTokenizer(pre: "gpt-2", merges: nil)), "tokenizer_invalid", ["tokenizer.ggml.merges is missing", "unless tokenizer.ggml.pre is kimi-k2"])
    }

    @Test("an unknown tokenizer model, tokens of the wrong type, too few scores")
    func invalid() throws {
        expectFinding(try verifyGGUF(try Self.withTokenizer(model: "sentencepiece")), "tokenizer_invalid", ["tokenizer.ggml.model \"sentencepiece\" is not a tokenizer llama.cpp knows"])
        var b = try Self.withTokenizer()
        b.remove("tokenizer.ggml.tokens")
        b.add("tokenizer.ggml.tokens", i32s: [1, 2])
        expectFinding(try verifyGGUF(b), "tokenizer_invalid", ["tokenizer.ggml.tokens is array of i32, expected an array of string"])
        var s = try Self.withTokenizer()
        s.add("tokenizer.ggml.scores", type: 9, GGUFBuilder.le(UInt32(6)) + GGUFBuilder.le(UInt64(2)) + GGUFBuilder.le(Float(0).bitPattern) + GGUFBuilder.le(Float(0).bitPattern))
        expectFinding(try verifyGGUF(s), "tokenizer_invalid", ["tokenizer.ggml.scores holds 2 entries, fewer than the \(Self.vocab) tokens"])
    }
}

@Suite("inspect FILE.gguf: the architecture's tensors and memory per GPU")
struct GGUFInspectArchitectureTests {
    @Test("52 of 52 tensors; routed experts divided whole over the GPUs, the rest replicated")
    func fixture() throws {
        let report = try GGUFInspectReport(path: GGUFWeightSourceTests.gguf("k2-thinking-tiny.Q4_0"), gpus: 4)
        #expect(report.expectedTensorCount == 52 && report.presentTensorCount == 52 && report.surplusTensorCount == 0)
        let model = try GGUFModel(path: GGUFWeightSourceTests.gguf("k2-thinking-tiny.Q4_0"))
        let routed = model.tensors.filter { $0.name.hasSuffix("_exps.weight") }.reduce(0) { $0 + $1.byteCount }
        let other = model.tensors.reduce(0) { $0 + $1.byteCount } - routed
        let m = try #require(report.memory)
        #expect(m.gpus == 4 && m.expertsPerGPU == 2 && m.routedExpertBytes == routed && m.replicatedBytes == other)
        #expect(m.expertParallelBytesPerGPU == other + routed * 2 / 8)
        let text = report.renderText()
        #expect(text.contains("architecture needs: 52 of 52 tensors present\n"), "\(text)")
        #expect(text.contains("memory per GPU on 4 GPUs (weights only): EP4"))
        let json = String(decoding: try JSONEncoder().encode(report), as: UTF8.self)
        #expect(json.contains("\"expertParallelBytesPerGPU\"") && json.contains("\"expectedTensorCount\":52"))
        // Three GPUs: ⌈8 / 3⌉ = 3 experts each.
        #expect(try GGUFInspectReport(path: GGUFWeightSourceTests.gguf("k2-thinking-tiny.Q4_0"), gpus: 3).memory?.expertsPerGPU == 3)
    }

    @Test("a missing and a surplus tensor show in the count")
    func incomplete() throws {
        var b = try GGUFWeightSourceHostileTests.fixture()
        b.tensors.removeAll { $0.name == "blk.2.attn_v_b.weight" }
        b.addF32("blk.2.extra.weight", count: 8)
        let dir = TemporaryDirectory()
        let report = try GGUFInspectReport(path: dir.write("v.gguf", b.bytes()), gpus: 8)
        #expect(report.presentTensorCount == 51 && report.expectedTensorCount == 52 && report.surplusTensorCount == 1)
        #expect(report.renderText().contains("51 of 52 tensors present, 1 more it does not use (llama.cpp refuses the file) (run `k2pack verify` for the list)"))
    }

    @Test("no tensor map for the architecture: said, no memory estimate")
    func unknownArchitecture() throws {
        let report = try GGUFInspectReport(path: TestPaths.fixture("gguf/dequant.gguf"), gpus: 8)
        #expect(report.expectedTensorCount == nil && report.memory == nil)
        #expect(report.tensorSetNote?.contains("\"k2pack-fixture\"") == true)
        #expect(report.renderText().contains("architecture needs: not checked"))
    }
}
