import FileIO
import JSONCore
import Checkpoint
import ModelConfig
import TensorCore

/// A Hugging Face checkpoint folder opened and checked: its files, its config (when readable), the tensors the
/// config implies (built once per open; the forward pass and the writers reuse `expected`), where each header
/// entry sits in that list, and everything wrong found on the way, as typed `CheckpointProblem`s.
public struct LoadedCheckpoint: Sendable {
    public var directory: CheckpointDirectory
    public var config: ModelConfig?
    public var expected: ExpectedTensorList?
    /// For each opened shard and header entry: its position in `expected.tensors`, or -1 when the config does
    /// not imply it. Computed once (one lookup per tensor) and shared by inspect, verify and the data scan.
    public var positions: [[Int]] = []
    /// What is wrong, at most `CheckpointProblem.perCodeLimit` per code (the rest summarised in one `omitted`),
    /// so a hostile folder's list stays bounded.
    public var problems: [CheckpointProblem]

    /// `ignoringQuantization`: expect every Linear as a plain `.weight`, whatever `quantization_config` says
    /// (a "dequantized" copy whose config still claims to be compressed).
    ///
    /// The config is planned (parsed and expanded into the expected tensor list) on a second thread while the
    /// directory reads the index and the shard headers; that plan is used only when the directory then read the
    /// same config.json bytes (otherwise the plan is made again from the directory's bytes), so what is checked
    /// is what `init(directory:)` would check.
    public init(path: String, ignoringQuantization: Bool = false) throws(CheckpointError) {
        // The directory on this thread, so that its own parallel reads (index and headers, then the lookups) use
        // both cores; the plan on a thread of its own (a two-item parallelMap ran the directory's jobs on one core).
        let (opened, plan) = withSideJob({ ConfigPlan(folder: path, ignoringQuantization: ignoringQuantization) }) {
            Result { () throws(CheckpointError) in try CheckpointDirectory(path: path) }
        }
        let directory = try opened.get()
        self.init(directory: directory, ignoringQuantization: ignoringQuantization, plan: plan)
    }

    /// The same checks over a folder already opened: the config is parsed from the bytes the directory read
    /// (no second read of config.json, no second open of the shards), e.g. to plan it again ignoring quantization.
    public init(directory: CheckpointDirectory, ignoringQuantization: Bool = false) {
        self.init(directory: directory, ignoringQuantization: ignoringQuantization, plan: nil)
    }

    /// `plan`: the config already planned from some bytes; used only when they are the directory's config.json.
    private init(directory: CheckpointDirectory, ignoringQuantization: Bool, plan: ConfigPlan?) {
        // config.json is read once, by the directory, and those bytes are the ones parsed here: the config that
        // is validated is the one convert, quantize and shard copy to their output.
        self.directory = directory
        problems = directory.problems.map(CheckpointProblem.file) + directory.warnings.map(CheckpointProblem.folderWarning)
        guard let configBytes = directory.configBytes else {
            problems.append(.config(.missingConfig(path: directory.path)))
            problems = CheckpointProblem.capped(problems)
            return
        }
        let made = plan.flatMap { $0.bytes == configBytes ? $0 : nil }
            ?? ConfigPlan(bytes: configBytes, ignoringQuantization: ignoringQuantization)
        let parsed = made.parsed
        switch made.planned {
        case .success(let (config, expected)):
            self.config = config
            self.expected = expected
            // One lookup per tensor, shards in parallel: each name is read once against the manifest's name
            // patterns (no table of every expected name is built).
            let shards = directory.shards
            positions = parallelMap(count: shards.count) { s in (shards[s]?.tensors ?? []).map { expected.position(of: $0.name) ?? -1 } }
            problems += Self.structuralProblems(directory, expected, positions)
        case .failure(let error):
            if let parsed { self.config = parsed }
            problems.append(.config(error))
        }
        problems = CheckpointProblem.capped(problems)
    }

