import Foundation
import TensorCore

/// `k2pack inspect FILE.gguf`: what a GGUF model (one file or a split set) holds, from its headers only —
/// metadata, tensor count, elements, bytes and bits per weight by ggml type and by tensor kind, the tokenizer's
/// size.
public struct GGUFInspectReport: Encodable, Sendable {
    public struct Group: Encodable, Sendable, Equatable {
        public var name: String
        public var tensors: Int
        public var elements: Int
        public var bytes: Int
        /// Bits of storage per weight (bytes · 8 / elements).
        public var bitsPerWeight: Double
    }

    public struct Key: Encodable, Sendable, Equatable {
        public var key: String
        public var type: String
        public var value: String
    }

    public var files: [String]
    public var version: UInt32
    public var fileBytes: Int
    public var architecture: String?
    public var name: String?
    public var metadataCount: Int
    /// Every key with its type and a short value (arrays by type and length).
    public var metadata: [Key]
    public var tensorCount: Int
    public var elements: Int
    public var tensorBytes: Int
    public var bitsPerWeight: Double
    public var byType: [Group]
    /// Tensor kinds: the name without `blk.N.` and without `.weight` / `.bias` (`ffn_gate_exps`, `attn_norm`).
    public var byKind: [Group]
    public var tokenizerModel: String?
    public var tokenCount: Int?
    public var mergeCount: Int?
    /// UTF-8 bytes of the tokens and merges strings (the vocabulary's size in the file, without length prefixes).
    public var tokenizerBytes: Int?
    /// The tensors the architecture needs (its tensor map over the config the metadata gives: the required ones
    /// and the optional ones present), how many of them the file holds, and how many it holds beyond them; nil
    /// without a tensor map for the architecture (set by `GGUFModel`'s `init(_:gpus:)`).
    public var expectedTensorCount: Int?
    public var presentTensorCount: Int?
    public var surplusTensorCount: Int?
    /// Why the tensor set could not be compared (no map, metadata refused), when it could not.
    public var tensorSetNote: String?
    public var memory: MemoryEstimate?

    /// Weights per GPU for `--gpus N`, by the rule folder inspect calls EP: routed experts (the tensors the map
    /// lays out as `experts`) divided whole, ⌈experts / N⌉ per GPU, everything else replicated. Weights only, as
    /// stored (quantized bytes); no KV cache or activations.
    public struct MemoryEstimate: Encodable, Sendable, Equatable {
        public var gpus: Int
        public var routedExpertBytes: Int
        public var replicatedBytes: Int
        public var expertsPerGPU: Int
        public var expertParallelBytesPerGPU: Int

        public init(gpus: Int, routedExpertBytes: Int, replicatedBytes: Int, experts: Int) {
            self.gpus = gpus
            self.routedExpertBytes = routedExpertBytes
            self.replicatedBytes = replicatedBytes
            let n = max(1, gpus)
            expertsPerGPU = experts > 0 ? (experts + n - 1) / n : 0
            let share = experts > 0 ? Double(routedExpertBytes) * Double(expertsPerGPU) / Double(experts) : 0
            expertParallelBytesPerGPU = Int((Double(replicatedBytes) + share).rounded(.up))
        }
    }
    /// For `deepseek2`: layers, experts and attention sizes read into `GGUFDeepseek2Config`, or why they cannot be.
    public var deepseek2: String?
    /// What the deepseek2 metadata lacks or what llama.cpp would read differently (`GGUFDeepseek2Config.notes`),
    /// or the error that stops the config being read.
    public var notes: [String]

    public init(path: String) throws(GGUFError) {
        self.init(try GGUFModel(path: path))
    }

    public init(_ model: GGUFModel) {
        files = model.parts.map(\.path)
        version = model.first.version
        fileBytes = model.parts.reduce(0) { $0 + $1.fileLength }
        architecture = model.first.architecture
        name = model["general.name"]?.stringValue
        metadataCount = model.metadata.count
        metadata = model.metadata.map { Key(key: $0.key, type: $0.value.typeName, value: $0.value.summary) }
        let tensors = model.tensors
        tensorCount = tensors.count
        // Saturating: a hostile file's counts may sum past Int.max (each one is bounded, their sum is not).
        elements = tensors.reduce(0) { CheckedMath.add($0, $1.elementCount) ?? Int.max }
        tensorBytes = tensors.reduce(0) { CheckedMath.add($0, $1.byteCount) ?? Int.max }
        bitsPerWeight = Self.bits(tensorBytes, elements)
        byType = Self.group(tensors) { $0.type.name }
        byKind = Self.group(tensors, Self.kind)
        tokenizerModel = model["tokenizer.ggml.model"]?.stringValue
        tokenCount = model["tokenizer.ggml.tokens"]?.arrayValue?.count
        mergeCount = model["tokenizer.ggml.merges"]?.arrayValue?.count
        let tokenStrings = model["tokenizer.ggml.tokens"]?.arrayValue?.stringValues
        let mergeStrings = model["tokenizer.ggml.merges"]?.arrayValue?.stringValues
        if tokenStrings != nil || mergeStrings != nil {
            tokenizerBytes = ((tokenStrings ?? []) + (mergeStrings ?? [])).reduce(0) { $0 + $1.utf8.count }
        }
        deepseek2 = nil
        notes = []
        if architecture == "deepseek2" {
            do {
                let c = try GGUFDeepseek2Config(model)
                let dense = c.leadingDenseBlockCount
                deepseek2 = "\(c.blockCount) layers (\(dense) dense), hidden \(c.embeddingLength), \(c.headCount) heads, "
                    + "q_lora \(c.qLoraRank.map(String.init) ?? "none"), kv_lora \(c.kvLoraRank), \(c.expertCount) experts "
                    + "(\(c.expertUsedCount) used, \(c.expertSharedCount) shared, width \(c.expertFeedForwardLength))"
                notes = c.notes
            } catch {
                notes = [error.description]
            }
        }
    }

