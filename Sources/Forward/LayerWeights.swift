/// A SwiGLU MLP's three matrices (a dense layer's MLP, the shared expert, one routed expert).
struct MLPWeights: Sendable {
    var gate: WeightMatrix
    var up: WeightMatrix
    var down: WeightMatrix

    /// Asks for the three matrices to be read ahead (`WeightMatrix.prefetch`).
    func prefetch() {
        gate.prefetch()
        up.prefetch()
        down.prefetch()
    }

    init(_ source: any WeightSource, gate: WeightSlot, up: WeightSlot, down: WeightSlot, layer: Int, expert: Int? = nil) throws(ForwardError) {
        self.gate = try source.matrix(gate, layer: layer, expert: expert)
        self.up = try source.matrix(up, layer: layer, expert: expert)
        self.down = try source.matrix(down, layer: layer, expert: expert)
    }
}

/// Multi-head latent attention's weights for one layer.
struct AttentionWeights: Sendable {
    var qA: WeightMatrix
    var qANorm: [Float]
    var qB: WeightMatrix
    var kvA: WeightMatrix
    var kvANorm: [Float]
    var kvB: WeightMatrix
    var o: WeightMatrix

    init(_ source: any WeightSource, layer: Int) throws(ForwardError) {
        qB = try source.matrix(.attnQB, layer: layer)
        qA = try source.matrix(.attnQA, layer: layer)
        qANorm = try source.vector(.attnQANorm, layer: layer)
        kvA = try source.matrix(.attnKVA, layer: layer)
        kvANorm = try source.vector(.attnKVANorm, layer: layer)
        kvB = try source.matrix(.attnKVB, layer: layer)
        o = try source.matrix(.attnO, layer: layer)
    }
}

/// A MoE layer's router, its correction bias (nil when the manifest has none) and shared expert (nil when the
/// config has none). Routed experts are bound one at a time (`expert`), only those tokens were routed to.
struct MoEWeights: Sendable {
    var layer: Int
    var router: WeightMatrix
    var routerBias: [Float]?
    var shared: MLPWeights?

    init(_ source: any WeightSource, layer: Int, sharedExperts: Int) throws(ForwardError) {
        self.layer = layer
        router = try source.matrix(.router, layer: layer)
        routerBias = source.has(.routerBias, layer: layer) ? try source.vector(.routerBias, layer: layer) : nil
        shared = sharedExperts > 0
            ? try MLPWeights(source, gate: .sharedExpertGate, up: .sharedExpertUp, down: .sharedExpertDown, layer: layer) : nil
    }

    func expert(_ e: Int, in source: any WeightSource) throws(ForwardError) -> MLPWeights {
        try MLPWeights(source, gate: .routedExpertGate, up: .routedExpertUp, down: .routedExpertDown, layer: layer, expert: e)
    }
}

/// One decoder layer's weights, bound once per layer from a source (the slots are looked up here, nowhere else
/// in the layer's code).
struct LayerWeights: Sendable {
    enum MLP: Sendable {
        case dense(MLPWeights)
        case moe(MoEWeights)
    }

    var index: Int
    var inputNorm: [Float]
    var postAttentionNorm: [Float]
    var attention: AttentionWeights
    var mlp: MLP

    init(_ source: any WeightSource, layer: Int) throws(ForwardError) {
        let config = source.forward
        index = layer
        inputNorm = try source.vector(.inputNorm, layer: layer)
        attention = try AttentionWeights(source, layer: layer)
        postAttentionNorm = try source.vector(.postAttentionNorm, layer: layer)
        mlp = config.isMoELayer(layer)
            ? .moe(try MoEWeights(source, layer: layer, sharedExperts: config.text.numSharedExperts))
            : .dense(try MLPWeights(source, gate: .denseMLPGate, up: .denseMLPUp, down: .denseMLPDown, layer: layer))
    }
}
