import Forward
import Foundation
import ModelStore
import Parity
import Repack
import TestSupport
import Testing

@Suite("Parity: model formats, slices and bad input")
struct ParityInputTests {
    let reference = ParityHarness.reference("k25-tiny", "/exact")

    @Test("a k2pack folder gives exactly the Hugging Face folder's results")
    func packFolder() throws {
        let temp = TemporaryDirectory()
        let packed = temp.path + "/pack"
        _ = try Converter.convert(input: TestPaths.fixture("k25-tiny"), output: packed)
        let hf = try ParityHarness.run(model: TestPaths.fixture("k25-tiny"), reference: reference)
        let pk = try ParityHarness.run(model: packed, reference: reference)
        #expect(pk.pass, "\(ParityHarness.failures(pk))")
        #expect(try ModelStore.open(packed).kind == .k2pack)
        for (a, b) in zip(hf.layers, pk.layers) {
            #expect(a.chained.map(\.comparison) == b.chained.map(\.comparison), "layer \(a.layer) differs between formats")
        }
        #expect(hf.logits?.comparison == pk.logits?.comparison)
    }

    @Test("--layers 1..2 starts from the dumped layer_in and still reaches the logits")
    func slice() throws {
        let report = try ParityHarness.run(model: TestPaths.fixture("k25-tiny"), reference: reference, layers: 1...2)
        #expect(report.pass, "\(ParityHarness.failures(report))")
        #expect(report.layers.map(\.layer) == [1, 2])
        #expect(report.logits != nil)
        let middle = try ParityHarness.run(model: TestPaths.fixture("k25-tiny"), reference: reference, layers: 1...1)
        #expect(middle.logits == nil && middle.layers.count == 1 && middle.pass)
    }

    /// A dump written by hand: input_ids plus whatever `extra` adds.
    func dump(ids: [Int32], shape: [Int], _ extra: (HDF5File) throws -> Void = { _ in }) throws -> (TemporaryDirectory, String) {
        let temp = TemporaryDirectory()
        let path = temp.path + "/ref.h5"
        let file = try HDF5File.create(path)
        try file.write("input_ids", int32s: ids, shape: shape)
        try extra(file)
        return (temp, path)
    }

    func message(_ body: () throws -> Void) -> String {
        do { try body(); return "no error" } catch { return "\(error)" }
    }

    @Test("bad references and bad input are refused with a precise message")
    func refusals() throws {
        let model = TestPaths.fixture("k25-tiny")
        // Not HDF5 at all.
        #expect(message { _ = try ReferenceDump(spec: model + "/config.json") }.contains("cannot open as HDF5"))
        // A group that is not there.
        #expect(message { _ = try ReferenceDump(spec: reference.replacingOccurrences(of: ":/exact", with: ":/nope")) }.contains("no group /nope"))
        // No input_ids.
        let (t1, noIDs) = try dump(ids: [1], shape: [1, 1])
        let noIDsGroup = try HDF5File.create(t1.path + "/empty.h5")
        try noIDsGroup.write("g/logits", floats: [0], shape: [1, 1, 1])
        #expect(message { _ = try ReferenceDump(spec: t1.path + "/empty.h5:/g") }.contains("no input_ids dataset"))
        _ = noIDs
        // input_ids of the wrong rank.
        let (t2, flat) = try dump(ids: [1, 2, 3], shape: [3])
        #expect(message { _ = try ReferenceDump(spec: flat) }.contains("input_ids has shape [3], expected [batch, tokens]"))
        // A negative token id.
        let (t3, negative) = try dump(ids: [1, -4], shape: [1, 2])
        #expect(message { _ = try ReferenceDump(spec: negative) }.contains("input_ids[0][1] = -4 is not a token id"))
        // A token id outside the vocabulary.
        let vocab = try FixtureRecord.vocabularySize("k25-tiny")
        let (t4, outside) = try dump(ids: [1, Int32(vocab)], shape: [1, 2])
        #expect(message { _ = try ParityHarness.run(model: model, reference: outside) }
            .contains("token id \(vocab) at position 1 is outside the vocabulary of \(vocab)"))
        // An activation of the wrong shape.
        let (t5, wrongShape) = try dump(ids: [1, 2], shape: [1, 2]) { try $0.write("layers/0/attn_out", floats: [Float](repeating: 0, count: 2 * 32), shape: [1, 2, 32]) }
        #expect(message { _ = try ParityHarness.run(model: model, reference: wrongShape) }
            .contains("layers/0/attn_out has shape [1, 2, 32], expected [1, 2, 64]"))
        // Router choices naming an expert that does not exist.
        let (t6, badExperts) = try dump(ids: [1, 2], shape: [1, 2]) { try $0.write("layers/1/topk_indices", int32s: [0, 1, 2, 9], shape: [1, 2, 2]) }
        #expect(message { _ = try ParityHarness.run(model: model, reference: badExperts) }.contains("holds expert 9, outside 0..<8"))
        // A slice with no dumped input to start from.
        let (t7, idsOnly) = try dump(ids: [1, 2], shape: [1, 2])
        #expect(message { _ = try ParityHarness.run(model: model, reference: idsOnly, layers: 1...2) }
            .contains("starting at layer 1 needs layers/1/layer_in in the reference"))
        // A slice outside the model.
        #expect(message { _ = try ParityHarness.run(model: model, reference: idsOnly, layers: 2...5) }
            .contains("--layers 2..5 is outside the model's layers 0..2"))
        // A broken checkpoint is refused before any arithmetic, naming its problem.
        #expect(message { _ = try ParityHarness.run(model: TestPaths.fixture("malformed/wrong_shape"), reference: idsOnly) }
            .contains("(run `k2pack verify`); first:"))
        withExtendedLifetime([t1, t2, t3, t4, t5, t6, t7]) {}
    }

    @Test("a dump with only input_ids runs the model and compares nothing")
    func idsOnly() throws {
        let (temp, path) = try dump(ids: [3, 17, 42], shape: [1, 3])
        let report = try ParityHarness.run(model: TestPaths.fixture("deepseek-v3-tiny"), reference: path)
        #expect(report.pass && report.logits == nil && report.layers.allSatisfy { $0.chained.isEmpty })
        #expect(report.tokensPerSecond > 0)
        withExtendedLifetime(temp) {}
    }
}
