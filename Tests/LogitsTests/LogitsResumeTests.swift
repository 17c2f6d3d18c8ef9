import Forward
import Foundation
import Parity
import ReferenceLogits
import TestSupport
import Testing

/// `k2pack logits --resume`: a run stopped after a layer (the test hook stands for a kill) and started again goes
/// on from the next layer and writes the same bytes; a record of another run or damaged states are refused.
@Suite("Resumable reference logits")
struct LogitsResumeTests {
    struct Stop: Error, Equatable {}

    /// Records the layers a run went through and throws `Stop` after `stopAfter`.
    final class Hook: @unchecked Sendable {
        var layers: [Int] = []
        let stopAfter: Int?
        init(stopAfter: Int?) { self.stopAfter = stopAfter }
        func callAsFunction(_ layer: Int) throws {
            layers.append(layer)
            if layer == stopAfter { throw Stop() }
        }
    }

    static let model = "k25-tiny"
    /// k25-tiny has 3 layers: 6 windows of 8 tokens.
    static func input(seed: Int = 96) throws -> TokenWindows {
        try TokenWindows.cut(ModelAgreement.probeIDs(count: seed, vocab: 256).prefix(48).map { Int($0) }, context: 8, bos: nil, source: "t")
    }

    static func resume(_ pass: ForwardPass, _ hook: Hook) -> LogitsResume {
        LogitsResume(model: LogitsResume.modelIdentity(path: TestPaths.fixture(model), pass: pass), afterLayer: { try hook($0) })
    }

    static func bytes(_ path: String) throws -> Data { try Data(contentsOf: URL(fileURLWithPath: path)) }

    static let leftBehind = [".ref.h5.resume-state-0", ".ref.h5.resume-state-1", ".ref.h5.resume.json"]

