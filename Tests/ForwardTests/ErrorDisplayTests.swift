import Checkpoint
import Forward
import JSONCore
import Parity
import Requantize
import Shard
import TestSupport
import Testing
import PackFormat

/// The forward pass's, quantizer's, sharder's and reference reader's errors show every outside string through
/// `displayed(_:)`: tensor names, config values, dump paths and group names.
@Suite struct ErrorDisplayTests {
    static let h = "t\u{1B}[2J\nOK: b\u{2067}"
    static let e = "t\\x1B[2J\\nOK: b\\u{2067}"

    static func check(_ text: String, fields: Int, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(rawTerminalControls(text).isEmpty && !text.unicodeScalars.contains("\n"), "\(text)", sourceLocation: sourceLocation)
        #expect(text.components(separatedBy: e).count - 1 == fields, "\(text)", sourceLocation: sourceLocation)
    }

    @Test func forwardErrors() {
        let h = Self.h
        let cases: [(ForwardError, Int)] = [
            (.missingTensor(h), 1), (.wrongTensor(name: h, reason: h), 2), (.config(key: h, reason: h), 2),
            (.unsupported(h), 1), (.input(h), 1), (.io(h), 1),
        ]
        for (error, fields) in cases { Self.check(error.description, fields: fields) }
        // A sentence of ours around a name is never shortened.
        let sentence = "x.k2z is a zstd archive (convert --compress); run the forward pass on the uncompressed k2pack folder or the Hugging Face folder, " + String(repeating: "z", count: 300)
        #expect(ForwardError.unsupported(sentence).description.hasSuffix(sentence))
    }

    @Test func requantizeErrors() {
        let h = Self.h
        let cases: [(RequantizeError, Int)] = [
            (.brokenCheckpoint(reason: h), 1), (.alreadyQuantized(folder: h, scheme: h), 2), (.notQuantized(folder: h), 1), (.noQuantizedModules(folder: h), 1),
            (.schemeUnreadable(.io(path: h, operation: "open", reason: h)), 2), (.schemeJSON(file: h, error: JSONError(offset: 0, reason: h)), 2),
            (.noNativeScheme(architecture: h), 1), (.schemeFormat(found: h), 1), (.schemeSetting(group: h, key: h, found: h, expected: "4"), 3),
            (.schemeGroupSize(group: h), 1), (.tensor(file: h, tensor: h, reason: h), 3),
        ]
        for (error, fields) in cases { Self.check(error.description, fields: fields) }
    }

    @Test func parityErrors() {
        let h = Self.h
        let cases: [(ParityError, Int)] = [
            (.layersOutside(first: 1, last: 9, layers: 3), 0), (.missingLayerInput(dump: h, layer: 2), 1), (.noLogits(dump: h), 1),
            (.vocabularyMismatch(model: h, found: 3, expected: 4), 1), (.inputShapeMismatch(test: h, found: [1, 2], reference: h, expected: [2, 1]), 2),
            (.otherInputIDs(test: h, reference: h), 2), (.noMatchingLogits(dump: h, expected: [1, 2, 3]), 1),
        ]
        for (error, fields) in cases { Self.check(error.description, fields: fields) }
    }

    @Test func shardErrors() {
        let h = Self.h
        let cases: [(ShardError, Int)] = [(.layout(h), 1), (.indivisible(tensor: h, reason: h), 2), (.input(h), 1)]
        for (error, fields) in cases { Self.check(error.description, fields: fields) }
    }

    @Test func referenceDumpErrors() {
        let h = Self.h
        Self.check(HDF5File.HDF5Error(path: h, reason: h).description, fields: 2)
        // A missing dump and a missing group, named as given.
        for spec in ["/nonexistent/\(Self.h).h5", TestPaths.fixture("references/k25-tiny.h5") + ":/\(Self.h)"] {
            do {
                _ = try ReferenceDump(spec: spec)
                Issue.record("opened \(spec)")
            } catch {
                Self.check("\(error)", fields: 1)
            }
        }
    }
}
