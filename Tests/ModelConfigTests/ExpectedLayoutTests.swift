import JSONCore
@testable import ModelConfig
import Testing

/// `ExpectedTensorList` keeps one record per tensor and builds `tensors` on first use; inspect and verify read
/// fields in place. Both views must agree, and an adjusted copy must read as adjusted.
@Suite("expected tensors kept as records")
struct ExpectedLayoutTests {
    @Test("fields read in place agree with the built tensors, for every architecture")
    func inPlaceReads() throws {
        for (label, config) in try ExpectedNameIndexTests.configs() {
            let list = try ExpectedTensorList(config: config)
            let tensors = list.tensors
            #expect(list.count == tensors.count && !tensors.isEmpty, "\(label)")
            #expect(list.roleIDs.count == tensors.count, "\(label)")
            for (p, t) in tensors.enumerated() {
                let same = list.shape(at: p) == t.shape && list.dtypes(at: p) == t.dtypes && list.form(at: p) == t.form
                    && list.method(at: p) == t.method && list.tp(at: p) == t.tp && list.expertParallel(at: p) == t.expertParallel
                    && list.isVision(at: p) == t.vision && list.role(at: p) == t.role && list.roles[list.roleIDs[p]] == t.role
                #expect(same, "\(label): \(t.name) at \(p)")
            }
        }
    }

    @Test("names, modules, stacks, layers and roles of the built tensors")
    func builtFields() throws {
        let configs = Dictionary(uniqueKeysWithValues: try ExpectedNameIndexTests.configs())
        let k2 = try ExpectedTensorList(config: try #require(configs["flat K2, INT4"]))
        let packed = try #require(k2["model.layers.1.mlp.experts.3.down_proj.weight_packed"])
        #expect(packed.module == "model.layers.1.mlp.experts.3.down_proj")
        #expect(packed.stackName == "model.layers.1.mlp.experts.*.down_proj.weight_packed")
        #expect(packed.layer == 1 && packed.expert == 3 && packed.form == .packed && packed.logicalShape?.count == 2)
        let shared = try #require(k2["model.layers.1.mlp.shared_experts.down_proj.weight"])
        #expect(shared.module == "model.layers.1.mlp.shared_experts.down_proj" && shared.stackName == nil && shared.expert == nil)
        #expect(shared.method == nil && shared.logicalShape == nil && shared.form == .plain)
        let norm = try #require(k2["model.norm.weight"])
        #expect(norm.module == nil && norm.layer == nil && norm.stackName == nil)
        // Stored forms of one module are listed together, in the method's order.
        let position = try #require(k2.position(of: "model.layers.1.mlp.experts.3.down_proj.weight_packed"))
        #expect(k2.tensors[position + 1].name == "model.layers.1.mlp.experts.3.down_proj.weight_scale")
        #expect(k2.tensors[position + 2].name == "model.layers.1.mlp.experts.3.down_proj.weight_shape")
        // Everything stored in a multi-token-prediction layer is reported under one role.
        let mtp = try ExpectedTensorList(config: try #require(configs["DeepSeek-V3 with an MTP layer"]))
        let mtpTensors = mtp.tensors.filter { ($0.layer ?? -1) >= 3 }
        #expect(!mtpTensors.isEmpty && mtpTensors.allSatisfy { $0.role == "mtp" })
        #expect(mtp.tensors.contains { ($0.layer ?? -1) < 3 && $0.layer != nil && $0.role != "mtp" })
    }

    @Test("an adjusted copy reads as adjusted; the original is unchanged")
    func adjustedCopy() throws {
        let (_, config) = try #require(try ExpectedNameIndexTests.configs().first)
        let list = try ExpectedTensorList(config: config)
        var copy = list
        copy.tensors[0].shape = [7, 7]
        copy.tensors[0].tp = .replicate
        copy.tensors[1].slot = "other"
        #expect(copy.shape(at: 0) == [7, 7] && copy.tp(at: 0) == .replicate && copy.tensors[1].slot == "other")
        #expect(list.shape(at: 0) == list.tensors[0].shape && list.shape(at: 0) != [7, 7] && list.tensors[1].slot != "other")
        #expect(copy.count == list.count && copy.position(of: list.tensors[5].name) == 5)
    }
}
