/// A weight's place in the forward pass: what the architecture manifest calls its `slot` (its role when it has
/// no slot of its own). The forward pass asks its `WeightSource` for slots, never for tensor names; a manifest
/// slot with no case here is refused when the weights are opened (`ManifestSlots.check`), not at first use.
public enum WeightSlot: String, CaseIterable, Sendable {
    case embedding
    case finalNorm = "final_norm"
    case lmHead = "lm_head"
    // Every decoder layer.
    case inputNorm = "input_norm"
    case postAttentionNorm = "post_attention_norm"
    case attnQA = "attn_q_a"
    case attnQANorm = "attn_q_a_norm"
    case attnQB = "attn_q_b"
    case attnKVA = "attn_kv_a"
    case attnKVANorm = "attn_kv_a_norm"
    case attnKVB = "attn_kv_b"
    case attnO = "attn_o"
    // Dense layers.
    case denseMLPGate = "dense_mlp_gate"
    case denseMLPUp = "dense_mlp_up"
    case denseMLPDown = "dense_mlp_down"
    // MoE layers.
    case router
    case routerBias = "router_bias"
    case sharedExpertGate = "shared_expert_gate"
    case sharedExpertUp = "shared_expert_up"
    case sharedExpertDown = "shared_expert_down"
    case routedExpertGate = "routed_expert_gate"
    case routedExpertUp = "routed_expert_up"
    case routedExpertDown = "routed_expert_down"
    /// Multi-token-prediction tensors: stored and checked, not read by the reference forward pass.
    case mtp
}

extension WeightSlot {
    /// The slot a manifest line names, or an error naming the tensor (a manifest slot the forward pass does not
    /// know is a manifest bug, refused when the weights are opened).
    public init(manifestSlot: String, tensor: String) throws(ForwardError) {
        guard let slot = WeightSlot(rawValue: manifestSlot) else {
            throw .wrongTensor(
                name: tensor,
                reason: "the architecture manifest puts it in slot \"\(manifestSlot)\", which the forward pass does not have (slots: \(WeightSlot.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        self = slot
    }
}
