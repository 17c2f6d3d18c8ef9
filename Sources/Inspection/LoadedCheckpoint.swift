import Checkpoint
import ModelConfig
import Dispatch
import TensorCore

/// A checkpoint folder opened for inspection: its files, its config (when readable), the tensors the config
/// implies, and everything wrong found on the way.
public struct LoadedCheckpoint: Sendable {
    public var directory: CheckpointDirectory
    public var config: ModelConfig?
    public var expected: ExpectedTensorList?
    public var findings: [Finding]

    public init(path: String) throws(CheckpointError) {
        // The config and its expected tensor list do not depend on the shards: build them while the
        // shard headers are read.
        let planned = ConfigPlan()
        let group = DispatchGroup()
        DispatchQueue.global().async(group: group) { planned.load(folder: path) }
        let directory: CheckpointDirectory
        do {
            directory = try CheckpointDirectory(path: path)
        } catch {
            group.wait()
            throw error
        }
        group.wait()
        self.directory = directory
        findings = directory.problems.map(Finding.init) + directory.warnings.map {
            Finding(.warning, code: "index_total_size", file: ShardIndex.fileName, message: $0)
        }
        guard directory.configBytes != nil else {
            findings.append(Finding(ConfigError.missingConfig(path: path)))
            return
        }
        switch planned.result {
        case .success(let (config, expected))?:
            self.config = config
            self.expected = expected
        case .failure(let error)?:
            if let partial = planned.config { self.config = partial }
            findings.append(Finding(error))
        case nil:
            findings.append(Finding(ConfigError.missingConfig(path: path)))
        }
    }

    /// Logical parameters a tensor contributes: elements for plain tensors (and tensors the config does not
    /// imply), out × in for INT4 codes, nothing for scales and shape records.
    public static func parameterCount(of entry: TensorEntry, expected: ExpectedTensor?) -> Int {
        guard let e = expected else { return entry.elementCount }
        switch e.form {
        case .plain: return entry.elementCount
        case .packed: return e.logicalShape.flatMap { CheckedMath.product($0) } ?? 0
        case .scale, .shape, .blockScale: return 0
        }
    }
}

/// config.json parsed and expanded into the expected tensor list, off the main thread.
private final class ConfigPlan: @unchecked Sendable {
    var result: Result<(ModelConfig, ExpectedTensorList), ConfigError>?
    var config: ModelConfig?

    func load(folder: String) {
        guard let bytes = try? ReadOnlyFile(path: folder + "/" + CheckpointDirectory.configFileName).readAll() else { return }
        do throws(ConfigError) {
            let config = try ModelConfig.parse(bytes)
            self.config = config
            result = .success((config, try ExpectedTensorList(config: config)))
        } catch {
            result = .failure(error)
        }
    }
}
