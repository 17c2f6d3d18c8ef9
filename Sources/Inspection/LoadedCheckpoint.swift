import Checkpoint
import ModelConfig
import TensorCore

/// A checkpoint folder opened for inspection: its files, its config (when readable), the tensors the config
/// implies, and everything wrong found on the way.
public struct LoadedCheckpoint: Sendable {
    public var directory: CheckpointDirectory
    public var config: ModelConfig?
    public var expected: ExpectedTensorList?
    public var findings: [Finding]

    public init(path: String) throws(CheckpointError) {
        directory = try CheckpointDirectory(path: path)
        findings = directory.problems.map(Finding.init) + directory.warnings.map {
            Finding(.warning, code: "index_total_size", file: ShardIndex.fileName, message: $0)
        }
        guard let bytes = directory.configBytes else {
            findings.append(Finding(ConfigError.missingConfig(path: path)))
            return
        }
        do {
            let config = try ModelConfig.parse(bytes)
            self.config = config
            expected = try ExpectedTensorList(config: config)
        } catch {
            findings.append(Finding(error))
        }
    }

    /// The role of an actual tensor (`unrecognized` when the config does not imply it).
    public func role(of name: String) -> String {
        expected?[name]?.role ?? "unrecognized"
    }

    /// Logical parameters a tensor contributes: elements for plain tensors, out × in for INT4 codes,
    /// nothing for scales and shape records.
    public func parameterCount(of entry: TensorEntry) -> Int {
        guard let e = expected?[entry.name] else { return entry.elementCount }
        switch e.form {
        case .plain: return entry.elementCount
        case .packed: return e.logicalShape.flatMap { CheckedMath.product($0) } ?? 0
        case .scale, .shape, .blockScale: return 0
        }
    }
}
