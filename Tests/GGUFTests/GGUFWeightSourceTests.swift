import Forward
import Foundation
import GGUF
import GGUFModel
import ModelStore
import Parity
import Testing
import TestSupport

/// The deepseek2 GGUF fixtures (scripts/fixtures/make_gguf_models.py) as forward-pass weight sources.
@Suite("GGUFWeightSource")
struct GGUFWeightSourceTests {
    static func gguf(_ name: String) -> String { TestPaths.fixture("gguf-models/\(name).gguf") }
    static let references = TestPaths.fixture("references/gguf-models.h5")

    /// The lossless file (BF16 matrices, INT4 experts repacked into Q4_0 bit for bit) gives the logits of the
    /// safetensors checkpoint it was made from.
    @Test("the lossless GGUF of k2-thinking-tiny gives the safetensors fixture's logits (max |Δ| ≤ 1e-5)")
    func losslessMatchesSafetensors() throws {
        let ref = try ReferenceDump(spec: TestPaths.fixture("references/k2-thinking-tiny.h5") + ":/exact")
        let (weights, kind) = try ForwardModel.open(Self.gguf("k2-thinking-tiny.BF16-Q4_0"))
        #expect(kind == .gguf)
        let gguf = try ForwardPass(weights: weights, threads: 2).logits(for: ref.inputIDs, batch: ref.batch)
        let folder = try ForwardModel.open(TestPaths.fixture("k2-thinking-tiny"))
        #expect(folder.kind == .huggingFace)
        let safetensors = try ForwardPass(weights: folder.weights, threads: 2).logits(for: ref.inputIDs, batch: ref.batch)
        #expect(gguf.count == safetensors.count)
        let worst = zip(gguf, safetensors).map { abs($0 - $1) }.max() ?? .infinity
        #expect(worst <= 1e-5, "max |Δ| \(worst)")
    }

    @Test("the deepseek2 tensor map serves every slot the forward pass reads")
    func mapCoversSlots() throws {
        let map = try #require(try GGUFTensorMap.load(architecture: "deepseek2"))
        let served = Set(map.tensors.map(\.slot))
        for slot in WeightSlot.allCases where slot != .mtp {
            #expect(served.contains(slot.rawValue), "\(slot.rawValue)")
        }
        #expect(try GGUFTensorMap.load(architecture: "llama") == nil)
    }

    /// The metadata becomes the same forward config as the checkpoint's config.json.
    @Test("the deepseek2 metadata becomes the fixture's forward config")
    func configFromMetadata() throws {
        let source = try GGUFWeightSource(path: Self.gguf("k2-thinking-tiny.Q4_0"))
        let folder = try ModelStore.open(TestPaths.fixture("k2-thinking-tiny")).weights().forward
        let f = source.forward
        #expect(f.hiddenSize == folder.hiddenSize && f.numLayers == folder.numLayers && f.numHeads == folder.numHeads)
        #expect(f.qkNopeHeadDim == folder.qkNopeHeadDim && f.qkRopeHeadDim == folder.qkRopeHeadDim && f.vHeadDim == folder.vHeadDim)
        #expect(f.qLoraRank == folder.qLoraRank && f.kvLoraRank == folder.kvLoraRank)
        #expect(f.routing.experts == folder.routing.experts && f.routing.topK == folder.routing.topK)
        #expect(f.routing.groups == folder.routing.groups && f.routing.topKGroups == folder.routing.topKGroups)
        #expect(f.routing.normalize == folder.routing.normalize && f.routing.scalingFactor == folder.routing.scalingFactor)
        #expect(f.rmsNormEps == folder.rmsNormEps && f.softmaxScale == folder.softmaxScale)
        #expect(f.rope.inverseFrequencies == folder.rope.inverseFrequencies && f.rope.amplitude == folder.rope.amplitude)
        #expect(f.rope.betaFast == 1, "K2-Thinking's beta_fast from the file")
        #expect(source.notes.contains { $0.contains("ignores them") }, "the YaRN beta trap is reported: \(source.notes)")
        #expect(source.has(.routerBias, layer: 1))
    }

    /// Each fixture quant against the fixture's float32 reference: mean KLD and same-top-1 as the script's float64
    /// computation from gguf-py's dequantized weights, within 1 % relative.
    /// The figures are the `mean_kld` and `same_top1` attributes make_gguf_models.py wrote on each group of
    /// references/gguf-models.h5 (float attributes, which ReferenceDump does not read).
    @Test("each fixture quant: the float64 oracle's logits (max |Δ| ≤ 1e-5), its mean KLD and same top-1 (1 %)", arguments: [
        ("deepseek-v3-tiny.Q8_0", "deepseek-v3-tiny.h5:/fp32", 5.006352179525222e-06, 0.9375),
        ("k2-thinking-tiny.Q4_0", "k2-thinking-tiny.h5:/exact", 0.0003282800834999101, 0.6875),
        ("k25-tiny.Q8_0", "k25-tiny.h5:/exact", 1.617803540968412e-05, 0.9375),
    ])
    func quantStatistics(name: String, reference: String, kld: Double, top1: Double) throws {
        try expectQuantStatistics(
            gguf: Self.gguf(name), reference: TestPaths.fixture("references/" + reference), oracle: Self.references + ":/" + name,
            kld: kld, top1: top1, label: name)
    }

