import Checkpoint
import LoadedModel
import TensorCore
import TestSupport
import Testing

/// The model layer reports what is wrong as typed values; reports (Inspection) only render them.
@Suite("checkpoint problems as typed values")
struct CheckpointProblemTests {
    @Test("structural problems are typed cases carrying what was found and what the config implies")
    func structuralCases() throws {
        let shape = try LoadedCheckpoint(path: TestPaths.fixture("malformed/wrong_shape"))
        guard case let .wrongShape(file, tensor, found, expected, _)? = shape.problems.first else {
            Issue.record("expected a wrong shape, got \(shape.problems)")
            return
        }
        #expect(shape.problems.count == 1)
        #expect(found != expected)
        #expect(shape.problems[0].file == file && shape.problems[0].tensor == tensor)
        #expect(shape.problems[0].code == "wrong_shape" && shape.problems[0].severity == .error)
        #expect(shape.problems[0].message.contains("shape \(formatShape(found)), expected \(formatShape(expected)) from config.json"))
        #expect(shape.unusableReason?.hasSuffix("first: \(shape.problems[0].message)") == true)

        let missing = try LoadedCheckpoint(path: TestPaths.fixture("malformed/missing_tensor"))
        #expect(missing.problems.contains { if case .missingTensor = $0 { true } else { false } }, "\(missing.problems)")
        let unexpected = try LoadedCheckpoint(path: TestPaths.fixture("malformed/unexpected_tensor"))
        #expect(unexpected.problems.contains { if case .unexpectedTensor = $0 { true } else { false } }, "\(unexpected.problems)")
    }

    @Test("file and config problems keep the error they come from, and its code and message")
    func wrappedErrors() throws {
        let truncated = try LoadedCheckpoint(path: TestPaths.fixture("malformed/truncated_shard"))
        let file = try #require(truncated.problems.first { if case .file = $0 { true } else { false } })
        guard case let .file(error) = file else { return }
        #expect(file.code == error.code && file.message == error.description && file.file == error.file)

        let config = try LoadedCheckpoint(path: TestPaths.fixture("malformed/config_bad_json"))
        #expect(config.config == nil && config.expected == nil)
        let problem = try #require(config.problems.first { $0.code == "config" })
        guard case .config = problem else {
            Issue.record("expected a config problem, got \(problem)")
            return
        }
        #expect(problem.file == "config.json" && config.unusableReason != nil)
    }

    @Test("a long list keeps the first problems of each code and ends with one typed summary; capping twice changes nothing")
    func capped() {
        let many = (0..<25).map { CheckpointProblem.unexpectedTensor(file: "a.safetensors", tensor: "t\($0)", shape: [1], dtype: .bf16) }
            + [.carriedFile(path: "x", problem: "missing")]
        let capped = CheckpointProblem.capped(many, limit: 10)
        #expect(capped.count == 12)
        #expect(capped[10] == .carriedFile(path: "x", problem: "missing"))
        #expect(capped[11] == .omitted(code: "unexpected_tensor", severity: .error, count: 15, limit: 10))
        #expect(capped[11].message == "… and 15 more unexpected_tensor problems (the first 10 are listed)")
        #expect(capped[11].omittedCount == 15 && capped[11].file == nil)
        #expect(CheckpointProblem.capped(capped, limit: 10) == capped)
    }

    @Test("an opened folder planned again ignoring quantization equals a fresh open that ignores it, without reading config.json again")
    func replanned() throws {
        let folder = TestPaths.fixture("k2-thinking-tiny")
        let opened = try LoadedCheckpoint(path: folder)
        #expect(opened.config?.quantization != nil)
        let again = LoadedCheckpoint(directory: opened.directory, ignoringQuantization: true)
        let fresh = try LoadedCheckpoint(path: folder, ignoringQuantization: true)
        #expect(again.config?.quantization == nil)
        #expect(again.problems == fresh.problems)
        #expect(again.expected?.tensors.map(\.name) == fresh.expected?.tensors.map(\.name))
        #expect(again.positions == fresh.positions)
        #expect(again.problems.contains { $0.code == "unexpected_tensor" }, "a quantized folder read as plain has stray scales")
    }
}
