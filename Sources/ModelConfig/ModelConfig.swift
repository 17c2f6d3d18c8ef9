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
            root = try JSONDocument.parse(bytes, maxDepth: 32)
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
        let text = try TextConfig(textObject, section: textSection, file: file)
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

    /// The keys whose absence makes a config unusable.
    public static let requiredKeys = [
        "hidden_size", "num_hidden_layers", "num_attention_heads", "q_lora_rank", "kv_lora_rank", "qk_nope_head_dim",
        "qk_rope_head_dim", "v_head_dim", "intermediate_size", "moe_intermediate_size", "n_routed_experts",
        "num_experts_per_tok", "n_shared_experts", "first_k_dense_replace", "vocab_size",
    ]

    init(_ object: JSONObject, section: String, file: String) throws(ConfigError) {
        values = object
        func int(_ key: String, default fallback: Int? = nil) throws(ConfigError) -> Int {
            guard let value = object[key], !value.isNull else {
                if let fallback { return fallback }
                throw .missingKey(file: file, section: section, key: key)
            }
            guard let v = value.intValue else {
                let found = value.doubleValue.map { "\(value.numberText ?? "\($0)"), which is not a whole number" } ?? value.kindName
                throw .wrongType(file: file, section: section, key: key, expected: "an integer", found: found)
            }
            guard v >= 0 else { throw .invalidValue(file: file, section: section, key: key, reason: "must not be negative, found \(v)") }
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
        moeLayerFrequency = try int("moe_layer_freq", default: 1)
        vocabSize = try int("vocab_size")
        numNextNLayers = try int("num_nextn_predict_layers", default: 0)
        // Bounds far above any real model, so a hostile config cannot make us allocate per layer or expert.
        for (key, value, limit) in [("num_hidden_layers", numLayers, 10_000), ("n_routed_experts", numRoutedExperts, 1_000_000), ("num_nextn_predict_layers", numNextNLayers, 64)] where value > limit {
            throw .invalidValue(file: file, section: section, key: key, reason: "\(value) is implausible (k2pack accepts at most \(limit))")
        }
        if let tie = object["tie_word_embeddings"], !tie.isNull {
            guard let b = tie.boolValue else {
                throw .wrongType(file: file, section: section, key: "tie_word_embeddings", expected: "a boolean", found: tie.kindName)
            }
            tieWordEmbeddings = b
        } else {
            tieWordEmbeddings = false
        }
        guard moeLayerFrequency > 0 else {
            throw .invalidValue(file: file, section: section, key: "moe_layer_freq", reason: "must be positive")
        }
        guard numExpertsPerToken <= numRoutedExperts else {
            throw .invalidValue(
                file: file, section: section, key: "num_experts_per_tok",
                reason: "\(numExpertsPerToken) exceeds n_routed_experts \(numRoutedExperts)")
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