    @Test("parity of the Q4_0 GGUF passes against a dump of its dequantized weights")
    func parityAgainstDequantizedDump() throws {
        let ref = try ReferenceDump(spec: Self.references + ":/k2-thinking-tiny.Q4_0")
        let pass = ForwardPass(weights: try ForwardModel.open(Self.gguf("k2-thinking-tiny.Q4_0")).weights, threads: 2)
        let report = try ParityRun.run(model: "k2-thinking-tiny.Q4_0.gguf", forward: pass, reference: ref)
        #expect(report.pass, "\(report.renderText())")
    }
}

/// A GGUF quant against a float32 reference: its logits within 1e-5 of the float64 oracle's (transformers on
/// gguf-py's dequantized weights), and its mean KLD and same-top-1 within 1 % of the oracle's.
func expectQuantStatistics(gguf: String, reference: String, oracle: String, kld: Double, top1: Double, label: String) throws {
    let ref = try ReferenceDump(spec: reference)
    let pass = ForwardPass(weights: try ForwardModel.open(gguf).weights, threads: 2)
    let vocab = pass.forward.vocabSize
    let logits = try pass.logits(for: ref.inputIDs, batch: ref.batch)
    let stats = try LogitStatistics(
        ids: ref.inputIDs, sequences: ref.batch.sequences, tokens: ref.batch.tokens, vocab: vocab,
        reference: ref.logitSource(vocab: vocab), test: .values(logits, vocab: vocab, label: label))
    let expected = try #require(try ReferenceDump(spec: oracle).logits())
    #expect(expected.vocab == vocab && expected.values.count == logits.count)
    var worst: (delta: Float, at: Int) = (0, 0)
    for i in logits.indices where abs(expected.values[i] - logits[i]) > worst.delta {
        worst = (abs(expected.values[i] - logits[i]), i)
    }
    #expect(worst.delta <= 1e-5, "\(label): max |Δ| against the float64 oracle \(worst.delta) at logit \(worst.at) (token \(worst.at / vocab), id \(worst.at % vocab))")
    #expect(abs(stats.kld.mean - kld) <= 0.01 * kld, "\(label): mean KLD \(stats.kld.mean), float64 \(kld)")
    #expect(abs(stats.sameTop1 - top1) <= 0.01 * top1, "\(label): same top-1 \(stats.sameTop1), float64 \(top1)")
}

/// Broken deepseek2 files, rewritten from the Q4_0 fixture: each refused with the file, the tensor or key, and
/// what was found against what was expected.
@Suite("GGUFWeightSource hostile")
struct GGUFWeightSourceHostileTests {
    /// The fixture's keys and tensors as a builder (values re-encoded from the parsed metadata).
    static func fixture() throws -> GGUFBuilder {
        let file = try GGUFFile(path: GGUFWeightSourceTests.gguf("k2-thinking-tiny.Q4_0"))
        var b = GGUFBuilder()
        for kv in file.metadata {
            let payload: [UInt8]
            switch kv.value {
            case .u8(let v): payload = GGUFBuilder.le(v)
            case .i8(let v): payload = GGUFBuilder.le(v)
            case .u16(let v): payload = GGUFBuilder.le(v)
            case .i16(let v): payload = GGUFBuilder.le(v)
            case .u32(let v): payload = GGUFBuilder.le(v)
            case .i32(let v): payload = GGUFBuilder.le(v)
            case .u64(let v): payload = GGUFBuilder.le(v)
            case .i64(let v): payload = GGUFBuilder.le(v)
            case .f32(let v): payload = GGUFBuilder.le(v.bitPattern)
            case .f64(let v): payload = GGUFBuilder.le(v.bitPattern)
            case .bool(let v): payload = [v ? 1 : 0]
            case .string(let s): payload = GGUFBuilder.str(s)
            case .array: continue
            }
            b.add(kv.key, type: kv.value.type.rawValue, payload)
        }
        for t in file.tensors {
            b.tensors.append(.init(name: t.name, ne: t.ne.map(UInt64.init), type: t.type.rawValue, data: Array(try file.bytes(of: t))))
        }
        return b
    }