    /// A run of `input` into `folder/ref.h5` stopped after `layer`: the record and the states are there.
    static func interrupted(_ pass: ForwardPass, folder: String, layer: Int, form: LogitsReference.Form = .full, windowsPerBatch: Int = 1) throws {
        #expect(throws: Stop.self) {
            try LogitsReference.make(
                pass: pass, input: try input(), form: form, output: folder + "/ref.h5", inputs: [], memoryBudget: 1 << 30,
                windowsPerBatch: windowsPerBatch, resume: resume(pass, Hook(stopAfter: layer)))
        }
        #expect(LogitsFixtures.files(folder) == leftBehind)
    }

    @Test("stopped after a layer and resumed: byte-identical to an uninterrupted run, only the layers after it run, nothing left",
          arguments: [(0, false, 1), (1, false, 1), (2, false, 1), (1, true, 2)])
    func identical(_ layer: Int, _ compact: Bool, _ windowsPerBatch: Int) throws {
        let pass = try LogitsFixtures.pass(Self.model, .exact)
        let form: LogitsReference.Form = compact ? .compact(k: 16) : .full
        let dir = TemporaryDirectory()
        let plain = try LogitsReference.make(
            pass: pass, input: try Self.input(), form: form, output: dir.path + "/plain.h5", inputs: [], memoryBudget: 1 << 30,
            windowsPerBatch: windowsPerBatch)
        let run = dir.path + "/run"
        try FileManager.default.createDirectory(atPath: run, withIntermediateDirectories: false)
        try Self.interrupted(pass, folder: run, layer: layer, form: form, windowsPerBatch: windowsPerBatch)
        let hook = Hook(stopAfter: nil)
        let resumed = try LogitsReference.make(
            pass: pass, input: try Self.input(), form: form, output: run + "/ref.h5", inputs: [], memoryBudget: 1 << 30,
            windowsPerBatch: windowsPerBatch, resume: Self.resume(pass, hook))
        #expect(hook.layers == Array((layer + 1)..<3))
        #expect(try Self.bytes(run + "/ref.h5") == Self.bytes(dir.path + "/plain.h5"))
        #expect(resumed.perplexity == plain.perplexity && resumed.predictions == plain.predictions)
        #expect(LogitsFixtures.files(run) == ["ref.h5"])
        // An uninterrupted run with --resume: the same bytes, and its record removed at the end.
        let again = Hook(stopAfter: nil)
        _ = try LogitsReference.make(
            pass: pass, input: try Self.input(), form: form, output: dir.path + "/whole.h5", inputs: [], memoryBudget: 1 << 30,
            windowsPerBatch: windowsPerBatch, resume: Self.resume(pass, again))
        #expect(again.layers == [0, 1, 2])
        #expect(try Self.bytes(dir.path + "/whole.h5") == Self.bytes(dir.path + "/plain.h5"))
        #expect(LogitsFixtures.files(dir.path) == ["plain.h5", "run", "whole.h5"])
    }

    @Test("a record of another model, other ids or other options is refused by the field that differs; the record is kept")
    func otherRun() throws {
        let pass = try LogitsFixtures.pass(Self.model, .exact)
        let dir = TemporaryDirectory()
        try Self.interrupted(pass, folder: dir.path, layer: 0)
        let record = dir.path + "/.ref.h5.resume.json"
        let ours = LogitsResume.modelIdentity(path: TestPaths.fixture(Self.model), pass: pass)
        let other = LogitsResume.modelIdentity(path: TestPaths.fixture("k2-thinking-tiny"), pass: try LogitsFixtures.pass("k2-thinking-tiny", .exact))
        #expect(other["model"] != ours["model"] && other["model_files_sha256"] != ours["model_files_sha256"])
        func attempt(model: [String: String] = ours, input: TokenWindows? = nil, form: LogitsReference.Form = .full, windowsPerBatch: Int = 1) throws {
            _ = try LogitsReference.make(
                pass: pass, input: try input ?? Self.input(), form: form, output: dir.path + "/ref.h5", inputs: [], memoryBudget: 1 << 30,
                windowsPerBatch: windowsPerBatch, resume: LogitsResume(model: model))
        }
        let afresh = "remove \(dir.path)/.ref.h5.resume.json and \(dir.path)/.ref.h5.resume-state-0/-1 to start afresh"
        var model = ours
        model["model_files_sha256"] = "0"
        let modelError = LogitsError.resumeMismatch(record: record, key: "model_files_sha256", found: ours["model_files_sha256"]!, expected: "0")
        #expect(throws: modelError) { try attempt(model: model) }
        #expect(modelError.description == "--resume: \(record) is the record of another run: its model_files_sha256 is \(ours["model_files_sha256"]!), this run's is 0; \(afresh)")
        #expect(throws: LogitsError.resumeMismatch(record: record, key: "model", found: ours["model"]!, expected: other["model"]!)) { try attempt(model: other) }
        let otherIDs = try TokenWindows.cut(Array(0..<48), context: 8, bos: nil, source: "t")
        do {
            try attempt(input: otherIDs)
            Issue.record("other ids were accepted")
        } catch let LogitsError.resumeMismatch(file, key, _, _) {
            #expect(file == record && key == "ids_sha256")
        }
        let otherCtx = try TokenWindows.cut(ModelAgreement.probeIDs(count: 96, vocab: 256).prefix(48).map { Int($0) }, context: 6, bos: nil, source: "t")
        #expect(throws: LogitsError.resumeMismatch(record: record, key: "ctx", found: "8", expected: "6")) { try attempt(input: otherCtx) }
        #expect(throws: LogitsError.resumeMismatch(record: record, key: "form", found: "full", expected: "compact top 16")) { try attempt(form: .compact(k: 16)) }
        #expect(throws: LogitsError.resumeMismatch(record: record, key: "windows_per_batch", found: "1", expected: "2")) { try attempt(windowsPerBatch: 2) }
        #expect(LogitsFixtures.files(dir.path) == Self.leftBehind)
        // The record was not touched: the right run still goes on from it.
        let hook = Hook(stopAfter: nil)
        _ = try LogitsReference.make(
            pass: pass, input: try Self.input(), form: .full, output: dir.path + "/ref.h5", inputs: [], memoryBudget: 1 << 30, resume: Self.resume(pass, hook))
        #expect(hook.layers == [1, 2])
        #expect(LogitsFixtures.files(dir.path) == ["ref.h5"])
    }

    @Test("truncated, changed or missing states and a damaged record are refused with the file and what is wrong")
    func damaged() throws {
        let pass = try LogitsFixtures.pass(Self.model, .exact)
        let dir = TemporaryDirectory()
        let record = dir.path + "/.ref.h5.resume.json", states = dir.path + "/.ref.h5.resume-state-1"
        func attempt() throws {
            _ = try LogitsReference.make(
                pass: pass, input: try Self.input(), form: .full, output: dir.path + "/ref.h5", inputs: [], memoryBudget: 1 << 30,
                resume: Self.resume(pass, Hook(stopAfter: nil)))
        }
        let afresh = "remove \(dir.path)/.ref.h5.resume.json and \(dir.path)/.ref.h5.resume-state-0/-1 to start afresh"
        // Stopped after layer 1: its states are in state-1 (48 rows of the hidden size, float32).
        try Self.interrupted(pass, folder: dir.path, layer: 1)
        let whole = try Self.bytes(states)
        #expect(whole.count == 48 * pass.forward.hiddenSize * 4)
        let saved = try Self.bytes(record)

        try whole.prefix(whole.count / 2).write(to: URL(fileURLWithPath: states))
        let truncated = LogitsError.resumeState(file: states, reason: "\(whole.count / 2) bytes, expected \(whole.count) (the record says \(whole.count))")
        #expect(throws: truncated) { try attempt() }
        #expect(truncated.description == "--resume: the saved hidden states \(states) are \(whole.count / 2) bytes, expected \(whole.count) (the record says \(whole.count)); \(afresh)")

        var changed = whole
        changed[100] ^= 0x40
        try changed.write(to: URL(fileURLWithPath: states))
        do {
            try attempt()
            Issue.record("changed states were accepted")
        } catch let LogitsError.resumeState(file, reason) {
            #expect(file == states && reason.hasPrefix("SHA-256 ") && reason.contains(", the record says "))
        }

        try FileManager.default.removeItem(atPath: states)
        #expect(throws: LogitsError.resumeState(file: states, reason: "missing (No such file or directory)")) { try attempt() }
        try whole.write(to: URL(fileURLWithPath: states))

        func edited(_ change: (inout [String: Any]) -> Void) throws {
            var object = try #require(try JSONSerialization.jsonObject(with: saved) as? [String: Any])
            change(&object)
            try JSONSerialization.data(withJSONObject: object).write(to: URL(fileURLWithPath: record))
        }
        try edited { $0["version"] = 2 }
        #expect(throws: LogitsError.resumeRecord(record: record, reason: "version 2, expected 1")) { try attempt() }
        try edited { $0["layer"] = 7 }
        #expect(throws: LogitsError.resumeRecord(record: record, reason: "layer 7, expected 0 to 2")) { try attempt() }
        try edited { $0["states"] = ".ref.h5.resume-state-0" }
        #expect(throws: LogitsError.resumeRecord(record: record, reason: "states in .ref.h5.resume-state-0, expected .ref.h5.resume-state-1 for layer 1")) { try attempt() }
        try Data("{\"version\": 1, \"layer\": ".utf8).write(to: URL(fileURLWithPath: record))
        do {
            try attempt()
            Issue.record("a cut record was accepted")
        } catch let error as LogitsError {
            guard case let .resumeRecord(file, reason) = error else { throw error }
            #expect(file == record && reason.hasPrefix("not a k2pack logits record ("))
            #expect(error.description.hasPrefix("--resume: \(record) is not a usable record: not a k2pack logits record ("))
            #expect(error.description.hasSuffix(afresh))
        }
        try Data(count: (1 << 20) + 1).write(to: URL(fileURLWithPath: record))
        #expect(throws: LogitsError.resumeRecord(record: record, reason: "\((1 << 20) + 1) bytes, more than a record's \(1 << 20)")) { try attempt() }
        // Nothing was made by the refused runs; the untouched states resume once the record is back.
        #expect(LogitsFixtures.files(dir.path) == Self.leftBehind)
        try saved.write(to: URL(fileURLWithPath: record))
        try attempt()
        #expect(LogitsFixtures.files(dir.path) == ["ref.h5"])
    }

    @Test("the driver: resuming after a layer the model does not have, or a checkpoint file that cannot be opened, is refused")
    func driverRefusals() throws {
        let pass = try LogitsFixtures.pass(Self.model, .exact)
        let dir = TemporaryDirectory()
        let input = try Self.input()
        let driver = LayerMajorForward(pass: pass)
        let beyond = LayerCheckpoints(files: (dir.path + "/a", dir.path + "/b"), resumeAfter: 3) { _, _ in }
        #expect(throws: ForwardError.input("resuming after layer 3: the model has layers 0 to 2")) {
            try driver.run(ids: input.ids, windows: input.windows, tokens: input.tokens, checkpoints: beyond) { _, _, _ in }
        }
        let nowhere = LayerCheckpoints(files: ("/nonexistent-k2pack/a", "/nonexistent-k2pack/b"), resumeAfter: nil) { _, _ in }
        #expect(throws: ForwardError.io("/nonexistent-k2pack/a: cannot open the checkpoint file for the activations: No such file or directory")) {
            try driver.run(ids: input.ids, windows: input.windows, tokens: input.tokens, checkpoints: nowhere) { _, _, _ in }
        }
        #expect(LogitsFixtures.files(dir.path).isEmpty)
    }
}
