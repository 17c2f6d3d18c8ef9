import Checkpoint
import Foundation
import LoadedModel
import ModelConfig
import TensorCore

/// What `k2pack inspect` reports about a checkpoint.
public struct InspectReport: Sendable, Codable {
    public struct ModelSummary: Sendable, Codable {
        public var hiddenSize: Int
        public var layers: Int
        public var denseLayers: Int
        public var moeLayers: Int
        public var attentionHeads: Int
        public var routedExperts: Int
        public var expertsPerToken: Int
        public var sharedExperts: Int
        public var vocabSize: Int
        public var visionBlocks: Int?
    }

    public struct RoleSummary: Sendable, Codable {
        public var role: String
        public var tensors: Int
        public var parameters: Int
        public var bytes: Int
    }

    public struct QuantizationSummary: Sendable, Codable {
        public var scheme: String
        public var location: String
        public var ignore: [String]
        /// Linear modules stored quantized.
        public var modules: Int
        public var roles: [String]
        public var parameters: Int
        public var bytes: Int
    }

    public struct MemoryEstimate: Sendable, Codable {
        public var gpus: Int
        /// Tensor parallel: every splittable tensor divided across the GPUs (experts on their intermediate
        /// dimension), norms, router and latent projections replicated. Weights only.
        public var tensorParallelBytesPerGPU: Int
        /// Expert parallel: routed experts divided whole across the GPUs, everything else replicated
        /// (data-parallel attention). Weights only.
        public var expertParallelBytesPerGPU: Int
    }

    public var path: String
    public var format: String
    public var architecture: String?
    public var architectureName: String?
    public var model: ModelSummary?
    public var shardCount: Int
    public var tensorCount: Int
    public var totalBytes: Int
    public var totalParameters: Int
    public var roles: [RoleSummary]
    public var quantization: QuantizationSummary?
    public var memory: MemoryEstimate?
    public var findings: [Finding]

    public init(_ checkpoint: LoadedCheckpoint, gpus: Int = 8) {
        let dir = checkpoint.directory
        path = dir.path
        format = "huggingface"
        architecture = checkpoint.config?.architecture.name
        architectureName = checkpoint.config?.architecture.displayName
        if let config = checkpoint.config {
            let t = config.text
            model = ModelSummary(
                hiddenSize: t.hiddenSize, layers: t.numLayers, denseLayers: t.denseLayers.filter { $0 < t.numLayers }.count,
                moeLayers: t.moeLayers.filter { $0 < t.numLayers }.count,
                attentionHeads: t.numHeads, routedExperts: t.numRoutedExperts, expertsPerToken: t.numExpertsPerToken,
                sharedExperts: t.numSharedExperts, vocabSize: t.vocabSize, visionBlocks: config.vision?["vt_num_hidden_layers"]?.intValue)
        }
        shardCount = dir.shardNames.count

        // Roles in manifest order, unrecognized last; accumulated by role id.
        let expectedList = checkpoint.expected
        var order = expectedList?.roles ?? []
        let unrecognized = order.count
        order.append("unrecognized")
        var totals = Totals(roles: order, gpus: gpus, experts: checkpoint.config?.text.numRoutedExperts ?? 0)
        // The expected entries' fields are read in place (the list's `tensors` are never built here), through the
        // list unwrapped once, outside the loops (unwrapping it per tensor copied the whole list, a dozen retains,
        // each time), and the header entries' fields too: only plain values are passed on (no copy of an entry).
        for (s, shard) in dir.shards.enumerated() {
            guard let shard else { continue }
            let positions = checkpoint.positions.isEmpty ? [] : checkpoint.positions[s]
            shard.tensors.withUnsafeBufferPointer { tensors in
                guard let list = expectedList, !positions.isEmpty else {
                    for e in tensors.indices {
                        totals.add(byteCount: tensors[e].byteCount, elementCount: tensors[e].elementCount, dtype: tensors[e].dtype, roleID: unrecognized)
                    }
                    return
                }
                let roleIDs = list.roleIDs
                for e in tensors.indices {
                    let position = positions[e]
                    guard position >= 0 else {
                        totals.add(byteCount: tensors[e].byteCount, elementCount: tensors[e].elementCount, dtype: tensors[e].dtype, roleID: unrecognized)
                        continue
                    }
                    totals.add(
                        byteCount: tensors[e].byteCount, elementCount: tensors[e].elementCount, dtype: tensors[e].dtype, roleID: roleIDs[position],
                        method: list.method(at: position), form: list.form(at: position), tp: list.tp(at: position),
                        expertParallel: list.expertParallel(at: position))
                }
            }
        }
        let sums = totals.sums, quantRoleIDs = totals.quantRoleIDs
        let (quantModules, quantParams, quantBytes) = (totals.quantModules, totals.quantParams, totals.quantBytes)
        let (tensorCount, totalBytes, totalParameters) = (totals.tensorCount, totals.totalBytes, totals.totalParameters)
        let (tpBytes, epBytes) = (totals.tpBytes, totals.epBytes)
        let quantRoles = order.indices.filter { quantRoleIDs[$0] }.map { order[$0] }
        roles = sums.filter { $0.tensors > 0 }
        self.tensorCount = tensorCount
        self.totalBytes = totalBytes
        self.totalParameters = totalParameters
        if let scheme = checkpoint.config?.quantization {
            quantization = QuantizationSummary(
                scheme: scheme.summary, location: scheme.location, ignore: scheme.ignore, modules: quantModules,
                roles: quantRoles, parameters: quantParams, bytes: quantBytes)
        }
        if checkpoint.config != nil {
            memory = MemoryEstimate(
                gpus: gpus, tensorParallelBytesPerGPU: Int(tpBytes.rounded(.up)),
                expertParallelBytesPerGPU: Int(epBytes.rounded(.up)))
        }
        findings = checkpoint.problems.map(Finding.init)
    }

