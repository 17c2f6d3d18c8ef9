import Foundation
import Forward
import GGUF
import JSONCore
import Manifests
import ModelConfig

/// An architecture's GGUF tensor names → forward-pass slots, as data (`Manifests/json/gguf_<architecture>.json`).
public struct GGUFTensorMap: Sendable, Decodable {
    /// How a stored tensor serves its slot.
    public enum Layout: String, Sendable, Decodable {
        /// ne `[in, out]`: the Linear weight `[out, in]`, one row per output.
        case matrix
        /// 1-D.
        case vector
        /// ne `[in, out, experts]`: expert-major, one `[out, in]` slab per routed expert.
        case experts
        /// `attn_k_b`, ne `[nope, kv_lora, heads]`: the first `nope` rows of each head of `kv_b_proj`, transposed.
        case mlaKB = "mla_k_b"
        /// `attn_v_b`, ne `[kv_lora, v, heads]`: the next `v` rows of each head of `kv_b_proj`.
        case mlaVB = "mla_v_b"
    }

    public enum Repeat: String, Sendable, Decodable {
        case once, layers
        case denseLayers = "dense_layers"
        case moeLayers = "moe_layers"
    }

    public struct Entry: Sendable, Decodable {
        /// The tensor name, `{L}` standing for the layer.
        public var gguf: String
        public var slot: String
        public var `repeat`: Repeat
        public var layout: Layout
        /// ggml dimensions (innermost first), expressions over the text config.
        public var ne: [String]
        public var optional: Bool?
    }

    public var architecture: String
    /// The `model_type` whose text config rules check the metadata (`Manifests/json/architectures.json`).
    public var modelType: String
    public var tensors: [Entry]

    enum CodingKeys: String, CodingKey {
        case architecture, tensors
        case modelType = "model_type"
    }

    /// The architectures with a tensor map, by `general.architecture`.
    public static let known = ["deepseek2"]

    /// The map for `architecture`, or nil when k2pack has none.
    /// The map of `model`'s architecture and its deepseek2 metadata read as a config; an architecture without a
    /// map is refused by name.
    public static func opened(_ model: GGUFModel) throws(GGUFModelError) -> (map: GGUFTensorMap, metadata: GGUFDeepseek2Config) {
        let architecture = model.first.architecture
        guard let architecture, let map = try load(architecture: architecture) else {
            throw .unknownArchitecture(file: model.first.path, found: architecture, known: known)
        }
        do { return (map, try GGUFDeepseek2Config(model)) } catch { throw .file(error) }
    }

    public static func load(architecture: String) throws(GGUFModelError) -> GGUFTensorMap? {
        guard known.contains(architecture), let data = ManifestResources.data(named: "gguf_\(architecture)") else { return nil }
        let map: GGUFTensorMap
        do {
            map = try JSONDecoder().decode(GGUFTensorMap.self, from: data)
        } catch {
            throw .manifest("gguf_\(architecture).json: \(error)")
        }
        for entry in map.tensors {
            do {
                _ = try WeightSlot(manifestSlot: entry.slot, tensor: entry.gguf)
            } catch {
                throw .manifest(error.description)
            }
        }
        return map
    }

    /// One tensor the map expects in a file of this config.
    public struct Expected: Sendable {
        public var name: String
        public var slot: WeightSlot
        public var layer: Int?
        public var layout: Layout
        public var ne: [Int]
        public var optional: Bool
    }

    /// Every tensor `text` implies, in map order then layer order. An entry whose dimensions include a 0 (no
    /// shared expert) is not expected.
    public func expected(for text: TextConfig) throws(GGUFModelError) -> [Expected] {
        var out: [Expected] = []
        for entry in tensors {
            let slot: WeightSlot
            do { slot = try WeightSlot(manifestSlot: entry.slot, tensor: entry.gguf) } catch { throw .manifest(error.description) }
            var ne: [Int] = []
            for expression in entry.ne {
                do {
                    ne.append(try ShapeExpression.evaluate(expression, lookup: { text.resolved[$0] }))
                } catch {
                    throw .manifest("\(entry.gguf): \(error.description)")
                }
            }
            if ne.contains(0) { continue }
            let layers: [Int?]
            switch entry.repeat {
            case .once: layers = [nil]
            case .layers: layers = (0..<text.numLayers).map { $0 }
            case .denseLayers: layers = (0..<text.numLayers).filter { !text.isMoELayer($0) }.map { $0 }
            case .moeLayers: layers = (0..<text.numLayers).filter { text.isMoELayer($0) }.map { $0 }
            }
            for layer in layers {
                let name = layer.map { entry.gguf.replacingOccurrences(of: "{L}", with: String($0)) } ?? entry.gguf
                out.append(Expected(name: name, slot: slot, layer: layer, layout: entry.layout, ne: ne, optional: entry.optional ?? false))
            }
        }
        return out
    }

    /// The name of the tensor serving `slot` at `layer` (nil: not in the map).
    public func name(_ slot: WeightSlot, layer: Int?) -> String? {
        guard let entry = tensors.first(where: { $0.slot == slot.rawValue }) else { return nil }
        return layer.map { entry.gguf.replacingOccurrences(of: "{L}", with: String($0)) } ?? entry.gguf
    }
}