    /// Expects opening `builder`'s bytes as a weight source to fail with `expected` and a message holding `fragments`.
    func expectRefused(_ builder: GGUFBuilder, _ expected: (String) -> GGUFModelError, _ fragments: [String], sourceLocation: SourceLocation = #_sourceLocation) {
        let dir = TemporaryDirectory()
        let path = dir.write("hostile.gguf", builder.bytes())
        do {
            _ = try GGUFWeightSource(path: path)
            Issue.record("opened without error; expected \(expected(path))", sourceLocation: sourceLocation)
        } catch {
            #expect(error == expected(path), sourceLocation: sourceLocation)
            for fragment in fragments + ["hostile.gguf"] {
                #expect(error.description.contains(fragment), "message: \(error.description)", sourceLocation: sourceLocation)
            }
        }
    }

    func replace(_ b: inout GGUFBuilder, key: String, type: UInt32, _ payload: [UInt8]) {
        b.kvs.removeAll { $0.key == Array(key.utf8) }
        b.add(key, type: type, payload)
    }

    @Test("the rewritten fixture opens (the builder round trip is faithful)")
    func roundTrip() throws {
        let dir = TemporaryDirectory()
        let path = dir.write("ok.gguf", try Self.fixture().bytes())
        _ = try GGUFWeightSource(path: path)
    }

    @Test("a tensor missing for a slot")
    func missingTensor() throws {
        var b = try Self.fixture()
        b.tensors.removeAll { $0.name == "blk.2.attn_v_b.weight" }
        expectRefused(b, { .missingTensor(file: $0, tensor: "blk.2.attn_v_b.weight", slot: "attn_kv_b") }, ["blk.2.attn_v_b.weight", "slot attn_kv_b", "is missing"])
    }

    @Test("a tensor of the wrong shape")
    func wrongShape() throws {
        var b = try Self.fixture()
        let i = try #require(b.tensors.firstIndex { $0.name == "blk.1.ffn_norm.weight" })
        b.tensors[i].ne = [32, 2]
        expectRefused(b, { .wrongShape(file: $0, tensor: "blk.1.ffn_norm.weight", found: [32, 2], expected: [64]) }, ["ne {32, 2}, expected {64}"])
    }

    @Test("an unknown architecture")
    func unknownArchitecture() throws {
        var b = try Self.fixture()
        replace(&b, key: "general.architecture", type: 8, GGUFBuilder.str("llama"))
        expectRefused(b, { .unknownArchitecture(file: $0, found: "llama", known: ["deepseek2"]) }, ["\"llama\"", "\"deepseek2\""])
    }

    @Test("no general.architecture")
    func noArchitecture() throws {
        var b = try Self.fixture()
        b.kvs.removeAll { $0.key == Array("general.architecture".utf8) }
        expectRefused(b, { .unknownArchitecture(file: $0, found: nil, known: ["deepseek2"]) }, ["general.architecture is absent"])
    }

    @Test("inconsistent head counts: head_count_kv other than 1")
    func headCountKV() throws {
        var b = try Self.fixture()
        replace(&b, key: "deepseek2.attention.head_count_kv", type: 4, GGUFBuilder.le(UInt32(2)))
        expectRefused(
            b, { .inconsistent(file: $0, key: "deepseek2.attention.head_count_kv", reason: "2 with 2 query heads, expected 1 (MLA is stored as MQA over the latent)") },
            ["deepseek2.attention.head_count_kv", "expected 1"])
    }

    @Test("inconsistent head counts: head_count that the attention tensors do not have")
    func headCount() throws {
        var b = try Self.fixture()
        replace(&b, key: "deepseek2.attention.head_count", type: 4, GGUFBuilder.le(UInt32(4)))
        // attn_q_b holds 2 heads of 24 rows; the metadata says 4.
        expectRefused(b, { .wrongShape(file: $0, tensor: "blk.0.attn_q_b.weight", found: [32, 48], expected: [32, 96]) }, ["blk.0.attn_q_b.weight", "{32, 96}"])
    }

    @Test("key_length not kv_lora_rank + rope")
    func keyLength() throws {
        var b = try Self.fixture()
        replace(&b, key: "deepseek2.attention.key_length", type: 4, GGUFBuilder.le(UInt32(41)))
        expectRefused(
            b, { .inconsistent(file: $0, key: "deepseek2.attention.key_length", reason: "41, expected kv_lora_rank + rope.dimension_count = 40") },
            ["key_length", "41", "40"])
    }

