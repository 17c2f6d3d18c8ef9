import JSONCore
import TensorCore

/// A parsed config.json: which architecture, its text (and vision) settings, and its quantization scheme.
public struct ModelConfig: Sendable {
    public var architecture: ArchitectureManifest
    /// The whole document.
    public var raw: JSONObject
    /// The text model's settings (the nested `text_config` for K2.5, the top level otherwise).
    public var text: TextConfig
    /// The vision settings, for architectures with a vision tower.
    public var vision: JSONObject?
    public var quantization: QuantizationScheme?
    /// The dtype unquantized weights are stored in (`torch_dtype` / `dtype`).
    public var weightDType: DType

    public static let fileName = "config.json"

    public static func parse(_ bytes: [UInt8], file: String = ModelConfig.fileName) throws(ConfigError) -> ModelConfig {
        let root: JSONValue
        do {
            root = try JSONDocument.parse(bytes, maxDepth: JSONDepth.config)
        } catch {
            throw .invalidJSON(file: file, error: error)
        }
        guard let object = root.objectValue else { throw .notAnObject(file: file, key: nil) }
        let architectures = try ManifestLibrary.architectures()
        let modelType = object["model_type"]?.stringValue
        guard let arch = architectures.first(where: { a in modelType.map { a.modelTypes.contains($0) } ?? false }) else {
            throw .unknownArchitecture(modelType: modelType, known: architectures.flatMap(\.modelTypes))
        }
        var textObject = object
        var textSection = "config"
        if let key = arch.textConfigKey {
            guard let nested = object[key] else { throw .missingKey(file: file, section: "config", key: key) }
            guard let nestedObject = nested.objectValue else { throw .notAnObject(file: file, key: key) }
            textObject = nestedObject
            textSection = key
        }
        var rules: [ConfigKeyRule] = []
        for part in arch.parts where part.config == .text { rules += try ManifestLibrary.configRules(named: part.specs) }
        let text = try TextConfig(textObject, rules: rules, section: textSection, file: file)
        var vision: JSONObject?
        if let key = arch.visionConfigKey {
            guard let v = object[key] else { throw .missingKey(file: file, section: "config", key: key) }
            guard let vo = v.objectValue else { throw .notAnObject(file: file, key: key) }
            vision = vo
        }
        var quantization: QuantizationScheme?
        if let q = textObject["quantization_config"], !q.isNull, arch.textConfigKey != nil {
            quantization = try QuantizationScheme.parse(q, location: textSection, file: file)
        } else if let q = object["quantization_config"], !q.isNull {
            quantization = try QuantizationScheme.parse(q, location: "top level", file: file)
        }
        let dtypeName = textObject["torch_dtype"]?.stringValue ?? textObject["dtype"]?.stringValue
            ?? object["torch_dtype"]?.stringValue ?? object["dtype"]?.stringValue ?? "bfloat16"
        guard let dtype = Self.dtype(torchName: dtypeName) else {
            throw .invalidValue(file: file, section: textSection, key: "torch_dtype", reason: "unsupported dtype \"\(displayed(dtypeName))\"")
        }
        return ModelConfig(
            architecture: arch, raw: object, text: text, vision: vision, quantization: quantization, weightDType: dtype)
    }

    static func dtype(torchName: String) -> DType? {
        switch torchName.replacingOccurrences(of: "torch.", with: "") {
        case "bfloat16": .bf16
        case "float16", "half": .f16
        case "float32", "float": .f32
        default: nil
        }
    }

    /// A value from the section a manifest part reads (text or vision config).
    func lookup(_ key: String, in section: ArchitecturePart.ConfigSection) -> JSONValue? {
        switch section {
        case .text: text.values[key]
        case .vision: vision?[key]
        }
    }
}

/// The DeepSeek-V3-family text settings k2pack relies on, checked on load.
public struct TextConfig: Sendable {
    public var values: JSONObject
    public var hiddenSize: Int
    public var numLayers: Int
    public var numHeads: Int
    public var qLoraRank: Int
    public var kvLoraRank: Int
    public var qkNopeHeadDim: Int
    public var qkRopeHeadDim: Int
    public var vHeadDim: Int
    public var intermediateSize: Int
    public var moeIntermediateSize: Int
    public var numRoutedExperts: Int
    public var numExpertsPerToken: Int
    public var numSharedExperts: Int
    public var firstDenseLayers: Int
    public var moeLayerFrequency: Int
    public var vocabSize: Int
    /// Multi-token-prediction layers stored after the decoder layers (DeepSeek-V3: 1, as `layers.61`).
    public var numNextNLayers: Int
    public var tieWordEmbeddings: Bool

