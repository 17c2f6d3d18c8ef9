import GGUF
import JSONCore
import TensorCore

extension GGUFInspectReport {
    /// `k2pack inspect FILE.gguf --gpus N`: the header summary plus what needs the architecture's tensor map —
    /// the tensors it needs against those present, and the weights per GPU when routed experts are divided whole
    /// over `gpus` (`MemoryEstimate`).
    public init(path: String, gpus: Int) throws(GGUFError) {
        self.init(try GGUFModel(path: path), gpus: gpus)
    }

    public init(_ model: GGUFModel, gpus: Int) {
        self.init(model)
        do {
            let check = try GGUFTensorSetCheck(model)
            expectedTensorCount = check.expectedCount
            presentTensorCount = check.presentCount
            surplusTensorCount = check.surplus.count
            var experts = 0
            var routed = 0
            var other = 0
            for t in model.tensors {
                if check.layouts[ByteName(t.name)] == .experts, t.ne.count == 3 {
                    routed = CheckedMath.add(routed, t.byteCount) ?? Int.max
                    experts = max(experts, t.ne[2])
                } else {
                    other = CheckedMath.add(other, t.byteCount) ?? Int.max
                }
            }
            memory = MemoryEstimate(gpus: gpus, routedExpertBytes: routed, replicatedBytes: other, experts: experts)
        } catch {
            tensorSetNote = error.description
        }
    }
}
