import Dispatch
import Foundation
import TensorCore

/// Wall time spent in parts of the forward pass, summed over the process, for benchmarks: on only when the
/// environment variable `K2PACK_IO_REPORT` is `1` (not a user option; `k2pack logits` then prints, after each
/// layer-major step, the seconds each phase took in it — `take()` — beside the step's wall time).
public enum PhaseTimes {
    /// A measured part of a decoder layer.
    public enum Phase: String, Sendable, CaseIterable {
        /// `softmax(q·kᵀ · scale + mask) · v` (`CausalAttention`): the part that grows with the context squared.
        case attentionCore = "attention-core"
        /// The attention's matrix products: q_a, q_b, kv_a, kv_b and o_proj, their norms.
        case attentionProjections = "attention-projections"
        /// The dense MLP, or the MoE block (router, routed experts, shared expert).
        case mlp
        /// Parts of the MoE block (inside `mlp`): the router's product and the routes,
        case moeRouter = "moe-router"
        /// the experts, routed (many tokens: with their weighted sum) and shared,
        case moeExperts = "moe-experts"
        /// and the sums left: the shared expert's output (a few tokens: the routed experts' weighted sum too).
        case moeSum = "moe-sum"
    }

    public static let enabled = ProcessInfo.processInfo.environment["K2PACK_IO_REPORT"] == "1"
    private static let totals = Locked([Phase: UInt64]())

    /// Runs `body`, adding its wall time to `phase` when enabled.
    @inline(__always)
    static func measure<T, E: Error>(_ phase: Phase, _ body: () throws(E) -> T) throws(E) -> T {
        guard enabled else { return try body() }
        let start = DispatchTime.now().uptimeNanoseconds
        defer {
            let spent = DispatchTime.now().uptimeNanoseconds - start
            totals.withLock { $0[phase, default: 0] += spent }
        }
        return try body()
    }

    /// Consecutive phases of one piece of code: each `lap` adds the wall time since the previous lap (or since
    /// `Laps()`) to its phase, when enabled.
    struct Laps {
        private var last: UInt64

        init() { last = PhaseTimes.enabled ? DispatchTime.now().uptimeNanoseconds : 0 }

        mutating func lap(_ phase: Phase) {
            guard PhaseTimes.enabled else { return }
            let now = DispatchTime.now().uptimeNanoseconds
            let spent = now - last
            last = now
            totals.withLock { $0[phase, default: 0] += spent }
        }
    }

    /// Seconds per phase since the last call (in `Phase` order; phases not entered are 0), and a reset.
    public static func take() -> [(phase: Phase, seconds: Double)] {
        let spent = totals.withLock { totals in
            defer { totals = [:] }
            return totals
        }
        return Phase.allCases.map { ($0, Double(spent[$0] ?? 0) / 1e9) }
    }
}
