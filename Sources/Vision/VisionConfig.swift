import Foundation
import JSONCore
import Manifests
import ModelConfig
import TensorCore

/// Why the vision tower could not run.
public enum VisionError: Error, Equatable, Sendable, CustomStringConvertible {
    /// config.json's vision section, or the manifest's facts about it.
    case config(String)
    /// A stored tensor: its name and what is wrong (found against expected).
    case tensor(name: String, reason: String)
    /// The pixels and grids handed to the tower.
    case input(String)

    public var description: String {
        switch self {
        case .config(let reason): displayed(reason, limit: nil)
        case .tensor(let name, let reason): "tensor \(displayed(name)): \(displayed(reason, limit: nil))"
        case .input(let reason): displayed(reason, limit: nil)
        }
    }
}

/// The sizes and fixed facts of the MoonViT tower, the patch merger and the projector
/// (shared/reference/moonvit.md §1): sizes from config.json's vision section, checked against the manifest's
/// `config_keys`; the facts config.json does not carry (encoder LayerNorm epsilon, RoPE and temporal bases)
/// from the manifest's `forward` object. Every field is a `var` so that tests can build a deliberately wrong
/// tower (a wrong epsilon) without a switch in the reference path.
public struct VisionConfig: Sendable, Equatable {
    /// P: a patch is P × P pixels of 3 channels.
    public var patchSize: Int
    /// D, H, hd = D / H, I, L.
    public var width: Int
    public var heads: Int
    public var headDim: Int
    public var intermediate: Int
    public var blocks: Int
    /// The learned position table is `[tableHeight, tableWidth, D]`; a chunk holds at most `maxFrames` frames.
    public var tableHeight: Int
    public var tableWidth: Int
    public var maxFrames: Int
    /// The merge kernel (kh, kw).
    public var mergeHeight: Int
    public var mergeWidth: Int
    /// The projector's input width per merged slot (equals D) and the language model's width.
    public var projectorWidth: Int
    public var textWidth: Int
    public var projectorEps: Float
    public var encoderEps: Float
    public var ropeTheta: Double
    public var temporalTheta: Double
    /// The config section the sizes were read from (`vision_config`), for messages.
    public var section: String

    /// Values in a patch: 3 · P · P.
    public var patchValues: Int { 3 * patchSize * patchSize }
    /// Slots merged into one token: kh · kw.
    public var mergeSlots: Int { mergeHeight * mergeWidth }

    public init(_ model: ModelConfig) throws(VisionError) {
        let settings: [String: JSONValue]
        let part: ArchitecturePart
        do throws(ConfigError) {
            settings = try model.resolvedVisionSettings()
            guard let p = model.visionPart else { throw ConfigError.manifest(name: "architectures", reason: "no vision part") }
            part = p
        } catch {
            throw .config(error.description)
        }
        let section = model.architecture.visionConfigKey ?? "vision_config"
        self.section = section
        func int(_ key: String) throws(VisionError) -> Int {
            guard let v = settings[key]?.intValue else {
                throw .config("manifest \(part.specs): config_keys has no integer rule for \(key)")
            }
            return v
        }
        patchSize = try int("patch_size")
        width = try int("vt_hidden_size")
        heads = try int("vt_num_attention_heads")
        intermediate = try int("vt_intermediate_size")
        blocks = try int("vt_num_hidden_layers")
        tableHeight = try int("init_pos_emb_height")
        tableWidth = try int("init_pos_emb_width")
        maxFrames = try int("init_pos_emb_time")
        projectorWidth = try int("mm_hidden_size")
        textWidth = try int("text_hidden_size")
        guard let eps = settings["projector_ln_eps"]?.doubleValue else {
            throw .config("manifest \(part.specs): config_keys has no number rule for projector_ln_eps")
        }
        projectorEps = Float(eps)
        func invalid(_ key: String, _ reason: String) -> VisionError {
            .config("\(ModelConfig.fileName): \(section) key \"\(key)\": \(reason)")
        }
        guard width % heads == 0 else {
            throw invalid("vt_num_attention_heads", "\(heads) heads do not divide vt_hidden_size \(width)")
        }
        headDim = width / heads
        guard headDim % 4 == 0 else {
            throw invalid("vt_num_attention_heads", "head dim \(width) / \(heads) = \(headDim) is not a multiple of 4 (the 2-D RoPE rotates width and height pairs in turn)")
        }
        guard projectorWidth == width else {
            throw invalid("mm_hidden_size", "\(projectorWidth) differs from vt_hidden_size \(width) (the merger feeds the tower's output to the projector)")
        }
        // merge_kernel_size: a pair of positive integers (the rules cannot describe an array).
        let kernel = model.vision?["merge_kernel_size"]
        guard let pair = kernel?.arrayValue, pair.count == 2, let kh = pair[0].intValue, let kw = pair[1].intValue,
            kh >= 1, kw >= 1, kh <= 64, kw <= 64
        else {
            let found = kernel?.arrayValue.map { a in "[" + a.map { $0.numberText ?? $0.kindName }.joined(separator: ", ") + "]" } ?? kernel?.kindName ?? "nothing"
            throw invalid("merge_kernel_size", "must be a pair of integers between 1 and 64, found \(displayed(found, limit: 60))")
        }
        mergeHeight = kh
        mergeWidth = kw
        guard CheckedMath.multiply(width, kh * kw) != nil, CheckedMath.multiply(textWidth, width * kh * kw) != nil else {
            throw invalid("merge_kernel_size", "\(kh) × \(kw) × \(width) overflows")
        }
        // The facts the model code fixes, from the manifest.
        let facts = try Self.forwardFacts(manifest: part.specs)
        encoderEps = Float(facts.eps)
        ropeTheta = facts.ropeTheta
        temporalTheta = facts.temporalTheta
    }

    /// The manifest's `forward` object: `encoder_layer_norm_eps`, `rope_theta`, `temporal_theta`.
    static func forwardFacts(manifest name: String) throws(VisionError) -> (eps: Double, ropeTheta: Double, temporalTheta: Double) {
        guard let data = ManifestResources.data(named: name) else { throw .config("manifest \(name): not found among the shipped manifests") }
        let root: JSONValue
        do throws(JSONError) { root = try JSONDocument.parse(Array(data)) } catch { throw .config("manifest \(name): not valid JSON: \(error)") }
        func number(_ key: String) throws(VisionError) -> Double {
            guard let v = root["forward"]?[key]?.doubleValue, v.isFinite, v > 0 else {
                throw .config("manifest \(name): forward.\(key) must be a positive number")
            }
            return v
        }
        return (try number("encoder_layer_norm_eps"), try number("rope_theta"), try number("temporal_theta"))
    }
}