    public func renderText() -> String {
        var out = ""
        func line(_ label: String, _ value: String) { out += label.padding(toLength: 15, withPad: " ", startingAt: 0) + value + "\n" }
        line("checkpoint", displayed(path))
        if let architecture, let architectureName { line("architecture", "\(displayed(architectureName)) (\(displayed(architecture)))") }
        if let m = model {
            line("layers", "\(m.layers) (\(m.denseLayers) dense, \(m.moeLayers) MoE); hidden \(m.hiddenSize), \(m.attentionHeads) heads, vocab \(grouped(m.vocabSize))")
            line("experts", "\(m.routedExperts) routed, top-\(m.expertsPerToken), \(m.sharedExperts) shared")
            if let blocks = m.visionBlocks { line("vision tower", "\(blocks) blocks + projector") }
        }
        line("shards", "\(shardCount) file\(shardCount == 1 ? "" : "s"), \(grouped(tensorCount)) tensors, \(formatBytes(totalBytes)) (\(grouped(totalBytes)) bytes)")
        line("parameters", "\(grouped(totalParameters)) (\(humanCount(totalParameters)); INT4 counted as logical parameters)")
        if let q = quantization {
            line("quantization", "\(q.scheme) (in \(q.location))")
            line("", "\(grouped(q.modules)) modules quantized: \(q.roles.joined(separator: ", ")); \(humanCount(q.parameters)) parameters in \(formatBytes(q.bytes))")
        } else {
            line("quantization", "none")
        }
        out += "\n"
        let header = ["role", "tensors", "parameters", "bytes"]
        var rows = roles.map { [$0.role, grouped($0.tensors), grouped($0.parameters), formatBytes($0.bytes)] }
        rows.append(["total", grouped(tensorCount), grouped(totalParameters), formatBytes(totalBytes)])
        out += table(header: header, rows: rows, rightAligned: [1, 2, 3])
        if let m = memory {
            out += "\nmemory per GPU on \(m.gpus) GPUs (weights only):\n"
            out += "  TP\(m.gpus)  \(formatBytes(m.tensorParallelBytesPerGPU).leftPadded(12))  every split tensor divided by \(m.gpus); norms, router, latent projections replicated\n"
            out += "  EP\(m.gpus)  \(formatBytes(m.expertParallelBytesPerGPU).leftPadded(12))  routed experts divided whole; everything else replicated\n"
        }
        out += renderFindings(findings)
        return out
    }
}

/// `InspectReport`'s sums over the header entries, by role and in total.
private struct Totals {
    var sums: [InspectReport.RoleSummary]
    var tensorCount = 0
    var totalBytes = 0
    var totalParameters = 0
    var quantModules = 0
    var quantRoleIDs: [Bool]
    var quantParams = 0
    var quantBytes = 0
    var tpBytes = 0.0
    var epBytes = 0.0
    let n: Double
    let experts: Double
    let expertsPerRank: Double

