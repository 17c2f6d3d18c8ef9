import Foundation
@testable import Forward
import Testing

/// `Router.route`, DeepSeek-V3's `Gate.forward` for one token, checked on hand-worked logits.
@Suite("Routing as a pure function")
struct RouterTests {
    func routing(experts: Int, topK: Int, groups: Int = 1, topKGroups: Int = 1, normalize: Bool = false, scale: Float = 1) -> ForwardConfig.Routing {
        ForwardConfig.Routing(experts: experts, topK: topK, groups: groups, topKGroups: topKGroups, normalize: normalize, scalingFactor: scale)
    }

    func sigmoid(_ x: Float) -> Float { 1 / (1 + Foundation.exp(-x)) }

    @Test("top k by sigmoid score, weights the scores times the scaling factor, margin to the next")
    func plain() {
        let logits: [Float] = [0.5, -1, 2, 1]
        let route = Router.route(logits: logits[...], bias: nil, routing: routing(experts: 4, topK: 2, scale: 2.5))
        #expect(route.experts == [2, 3])
        #expect(route.weights == [sigmoid(2) * 2.5, sigmoid(1) * 2.5])
        #expect(route.margin == sigmoid(1) - sigmoid(0.5))
    }

    @Test("the correction bias chooses the experts but does not weight them")
    func biasForSelectionOnly() {
        let logits: [Float] = [0.5, -1, 2, 1]
        let bias: [Float] = [0, 1, 0, -1]
        let route = Router.route(logits: logits[...], bias: bias, routing: routing(experts: 4, topK: 2))
        // Selection scores: σ(0.5), σ(-1)+1, σ(2), σ(1)-1 → experts 1 (≈1.27) and 2 (≈0.88).
        #expect(route.experts == [1, 2])
        #expect(route.weights == [sigmoid(-1), sigmoid(2)])
        #expect(route.margin == sigmoid(2) - sigmoid(0.5))
    }

    @Test("groups: only the best topk_group groups (by the sum of their two best) are eligible")
    func groupLimit() {
        // Group 0 = experts 0-1 (sum of scores high), group 1 = 2-3 (one high expert, one very low).
        let logits: [Float] = [1, 1, 3, -8]
        let route = Router.route(logits: logits[...], bias: nil, routing: routing(experts: 4, topK: 2, groups: 2, topKGroups: 1))
        #expect(route.experts == [0, 1], "expert 2 is the best alone, but its group loses")
        #expect(route.margin == .infinity, "the other group's experts are out of the running")
    }

    @Test("normalization makes the weights sum to the scaling factor; k = E has no margin")
    func normalized() {
        let logits: [Float] = [0.2, -0.3]
        let route = Router.route(logits: logits[...], bias: nil, routing: routing(experts: 2, topK: 2, normalize: true, scale: 2))
        let a = sigmoid(0.2), b = sigmoid(-0.3), sum = a + b + 1e-20
        #expect(route.experts == [0, 1])
        #expect(route.weights == [a / sum * 2, b / sum * 2])
        #expect(route.margin == .infinity)
    }

    @Test("ties go to the lower index")
    func ties() {
        #expect(Router.topIndices([1, 3, 3, 0], 3) == [1, 2, 0])
    }
}

@Suite("In-process collectives")
struct CollectivesTests {
    @Test("all-reduce sums in rank order; all-gather places each rank's columns")
    func combine() throws {
        let c = InProcessCollectives()
        #expect(try c.allReduce([[1, 2], [10, 20], [100, 200]]) == [111, 222])
        #expect(try c.allReduce([]) == [])
        // Two rows; rank 0 holds columns 0..<1, rank 1 columns 1..<3.
        #expect(try c.allGather([(0, [1, 2]), (1, [3, 4, 5, 6])], rows: 2, columns: 3) == [1, 3, 4, 2, 5, 6])
    }

    @Test("partial results of different sizes, and blocks past the columns, are errors")
    func refused() {
        let c = InProcessCollectives()
        #expect(throws: ForwardError.input("ranks' partial results differ in size (3 vs 2)")) { _ = try c.allReduce([[1, 2], [1, 2, 3]]) }
        #expect(throws: ForwardError.input("a rank's block of columns [2, 4) runs past the 3 columns")) {
            _ = try c.allGather([(2, [1, 2])], rows: 1, columns: 3)
        }
    }
}