    /// Why the folder cannot be used for anything that reads tensor data (structural errors, or no usable
    /// config.json), naming the first problem; nil when it can. Every finding's message names its file and tensor.
    public var unusableReason: String? {
        let errors = problems.filter { $0.severity == .error }
        guard !errors.isEmpty || config == nil else { return nil }
        return "\(displayed(directory.path)) has \(errors.count) problem\(errors.count == 1 ? "" : "s") (run `k2pack verify`); first: \(errors.first?.message ?? "no readable config.json")"
    }

    /// The expected tensor a header entry corresponds to.
    public func expected(shard: Int, entry: Int) -> ExpectedTensor? {
        guard let expected, shard < positions.count, positions[shard][entry] >= 0 else { return nil }
        return expected.tensors[positions[shard][entry]]
    }

    /// Logical parameters a tensor contributes, from its stored shape: elements for plain tensors (and tensors
    /// the config does not imply), codes for packed INT4 (32/bits per stored word), nothing for scales and
    /// shape records.
    public static func parameterCount(of entry: TensorEntry, expected: ExpectedTensor?) -> Int {
        guard let e = expected else { return entry.elementCount }
        return parameterCount(of: entry, form: e.form, method: e.method)
    }

    /// The same, from the expected tensor's form and method (read in place, without copying the whole entry).
    public static func parameterCount(of entry: TensorEntry, form: TensorForm, method: QuantizationScheme.Method?) -> Int {
        parameterCount(elementCount: entry.elementCount, dtype: entry.dtype, form: form, method: method)
    }

    /// The same, from the entry's element count and dtype.
    public static func parameterCount(elementCount: Int, dtype: DType, form: TensorForm, method: QuantizationScheme.Method?) -> Int {
        switch form {
        case .plain: return elementCount
        case .packed:
            guard case let .packQuantized(bits, _, _)? = method, dtype == .i32 else { return elementCount }
            return elementCount * (32 / bits)
        case .scale, .shape, .blockScale: return 0
        }
    }

    /// Every tensor the config implies is present with the right shape and dtype, and nothing else is.
    static func structuralProblems(_ dir: CheckpointDirectory, _ expected: ExpectedTensorList, _ positions: [[Int]]) -> [CheckpointProblem] {
        // The index is asked about missing tensors only (its name table: no dictionary of every name is built).
        let index = dir.index
        return structuralProblems(
            shardNames: dir.shardNames, headers: dir.shards.map { $0?.tensors },
            isIndexed: index.map { index in { (name: String) -> Bool in index.shardPosition(of: name) != nil } },
            locate: { dir.locations[ByteName($0)]?.shard }, expected, positions)
    }

    /// The same check over any set of headers (a Hugging Face folder's shards, the source headers a k2pack folder
    /// keeps): `headers` parallel to `shardNames` (nil: unreadable), `locate` the shard holding a tensor name.
    public static func structuralProblems(
        shardNames: [String], headers: [[TensorEntry]?], indexed: [ByteName: String]?, locate: (String) -> Int?,
        _ expected: ExpectedTensorList, _ positions: [[Int]]
    ) -> [CheckpointProblem] {
        structuralProblems(
            shardNames: shardNames, headers: headers, isIndexed: indexed.map { indexed in { (name: String) -> Bool in indexed[ByteName(name)] != nil } },
            locate: locate, expected, positions)
    }

