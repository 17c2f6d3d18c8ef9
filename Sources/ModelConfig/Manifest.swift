import Foundation
import JSONCore
import Manifests
import TensorCore

/// How tensor parallelism splits a tensor (from the manifest).
public enum TPRule: String, Codable, Sendable {
    /// Split dimension 0 (output features).
    case column
    /// Split dimension 1 (input features).
    case row
    /// Split dimension 0 by vocabulary rows.
    case vocab
    case replicate
}

/// How many times a spec repeats.
public enum Repeat: String, Codable, Sendable {
    case once
    /// Every decoder layer, `{L}`.
    case layers
    /// Multi-token-prediction layers (after the decoder layers).
    case mtpLayers = "mtp_layers"
    /// Layers with a dense MLP.
    case denseLayers = "dense_layers"
    /// Layers with a routed MoE.
    case moeLayers = "moe_layers"
    /// Every routed expert `{E}` of every MoE layer `{L}`.
    case experts
    /// Every vision encoder block `{B}`.
    case visionBlocks = "vision_blocks"
}

/// One manifest line: either a plain tensor or a Linear module (whose stored form depends on quantization).
public struct TensorSpec: Codable, Sendable {
    public var tensor: String?
    public var linear: String?
    public var role: String
    public var `repeat`: Repeat
    public var shape: [String]?
    public var out: String?
    public var `in`: String?
    public var bias: Bool?
    public var dtype: String?
    public var tp: TPRule
    /// The count a TP split must divide (heads for attention); defaults to the split dimension.
    public var tpUnit: String?
    public var ep: Bool?
    /// `key == value` on the config: the spec applies only when it holds.
    public var when: String?
    /// The tensor's place in the forward pass, when its role does not name it alone (defaults to the role).
    public var slot: String?

    enum CodingKeys: String, CodingKey {
        case tensor, linear, role, `repeat`, shape, out, `in`, bias, dtype, tp, ep, when, slot
        case tpUnit = "tp_unit"
    }
}

public struct SpecFile: Codable, Sendable {
    public var specs: [TensorSpec]
    /// What the config section this manifest is expanded over must hold (types, bounds, defaults).
    public var configKeys: [ConfigKeyRule]?

    enum CodingKeys: String, CodingKey {
        case specs
        case configKeys = "config_keys"
    }
}

public struct ArchitecturePart: Codable, Sendable {
    public enum ConfigSection: String, Codable, Sendable { case text, vision }
    public var specs: String
    public var prefix: String
    public var config: ConfigSection
    public var quantizable: Bool
}

public struct ArchitectureManifest: Codable, Sendable {
    public var name: String
    public var displayName: String
    public var modelTypes: [String]
    public var textConfigKey: String?
    public var visionConfigKey: String?
    public var textPrefix: String
    /// The manifest holding the architecture's native `quantization_config`, if k2pack can produce it.
    public var nativeQuantization: String?
    public var parts: [ArchitecturePart]

    enum CodingKeys: String, CodingKey {
        case name, parts
        case nativeQuantization = "native_quantization"
        case displayName = "display_name"
        case modelTypes = "model_types"
        case textConfigKey = "text_config_key"
        case visionConfigKey = "vision_config_key"
        case textPrefix = "text_prefix"
    }
}

struct ArchitectureList: Codable {
    var architectures: [ArchitectureManifest]
}

/// Loads manifests shipped as resources.
public enum ManifestLibrary {
    public static func architectures() throws(ConfigError) -> [ArchitectureManifest] {
        try decode(ArchitectureList.self, named: "architectures").architectures
    }

    /// A spec manifest's lines, each `when` rule checked to parse (`SpecCondition`).
    public static func specs(named name: String) throws(ConfigError) -> [TensorSpec] {
        try checked(decode(SpecFile.self, named: name).specs, manifest: name)
    }

    /// `specs` when every `when` rule among them parses; otherwise the first bad rule, naming `manifest`.
    static func checked(_ specs: [TensorSpec], manifest: String) throws(ConfigError) -> [TensorSpec] {
        for spec in specs {
            if let rule = spec.when { _ = try SpecCondition(parsing: rule, manifest: manifest) }
        }
        return specs
    }

    /// The `config_keys` rules of a spec manifest (none when it has none).
    public static func configRules(named name: String) throws(ConfigError) -> [ConfigKeyRule] {
        try decode(SpecFile.self, named: name).configKeys ?? []
    }

    /// The `quantization_config` JSON of a scheme manifest (`kimi_int4_scheme`).
    public static func scheme(named name: String) throws(ConfigError) -> JSONValue {
        guard let data = ManifestResources.data(named: name) else {
            throw .manifest(name: name, reason: "not found among the shipped manifests")
        }
        let value: JSONValue
        do throws(JSONError) { value = try JSONDocument.parse(Array(data)) } catch {
            throw .manifest(name: name, reason: "is not valid JSON: \(error)")
        }
        guard let q = value["quantization_config"], q.objectValue != nil else {
            throw .manifest(name: name, reason: "has no quantization_config object")
        }
        return q
    }

    static func decode<T: Decodable>(_ type: T.Type, named name: String) throws(ConfigError) -> T {
        guard let data = ManifestResources.data(named: name) else {
            throw .manifest(name: name, reason: "not found among the shipped manifests")
        }
        do {
            return try JSONDecoder().decode(T.self, from: data)
        } catch {
            throw .manifest(name: name, reason: "cannot be decoded: \(error)")
        }
    }
}