    /// The text config's keys after checking against the manifest's `config_keys` (defaults filled in).
    public var resolved: [String: JSONValue]
    /// The routing settings (`n_group`, `topk_group`, `norm_topk_prob`, `routed_scaling_factor`).
    public var expertGroups: Int
    public var topKGroups: Int
    public var normalizeTopK: Bool
    public var routedScalingFactor: Double
    public var rmsNormEps: Double
    public var ropeInterleave: Bool
    public var rope: RopeParameters

    /// Checks `object` against the manifest rules and the relations between keys the forward pass relies on;
    /// every refusal names the file, the section, the key, and what was found against what was expected.
    init(_ object: JSONObject, rules: [ConfigKeyRule], section: String, file: String) throws(ConfigError) {
        values = object
        let resolved = try ConfigRuleChecker(file: file, section: section).resolve(object, rules: rules)
        self.resolved = resolved
        func int(_ key: String) throws(ConfigError) -> Int {
            guard let v = resolved[key]?.intValue else { throw .manifest(name: "config_keys", reason: "no integer rule for \(key)") }
            return v
        }
        func number(_ key: String) throws(ConfigError) -> Double {
            guard let v = resolved[key]?.doubleValue else { throw .manifest(name: "config_keys", reason: "no number rule for \(key)") }
            return v
        }
        func bool(_ key: String) throws(ConfigError) -> Bool {
            guard let v = resolved[key]?.boolValue else { throw .manifest(name: "config_keys", reason: "no boolean rule for \(key)") }
            return v
        }
        hiddenSize = try int("hidden_size")
        numLayers = try int("num_hidden_layers")
        numHeads = try int("num_attention_heads")
        qLoraRank = try int("q_lora_rank")
        kvLoraRank = try int("kv_lora_rank")
        qkNopeHeadDim = try int("qk_nope_head_dim")
        qkRopeHeadDim = try int("qk_rope_head_dim")
        vHeadDim = try int("v_head_dim")
        intermediateSize = try int("intermediate_size")
        moeIntermediateSize = try int("moe_intermediate_size")
        numRoutedExperts = try int("n_routed_experts")
        numExpertsPerToken = try int("num_experts_per_tok")
        numSharedExperts = try int("n_shared_experts")
        firstDenseLayers = try int("first_k_dense_replace")
        moeLayerFrequency = try int("moe_layer_freq")
        vocabSize = try int("vocab_size")
        numNextNLayers = try int("num_nextn_predict_layers")
        tieWordEmbeddings = try bool("tie_word_embeddings")
        expertGroups = try int("n_group")
        topKGroups = try int("topk_group")
        normalizeTopK = try bool("norm_topk_prob")
        routedScalingFactor = try number("routed_scaling_factor")
        rmsNormEps = try number("rms_norm_eps")
        ropeInterleave = try bool("rope_interleave")
        rope = try RopeParameters(object, topTheta: try number("rope_theta"), dim: qkRopeHeadDim, section: section, file: file)
        try checkRouting(section: section, file: file)
    }

    /// The relations between routing keys: each refusal names the key and both numbers.
    func checkRouting(section: String, file: String) throws(ConfigError) {
        func invalid(_ key: String, _ reason: String) -> ConfigError { .invalidValue(file: file, section: section, key: key, reason: reason) }
        let experts = numRoutedExperts, k = numExpertsPerToken, groups = expertGroups, kept = topKGroups
        guard experts > 0 else { return }
        guard k >= 1 else { throw invalid("num_experts_per_tok", "must be at least 1 when n_routed_experts is \(experts), found \(k)") }
        guard k <= experts else { throw invalid("num_experts_per_tok", "\(k) exceeds n_routed_experts \(experts)") }
        guard experts % groups == 0 else { throw invalid("n_group", "\(groups) groups do not divide n_routed_experts \(experts)") }
        guard groups == 1 || experts / groups >= 2 else {
            throw invalid("n_group", "\(groups) groups of \(experts / groups) expert: each group needs at least 2 (its score is the sum of its top 2)")
        }
        guard kept <= groups else { throw invalid("topk_group", "\(kept) exceeds n_group \(groups)") }
        let reachable = kept * (experts / groups)
        guard k <= reachable else {
            throw invalid("num_experts_per_tok", "\(k) exceeds the \(reachable) experts in the topk_group \(kept) kept groups of \(experts / groups)")
        }
    }

    /// Whether decoder layer `layer` has a routed MoE (otherwise a dense MLP).
    public func isMoELayer(_ layer: Int) -> Bool {
        numRoutedExperts > 0 && layer >= firstDenseLayers && layer % moeLayerFrequency == 0
    }

    /// Decoder layers followed by the MTP layers, as numbered in the checkpoint.
    public var storedLayers: Range<Int> { 0..<(numLayers + numNextNLayers) }
    public var moeLayers: [Int] { storedLayers.filter(isMoELayer) }
    public var denseLayers: [Int] { storedLayers.filter { !isMoELayer($0) } }
    public var mtpLayers: [Int] { Array(numLayers..<storedLayers.upperBound) }
}