    /// `blk.12.ffn_gate_exps.weight` → `ffn_gate_exps`; `token_embd.weight` → `token_embd`;
    /// `blk.3.exp_probs_b.bias` → `exp_probs_b.bias` (the bias is its own kind).
    public static func kind(_ tensor: GGUFTensorInfo) -> String {
        var parts = tensor.name.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        if parts.count > 2, parts[0] == "blk", Int(parts[1]) != nil { parts.removeFirst(2) }
        if parts.count > 1, parts.last == "weight" { parts.removeLast() }
        return parts.joined(separator: ".")
    }

    static func bits(_ bytes: Int, _ elements: Int) -> Double { elements == 0 ? 0 : Double(bytes) * 8 / Double(elements) }

    static func group(_ tensors: [GGUFTensorInfo], _ key: (GGUFTensorInfo) -> String) -> [Group] {
        var groups: [String: Group] = [:]
        for t in tensors {
            let k = key(t)
            var g = groups[k] ?? Group(name: k, tensors: 0, elements: 0, bytes: 0, bitsPerWeight: 0)
            g.tensors += 1
            g.elements = CheckedMath.add(g.elements, t.elementCount) ?? Int.max
            g.bytes = CheckedMath.add(g.bytes, t.byteCount) ?? Int.max
            groups[k] = g
        }
        return groups.values.map { g in
            var g = g
            g.bitsPerWeight = bits(g.bytes, g.elements)
            return g
        }.sorted { ($0.bytes, $1.name) > ($1.bytes, $0.name) }
    }

    public func renderText() -> String {
        var out = ""
        let partText = files.count == 1 ? "" : " (\(files.count) parts)"
        out += "GGUF \(displayed(files[0]))\(partText), version \(version), \(formatBytes(fileBytes))\n"
        out += "architecture: \(architecture.map { displayed($0) } ?? "(none)")"
        if let name { out += ", name: \(displayed(name))" }
        out += "\n"
        out += "metadata: \(metadataCount) keys\n"
        let shown = metadata.filter { !$0.key.hasPrefix("tokenizer.ggml.") || !$0.type.hasPrefix("array") }
        for k in shown.prefix(60) { out += "  \(displayed(k.key)) (\(k.type)) = \(displayed(k.value))\n" }
        if shown.count > 60 { out += "  … \(shown.count - 60) more\n" }
        if let deepseek2 { out += "deepseek2: \(deepseek2)\n" }
        for note in notes { out += "note: \(displayed(note, limit: nil))\n" }
        if let tokenizerModel {
            out += "tokenizer: \(displayed(tokenizerModel)), \(tokenCount ?? 0) tokens, \(mergeCount ?? 0) merges"
            out += tokenizerBytes.map { ", \(formatBytes($0)) of strings\n" } ?? "\n"
        }
        out += "tensors: \(tensorCount), \(elements) weights, \(formatBytes(tensorBytes)), \(String(format: "%.3f", bitsPerWeight)) bits per weight\n"
        if let expected = expectedTensorCount, let present = presentTensorCount {
            out += "architecture needs: \(present) of \(expected) tensors present"
            if let surplus = surplusTensorCount, surplus > 0 { out += ", \(surplus) more it does not use (llama.cpp refuses the file)" }
            out += present < expected ? " (run `k2pack verify` for the list)\n" : "\n"
        } else if let tensorSetNote {
            out += "architecture needs: not checked: \(displayed(tensorSetNote, limit: nil))\n"
        }
        if let m = memory {
            out += "memory per GPU on \(m.gpus) GPU\(m.gpus == 1 ? "" : "s") (weights only): EP\(m.gpus) \(formatBytes(m.expertParallelBytesPerGPU))"
            out += ": routed experts divided whole (\(m.expertsPerGPU) per GPU, \(formatBytes(m.routedExpertBytes)) in all), "
            out += "the other \(formatBytes(m.replicatedBytes)) replicated\n"
        }
        out += table("by type", byType)
        out += table("by tensor kind", byKind)
        return out
    }

    private func table(_ title: String, _ groups: [Group]) -> String {
        var out = "\(title):\n"
        let width = max(12, groups.map { displayed($0.name).count }.max() ?? 0)
        for g in groups {
            let name = displayed(g.name)
            out += "  " + name + String(repeating: " ", count: max(0, width - name.count))
            out += String(g.tensors).leftPadded(6) + " tensors" + String(g.elements).leftPadded(16) + " weights"
            out += formatBytes(g.bytes).leftPadded(12) + String(format: "%8.3f", g.bitsPerWeight) + " bpw\n"
        }
        return out
    }
}