    /// `isIndexed`: whether the index lists a tensor name (nil: there is no index).
    static func structuralProblems(
        shardNames: [String], headers: [[TensorEntry]?], isIndexed: ((String) -> Bool)?, locate: (String) -> Int?,
        _ expected: ExpectedTensorList, _ positions: [[Int]]
    ) -> [CheckpointProblem] {
        var problems: [CheckpointProblem] = []
        var present = [Bool](repeating: false, count: expected.count)
        for (s, tensors) in headers.enumerated() {
            guard let tensors else { continue }
            let name = shardNames[s]
            let shardPositions = positions[s]
            for i in tensors.indices {
                let position = shardPositions[i]
                guard position >= 0 else {
                    problems.append(.unexpectedTensor(file: name, tensor: tensors[i].name, shape: tensors[i].shape, dtype: tensors[i].dtype))
                    continue
                }
                present[position] = true
                // Fields are read in place (no copy of each entry); the expected tensors are built only to report
                // a problem.
                if tensors[i].shape != expected.shape(at: position) {
                    let e = expected.tensors[position]
                    problems.append(.wrongShape(file: name, tensor: e.name, found: tensors[i].shape, expected: e.shape, role: e.role))
                }
                if !expected.dtypes(at: position).contains(tensors[i].dtype) {
                    let e = expected.tensors[position]
                    problems.append(.wrongDType(file: name, tensor: e.name, found: tensors[i].dtype, expected: e.dtypes, role: e.role))
                }
            }
        }
        guard present.contains(false) else { return problems }
        // Tensors of unreadable shards are reported through the shard; tensors the index places in a shard
        // that lacks them are reported by the index cross-check.
        let unreadable = headers.contains { $0 == nil }
        // Home shards are looked up once per layer (or per role outside the layers): a hostile config can
        // imply a million missing tensors.
        var homes: [String: String?] = [:]
        for (position, e) in expected.tensors.enumerated() where !present[position] {
            if isIndexed?(e.name) == true { continue }
            if isIndexed == nil, unreadable { continue }
            let key = e.layer.map { "layer \($0)" } ?? "role \(e.role)"
            let home: String?
            if let known = homes[key] {
                home = known
            } else {
                home = likelyShard(of: position, in: expected, locate: locate).map { shardNames[$0] }
                homes[key] = home
            }
            problems.append(.missingTensor(tensor: e.name, shape: e.shape, dtypes: e.dtypes, role: e.role, inLayer: e.layer != nil, home: home))
        }
        return problems
    }

    /// Where a missing tensor belongs: the shard of the nearest present tensor of the same decoder layer, or for
    /// tensors outside the layers, of the same role (vision tower, projector).
    static func likelyShard(of position: Int, in expected: ExpectedTensorList, locate: (String) -> Int?) -> Int? {
        let target = expected.tensors[position]
        let count = expected.tensors.count
        for distance in 1...min(count, 4096) {
            for candidate in [position - distance, position + distance] where candidate >= 0 && candidate < count {
                let neighbour = expected.tensors[candidate]
                let related = target.layer != nil ? neighbour.layer == target.layer : (neighbour.layer == nil && neighbour.role == target.role)
                guard related else { continue }
                if let shard = locate(neighbour.name) { return shard }
            }
        }
        return nil
    }
}

/// A config.json parsed and expanded into the expected tensor list (or the error that stopped it), with the bytes
/// it came from.
struct ConfigPlan: Sendable {
    var bytes: [UInt8]
    /// The parsed config, when parsing succeeded (even if the expansion then failed).
    var parsed: ModelConfig?
    var planned: Result<(ModelConfig, ExpectedTensorList), ConfigError>

    init(bytes: [UInt8], ignoringQuantization: Bool) {
        self.bytes = bytes
        var parsed: ModelConfig?
        planned = Result { () throws(ConfigError) -> (ModelConfig, ExpectedTensorList) in
            var config = try ModelConfig.parse(bytes)
            if ignoringQuantization { config.quantization = nil }
            parsed = config
            return (config, try ExpectedTensorList(config: config))
        }
        self.parsed = parsed
    }

    /// The plan of `folder`'s config.json read ahead of the directory (through the same folder guard), or nil
    /// when it cannot be read; the directory's own reading decides what is reported.
    init?(folder: String, ignoringQuantization: Bool) {
        guard let file = try? ReadOnlyFile(folder: folder, name: CheckpointDirectory.configFileName),
            let bytes = try? file.readAll()
        else { return nil }
        self.init(bytes: bytes, ignoringQuantization: ignoringQuantization)
    }
}