    @Test("the legacy layout without the MLA lengths")
    func legacyLayout() throws {
        var b = try Self.fixture()
        b.kvs.removeAll { $0.key == Array("deepseek2.attention.key_length_mla".utf8) }
        expectRefused(
            b, { .inconsistent(file: $0, key: "deepseek2.attention.key_length_mla", reason: "absent (with value_length_mla): the legacy layout with one attn_kv_b tensor, which k2pack does not read; reconvert with a current llama.cpp") },
            ["legacy layout"])
    }

    @Test("softmax gating, which the reference forward pass does not implement")
    func softmaxGating() throws {
        var b = try Self.fixture()
        replace(&b, key: "deepseek2.expert_gating_func", type: 4, GGUFBuilder.le(UInt32(1)))
        let dir = TemporaryDirectory()
        let path = dir.write("hostile.gguf", b.bytes())
        do {
            _ = try GGUFWeightSource(path: path)
            Issue.record("opened without error")
        } catch {
            guard case .config(let file, let reason) = error else {
                Issue.record("expected a config error, got \(error)")
                return
            }
            #expect(file == path)
            #expect(reason.contains("scoring_func") && reason.contains("sigmoid"), "\(reason)")
            #expect(error.description.contains("hostile.gguf"))
        }
    }

    @Test("a tensor stored in a type k2pack does not dequantize")
    func cannotDecode() throws {
        var b = try Self.fixture()
        let i = try #require(b.tensors.firstIndex { $0.name == "output_norm.weight" })
        b.tensors[i].type = 26  // I32: the same bytes as F32
        expectRefused(b, { .cannotDecode(file: $0, tensor: "output_norm.weight", type: "I32") }, ["output_norm.weight", "I32", "cannot dequantize"])
    }

    @Test("a split set serves the same weights as the single file, from any part")
    func splitSet() throws {
        let whole = try Self.fixture()
        let dir = TemporaryDirectory()
        let half = whole.tensors.count / 2
        var first = whole, second = GGUFBuilder()
        first.tensors = Array(whole.tensors[..<half])
        second.tensors = Array(whole.tensors[half...])
        for (no, builder) in [(UInt16(0), first), (UInt16(1), second)] {
            var b = builder
            b.add("split.no", u16: no)
            b.add("split.count", u16: 2)
            b.add("split.tensors.count", i32: Int32(whole.tensors.count))
            _ = dir.write("m-0000\(no + 1)-of-00002.gguf", b.bytes())
        }
        let single = dir.write("single.gguf", whole.bytes())
        let ref = try ReferenceDump(spec: TestPaths.fixture("references/k2-thinking-tiny.h5") + ":/exact")
        let expected = try ForwardPass(weights: try GGUFWeightSource(path: single), threads: 2).logits(for: ref.inputIDs, batch: ref.batch)
        for part in ["m-00001-of-00002.gguf", "m-00002-of-00002.gguf"] {
            let source = try GGUFWeightSource(path: dir.url.appendingPathComponent(part).path)
            #expect(source.model.parts.count == 2)
            #expect(try ForwardPass(weights: source, threads: 2).logits(for: ref.inputIDs, batch: ref.batch) == expected)
        }
    }

    @Test("no vocab_size key and no output.weight: the vocabulary from token_embd, the head tied and said so")
    func tiedAndNoVocabularyKey() throws {
        var b = try Self.fixture()
        b.kvs.removeAll { $0.key == Array("deepseek2.vocab_size".utf8) }
        b.tensors.removeAll { $0.name == "output.weight" }
        let dir = TemporaryDirectory()
        let source = try GGUFWeightSource(path: dir.write("tied.gguf", b.bytes()))
        #expect(source.forward.vocabSize == (try FixtureRecord.vocabularySize("k2-thinking-tiny")))
        #expect(source.forward.tieWordEmbeddings)
        #expect(source.notes.contains { $0.contains("tied") })
    }

    @Test("a tensor the map does not read is reported, not used")
    func surplusTensor() throws {
        var b = try Self.fixture()
        b.addF32("blk.3.nextn.enorm.weight", count: 64)
        let dir = TemporaryDirectory()
        let source = try GGUFWeightSource(path: dir.write("surplus.gguf", b.bytes()))
        #expect(source.notes.contains { $0.contains("1 tensor(s)") && $0.contains("blk.3.nextn.enorm.weight") }, "\(source.notes)")
    }

    @Test("a file the reader refuses is reported as such")
    func readerError() throws {
        let dir = TemporaryDirectory()
        let path = dir.write("hostile.gguf", Array("GGUF".utf8) + [9, 0, 0, 0])
        #expect(throws: GGUFModelError.file(.unsupportedVersion(file: path, version: 9))) { _ = try GGUFWeightSource(path: path) }
        #expect(ForwardModel.isGGUF(path))
        #expect(!ForwardModel.isGGUF(TestPaths.fixture("k2-thinking-tiny")))
    }
}