    init(roles: [String], gpus: Int, experts: Int) {
        sums = roles.map { InspectReport.RoleSummary(role: $0, tensors: 0, parameters: 0, bytes: 0) }
        quantRoleIDs = [Bool](repeating: false, count: roles.count)
        n = Double(max(1, gpus))
        self.experts = Double(experts)
        expertsPerRank = experts > 0 ? (self.experts / n).rounded(.up) : 0
    }

    /// One header entry (its span, elements and dtype), with what the expected list says of it (nil `form`: not
    /// implied by the config).
    mutating func add(
        byteCount: Int, elementCount: Int, dtype: DType, roleID: Int, method: QuantizationScheme.Method? = nil, form: TensorForm? = nil,
        tp: TPRule = .replicate, expertParallel: Bool = false
    ) {
        let params = form.map { LoadedCheckpoint.parameterCount(elementCount: elementCount, dtype: dtype, form: $0, method: method) } ?? elementCount
        sums[roleID].tensors += 1
        sums[roleID].parameters += params
        sums[roleID].bytes += byteCount
        tensorCount += 1
        totalBytes += byteCount
        totalParameters += params
        let bytes = Double(byteCount)
        if method != nil {
            if form == .packed || form == .plain { quantModules += 1 }
            quantRoleIDs[roleID] = true
            quantParams += params
            quantBytes += byteCount
        }
        switch tp {
        case .replicate: tpBytes += bytes
        case .column, .row, .vocab: tpBytes += bytes / n
        }
        if expertParallel, experts > 0 {
            epBytes += bytes * expertsPerRank / experts
        } else {
            epBytes += bytes
        }
    }
}

/// Findings as text: errors first, at most `limit` per code.
func renderFindings(_ findings: [Finding], limit: Int = 20) -> String {
    guard !findings.isEmpty else { return "" }
    var out = "\n"
    for severity in [Finding.Severity.error, .warning] {
        let some = findings.filter { $0.severity == severity }
        guard !some.isEmpty else { continue }
        // A summary line ("… and N more", `Finding.capped`) stands for N findings.
        let total = some.reduce(0) { $0 + ($1.more ?? 1) }
        out += "\(total) \(severity == .error ? "problem" : "warning")\(total == 1 ? "" : "s"):\n"
        var perCode: [String: Int] = [:]
        for f in some {
            let shown = perCode[f.code, default: 0]
            perCode[f.code] = shown + (f.more ?? 1)
            if f.more == nil, shown < limit { out += "  \(severity == .error ? "✗" : "!") \(displayed(f.message, limit: nil))\n" }
        }
        for (code, count) in perCode.sorted(by: { $0.key < $1.key }) where count > limit {
            let listed = some.filter { $0.code == code && $0.more == nil }.count
            out += "  … and \(count - limit) more \(displayed(code)) \(severity == .error ? "problems" : "warnings") (\(listed > limit ? "see --json" : "not listed"))\n"
        }
    }
    return out
}

/// 1234567 → "1,234,567".
func grouped(_ n: Int) -> String {
    let digits = String(n.magnitude)
    var out = ""
    for (i, c) in digits.enumerated() {
        if i > 0, (digits.count - i) % 3 == 0 { out += "," }
        out.append(c)
    }
    return (n < 0 ? "-" : "") + out
}

/// 1026000000000 → "1.03 T".
func humanCount(_ n: Int) -> String {
    let units: [(Double, String)] = [(1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")]
    for (scale, unit) in units where Double(n) >= scale { return String(format: "%.2f %@", Double(n) / scale, unit) }
    return "\(n)"
}

func table(header: [String], rows: [[String]], rightAligned: Set<Int>) -> String {
    let widths = header.indices.map { c in ([header] + rows).map { $0[c].count }.max() ?? 0 }
    func render(_ cells: [String]) -> String {
        cells.enumerated().map { c, cell in
            rightAligned.contains(c) ? cell.leftPadded(widths[c]) : cell.padding(toLength: widths[c], withPad: " ", startingAt: 0)
        }.joined(separator: "  ") + "\n"
    }
    return ([header] + rows).map(render).joined()
}
