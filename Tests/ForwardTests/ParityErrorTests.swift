import Forward
import Parity
import TestSupport
import Testing

/// Every `ParityError` case: the message it prints, and the run that throws it where a library call does.
@Suite("ParityError cases and messages")
struct ParityErrorTests {
    @Test(
        "each case's message",
        arguments: [
            (ParityError.layersOutside(first: 2, last: 5, layers: 3), "--layers 2..5 is outside the model's layers 0..2"),
            (.missingLayerInput(dump: "d.h5:/g", layer: 1), "d.h5:/g: starting at layer 1 needs layers/1/layer_in in the reference"),
            (.noLogits(dump: "r.h5"), "r.h5 has no logits dataset"),
            (.vocabularyMismatch(model: "m", found: 256, expected: 128), "m has a vocabulary of 256, the reference logits 128"),
            (.inputShapeMismatch(test: "t.h5", found: [1, 16], reference: "r.h5", expected: [2, 8]), "t.h5 has input_ids of shape [1, 16], r.h5 [2, 8]"),
            (.otherInputIDs(test: "t.h5", reference: "r.h5"), "t.h5 was made from other input_ids than r.h5"),
            (.noMatchingLogits(dump: "t.h5", expected: [2, 8, 256]), "t.h5 has no logits dataset of shape [2, 8, 256]"),
        ])
    func messages(_ error: ParityError, _ message: String) {
        #expect(error.description == message)
    }

    @Test("a layer range outside the model, and a slice with no layer_in to start from, are typed refusals")
    func layerRanges() throws {
        let model = TestPaths.fixture("k25-tiny")
        let temp = TemporaryDirectory()
        let path = temp.path + "/ids.h5"
        let file = try HDF5File.create(path)
        try file.write("input_ids", int32s: [1, 2], shape: [1, 2])
        #expect(throws: ParityError.layersOutside(first: 2, last: 5, layers: 3)) {
            _ = try ParityHarness.run(model: model, reference: path, layers: 2...5)
        }
        #expect(throws: ParityError.missingLayerInput(dump: path, layer: 1)) {
            _ = try ParityHarness.run(model: model, reference: path, layers: 1...2)
        }
        withExtendedLifetime(temp) {}
    }
}
