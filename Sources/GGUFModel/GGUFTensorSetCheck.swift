import Forward
import GGUF
import JSONCore
import ModelConfig
import TensorCore

extension GGUFTensorMap {
    /// The config a `deepseek2` model's metadata gives the forward pass, as `GGUFWeightSource` reads it: what the
    /// metadata cannot say comes from the tensors (the vocabulary from `token_embd` when `vocab_size` is absent, a
    /// tied head when `output.weight` is absent, noaux_tc routing when the first MoE layer has its router bias).
    public func textConfig(of model: GGUFModel, metadata meta: GGUFDeepseek2Config) throws(GGUFModelError) -> ModelConfig {
        let file = model.first.path
        guard let embeddingName = name(.embedding, layer: nil), let embedding = model.tensor(named: embeddingName)?.info else {
            throw .missingTensor(file: file, tensor: name(.embedding, layer: nil) ?? "embedding", slot: WeightSlot.embedding.rawValue)
        }
        guard embedding.ne.count == 2 else {
            throw .wrongShape(file: file, tensor: embedding.name, found: embedding.ne, expected: [meta.embeddingLength, meta.vocabSize ?? 0])
        }
        let vocab = meta.vocabSize ?? embedding.ne[1]
        let tied = name(.lmHead, layer: nil).flatMap { model.tensor(named: $0) } == nil
        let firstMoE = meta.leadingDenseBlockCount
        let routerBias = firstMoE < meta.blockCount && name(.routerBias, layer: firstMoE).flatMap { model.tensor(named: $0) } != nil
        return try GGUFTextConfig.make(meta, file: file, vocabSize: vocab, tied: tied, routerBias: routerBias, modelType: modelType)
    }
}

/// A GGUF model's tensor set against what its architecture needs (the tensor map manifest over the config its
/// metadata gives): every tensor missing, every surplus one (llama.cpp's loader refuses a file holding a tensor
/// it does not create), every shape that is not what the metadata implies, every type k2pack cannot decode —
/// all of them, not only the first.
public struct GGUFTensorSetCheck: Sendable {
    public struct Missing: Sendable, Equatable {
        public var tensor: String
        public var slot: String
    }

    public struct WrongShape: Sendable, Equatable {
        public var file: String
        public var tensor: String
        public var found: [Int]
        public var expected: [Int]
    }

    public struct Undecodable: Sendable, Equatable {
        public var file: String
        public var tensor: String
        public var type: String
    }

    /// The tensors the architecture needs: the required ones and the optional ones the file holds.
    public var expectedCount: Int
    /// Of those, the ones present (whatever their shape).
    public var presentCount: Int
    public var missing: [Missing]
    /// Tensors the map does not read, in file order.
    public var surplus: [String]
    public var wrongShapes: [WrongShape]
    public var undecodable: [Undecodable]
    /// How each expected tensor serves its slot, by name (bytes compared, as the reader does), for callers that
    /// group tensors (routed experts for the memory estimate).
    public var layouts: [ByteName: GGUFTensorMap.Layout]

    /// Checks `model` against its architecture's map; throws when the architecture has no map or its metadata
    /// cannot be read as a config (nothing to check the tensors against).
    public init(_ model: GGUFModel) throws(GGUFModelError) {
        let (map, meta) = try GGUFTensorMap.opened(model)
        let config = try map.textConfig(of: model, metadata: meta)
        let expected = try map.expected(for: config.text)
        var expectedCount = 0
        var present = 0
        var missing: [Missing] = []
        var wrong: [WrongShape] = []
        var undecodable: [Undecodable] = []
        var layouts: [ByteName: GGUFTensorMap.Layout] = [:]
        for t in expected {
            layouts[ByteName(t.name)] = t.layout
            guard let (part, info) = model.tensor(named: t.name) else {
                if !t.optional {
                    expectedCount += 1
                    missing.append(Missing(tensor: t.name, slot: t.slot.rawValue))
                }
                continue
            }
            expectedCount += 1
            present += 1
            if info.ne != t.ne { wrong.append(WrongShape(file: part.path, tensor: t.name, found: info.ne, expected: t.ne)) }
            if !info.type.canDequantize { undecodable.append(Undecodable(file: part.path, tensor: t.name, type: info.type.name)) }
        }
        self.expectedCount = expectedCount
        presentCount = present
        self.missing = missing
        surplus = model.tensorNames.filter { layouts[ByteName($0)] == nil }
        wrongShapes = wrong
        self.undecodable = undecodable
        self.layouts = layouts
    }

    public var isComplete: Bool { missing.isEmpty && surplus.isEmpty && wrongShapes.isEmpty && undecodable.isEmpty }
}
