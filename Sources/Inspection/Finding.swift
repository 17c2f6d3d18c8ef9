import Checkpoint
import LoadedModel
import ModelConfig

/// One problem (or warning) found in a checkpoint, naming the file and tensor where there are some.
public struct Finding: Sendable, Codable, Equatable, CustomStringConvertible {
    public enum Severity: String, Sendable, Codable { case error, warning }

    public var severity: Severity
    /// A stable machine-readable kind, e.g. `missing_tensor`, `scale_not_finite`.
    public var code: String
    public var file: String?
    public var tensor: String?
    public var message: String
    /// On a summary line only: how many more findings of this code (and severity) were left out.
    public var more: Int?

    public init(_ severity: Severity = .error, code: String, file: String? = nil, tensor: String? = nil, message: String) {
        self.severity = severity
        self.code = code
        self.file = file
        self.tensor = tensor
        self.message = message
    }

    /// Findings listed per code (and severity) before the rest are summarised in one line.
    public static let perCodeLimit = CheckpointProblem.perCodeLimit

    /// The first `limit` findings of each code and severity, in order, then one summary per code that had more
    /// ("… and N more"), so a hostile checkpoint (a million missing tensors) gives a report of bounded size.
    /// Applying it again changes nothing. The same rule as the model layer's `CheckpointProblem.capped`.
    public static func capped(_ findings: [Finding], limit: Int = perCodeLimit) -> [Finding] {
        cappedPerCode(
            findings, limit: limit, key: { ProblemKey(code: $0.code, error: $0.severity == .error) }, omitted: \.more,
            summary: { key, count in
                Finding(CheckpointProblem.omitted(code: key.code, severity: key.error ? .error : .warning, count: count, limit: limit))
            })
    }

    public var description: String { message }

    /// The report line for a problem the model layer found.
    public init(_ problem: CheckpointProblem) {
        self.init(problem.severity == .error ? .error : .warning, code: problem.code, file: problem.file, tensor: problem.tensor, message: problem.message)
        more = problem.omittedCount
    }

    init(_ error: CheckpointError) {
        self.init(CheckpointProblem.file(error))
    }

    init(_ error: ConfigError) {
        self.init(CheckpointProblem.config(error))
    }
}
