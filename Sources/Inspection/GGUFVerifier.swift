import FileIO
import Foundation
import GGUF
import GGUFModel
import TensorCore

/// `k2pack verify FILE.gguf` (one file or any part of a split set): the reader's structural checks, then one
/// streaming pass over the data (every block's scales finite, every F16 / BF16 / F32 value finite: `GGUFScaleScan`),
/// the tensor set and shapes against the architecture (`GGUFTensorSetCheck`), the tokenizer
/// (`GGUFTokenizerCheck`) and the metadata's consistency. Everything found is a `Finding`, rendered as for
/// folders; the report fails on any error.
///
/// A file the reader refuses is one `gguf_invalid` error (nothing else can be checked); a file that cannot be
/// opened at all (absent, unreadable) throws, as a folder that is not a checkpoint does.
public enum GGUFVerifier {
    /// One unit of the data scan: blocks `blocks` of tensor `tensor` of part `part`.
    struct Item: Sendable {
        var part: Int
        var tensor: Int
        var blocks: Range<Int>
    }

    /// Blocks per item: about this many bytes, so one large tensor keeps every core busy.
    static let itemBytes = 32 << 20

    public static func verify(
        path: String, options: VerifyOptions = VerifyOptions(), progress: ProgressCallback? = nil
    ) throws(GGUFError) -> VerifyReport {
        let start = Date()
        let model: GGUFModel
        do {
            model = try GGUFModel(path: path)
        } catch {
            if case .io = error { throw error }
            var report = VerifyReport(
                path: path, architecture: nil, shardCount: 1, tensorCount: 0, bytesScanned: 0,
                seconds: Date().timeIntervalSince(start),
                findings: [Finding(code: "gguf_invalid", file: error.file, message: error.description)])
            report.format = "gguf"
            return report
        }
        var findings: [Finding] = []
        var scanned = 0
        if options.scanData {
            let (scanFindings, bytes) = scan(model, threads: options.threads, progress: progress)
            findings += scanFindings
            scanned = bytes
        }
        let (setFindings, expectedCount) = tensorSet(model)
        findings += setFindings
        findings += GGUFTokenizerCheck.check(model)
        findings += metadata(model)
        var report = VerifyReport(
            path: path, architecture: model.first.architecture, shardCount: model.parts.count, tensorCount: model.tensorNames.count,
            expectedTensorCount: expectedCount, bytesScanned: scanned, seconds: Date().timeIntervalSince(start), findings: findings)
        report.format = "gguf"
        return report
    }

    // MARK: - Data

    /// Every tensor's scales (or values), tensors split into items of about `itemBytes`, items on `threads`
    /// threads (`itemBytes` smaller in tests); one finding per tensor with NaN/Inf, naming the first block and
    /// field (or element).
    static func scan(
        _ model: GGUFModel, threads: Int, progress: ProgressCallback?, itemBytes: Int = GGUFVerifier.itemBytes
    ) -> (findings: [Finding], bytes: Int) {
        var plan: [Item] = []
        var total = 0
        for (p, part) in model.parts.enumerated() {
            for (t, info) in part.tensors.enumerated() where GGUFScaleScan.checks(info.type) && info.byteCount > 0 {
                let blocks = info.byteCount / info.type.typeSize
                let perItem = max(1, itemBytes / info.type.typeSize)
                var first = 0
                while first < blocks {
                    let end = min(blocks, first + perItem)
                    plan.append(Item(part: p, tensor: t, blocks: first..<end))
                    first = end
                }
                total += info.byteCount
            }
        }
        let items = plan
        let done = ProgressCounter(total: total, report: progress)
        let results: [Result<GGUFScaleScan.Result, GGUFError>] = parallelMap(count: items.count, width: threads) { i in
            let item = items[i]
            let part = model.parts[item.part]
            let info = part.tensors[item.tensor]
            let size = info.type.typeSize
            let bytes: UnsafeRawBufferPointer
            do throws(GGUFError) { bytes = try part.bytes(of: info) } catch { return .failure(error) }
            let range = (item.blocks.lowerBound * size)..<(item.blocks.upperBound * size)
            let fileStart = part.dataStart + info.offset
            part.file.adviseSequential((fileStart + range.lowerBound)..<(fileStart + range.upperBound))
            let result = GGUFScaleScan.scan(info.type, UnsafeRawBufferPointer(rebasing: bytes[range]), firstIndex: item.blocks.lowerBound)
            part.file.adviseDone((fileStart + range.lowerBound)..<(fileStart + range.upperBound))
            done.add(range.count)
            return .success(result)
        }
        // Merged per tensor in plan order (items of one tensor are consecutive).
        var findings: [Finding] = []
        var i = 0
        while i < items.count {
            let key = (items[i].part, items[i].tensor)
            var merged = GGUFScaleScan.Result()
            var failure: GGUFError?
            while i < items.count, (items[i].part, items[i].tensor) == key {
                switch results[i] {
                case .success(let r): merged.merge(r)
                case .failure(let e): failure = failure ?? e
                }
                i += 1
            }
            let part = model.parts[key.0]
            if let failure {
                findings.append(Finding(code: "io", file: part.path, tensor: part.tensors[key.1].name, message: failure.description))
            } else if merged.count > 0 {
                findings.append(nonFiniteFinding(part.tensors[key.1], merged, file: part.path))
            }
        }
        return (findings, total)
    }

    /// `scale_not_finite` for a block type (block index, its row and place in the row, the field and value);
    /// `non_finite_values` for a plain float type (the element and its numpy-order index).
    static func nonFiniteFinding(_ info: GGUFTensorInfo, _ r: GGUFScaleScan.Result, file: String) -> Finding {
        guard let first = r.first else { preconditionFailure("a finding needs a first non-finite value") }
        let value = first.value.isNaN ? "NaN" : "\(first.value)"
        let location: String
        let code: String
        let what: String
        if let field = first.field {
            let perRow = max(1, (info.ne.first ?? 1) / info.type.blockSize)
            let blocks = info.byteCount / info.type.typeSize
            code = "scale_not_finite"
            what = "\(grouped(r.count)) of \(grouped(blocks)) \(info.type.name) block\(blocks == 1 ? "" : "s") \(r.count == 1 ? "has" : "have") a NaN/Inf scale"
            location = "block \(first.index) (row \(rowIndex(first.index / perRow, info.ne)), block \(first.index % perRow) of \(perRow) in the row): \(field) = \(value)"
        } else {
            code = "non_finite_values"
            what = "\(grouped(r.count)) NaN/Inf value\(r.count == 1 ? "" : "s") (\(info.type.name))"
            location = "element \(first.index) \(elementIndex(first.index, info.ne)) = \(value)"
        }
        return Finding(
            code: code, file: file, tensor: info.name,
            message: "\(displayed(file)): tensor '\(displayed(info.name))': \(what); first: \(location)")
    }

    /// Row `r` (over `ne[1...]`) as a numpy-order index, outermost first: `[expert, row]` for a 3-D tensor.
    static func rowIndex(_ r: Int, _ ne: [Int]) -> String {
        let outer = Array(ne.dropFirst())
        guard outer.count > 1 else { return "\(r)" }
        return formatIndex(r, outer)
    }

    /// Element `e` as a numpy-order index (`[row, column]`).
    static func elementIndex(_ e: Int, _ ne: [Int]) -> String { formatIndex(e, ne) }

    /// `index` over dimensions `ne` (innermost first) as `[outermost, …, innermost]`.
    static func formatIndex(_ index: Int, _ ne: [Int]) -> String {
        var rest = index
        var parts: [Int] = []
        for d in ne {
            let n = max(1, d)
            parts.append(rest % n)
            rest /= n
        }
        return "[" + parts.reversed().map(String.init).joined(separator: ", ") + "]"
    }

    // MARK: - Tensor set

    /// Missing, surplus, mis-shaped and undecodable tensors against the architecture's tensor map, and the number
    /// of tensors the architecture needs (nil when there is no map to check against).
    static func tensorSet(_ model: GGUFModel) -> (findings: [Finding], expected: Int?) {
        let first = model.first.path
        let check: GGUFTensorSetCheck
        do {
            check = try GGUFTensorSetCheck(model)
        } catch {
            switch error {
            case let .unknownArchitecture(_, found, known):
                let what = found.map { "general.architecture is \"\(displayed($0))\"" } ?? "no general.architecture"
                return ([Finding(
                    .warning, code: "architecture_unchecked", file: first,
                    message: "\(displayed(first)): \(what): the tensor set is not checked (k2pack has tensor maps for \(known.joined(separator: ", ")))")], nil)
            case let .missingTensor(file, tensor, _):
                return ([Finding(code: "missing_tensor", file: file, tensor: tensor, message: error.description)], nil)
            case let .wrongShape(file, tensor, _, _):
                return ([Finding(code: "wrong_shape", file: file, tensor: tensor, message: error.description)], nil)
            default:
                return ([Finding(code: "config", file: first, message: error.description)], nil)
            }
        }
        var findings: [Finding] = []
        for m in check.missing {
            findings.append(Finding(
                code: "missing_tensor", file: first, tensor: m.tensor,
                message: "\(displayed(first)): tensor '\(displayed(m.tensor))' (slot \(m.slot)) is missing: the metadata's layer and expert counts need it"))
        }
        for name in check.surplus {
            let file = model.tensor(named: name)?.file.path ?? first
            findings.append(Finding(
                code: "unexpected_tensor", file: file, tensor: name,
                message: "\(displayed(file)): tensor '\(displayed(name))' is not one the \(model.first.architecture.map { displayed($0) } ?? "") architecture has: llama.cpp's loader refuses a file with a tensor it does not create"))
        }
        for w in check.wrongShapes {
            findings.append(Finding(
                code: "wrong_shape", file: w.file, tensor: w.tensor,
                message: GGUFModelError.wrongShape(file: w.file, tensor: w.tensor, found: w.found, expected: w.expected).description))
        }
        for u in check.undecodable {
            findings.append(Finding(
                code: "cannot_decode", file: u.file, tensor: u.tensor,
                message: GGUFModelError.cannotDecode(file: u.file, tensor: u.tensor, type: u.type).description))
        }
        return (findings, check.expectedCount)
    }

    // MARK: - Metadata

    /// What llama.cpp would read differently from the file: YaRN betas other than the ones its deepseek2 loader
    /// uses, and no expert groups. (Contradictions between keys are refused when the config is made: `config`.)
    static func metadata(_ model: GGUFModel) -> [Finding] {
        guard model.first.architecture == "deepseek2", let c = try? GGUFDeepseek2Config(model) else { return [] }
        let file = model.first.path
        var findings: [Finding] = []
        if c.ropeScalingType == "yarn" {
            var flags: [String] = []
            var found: [String] = []
            if let fast = c.yarnBetaFast, fast != llamaCppYarnBetaFast {
                flags.append("--yarn-beta-fast \(number(fast))")
                found.append("beta_fast \(number(fast))")
            }
            if let slow = c.yarnBetaSlow, slow != llamaCppYarnBetaSlow {
                flags.append("--yarn-beta-slow \(number(slow))")
                found.append("beta_slow \(number(slow))")
            }
            if !flags.isEmpty {
                findings.append(Finding(
                    .warning, code: "yarn_beta_ignored", file: file,
                    message: "\(displayed(file)): YaRN \(found.joined(separator: ", ")) in the file, but llama.cpp's deepseek2 loader ignores the file's betas and uses \(number(llamaCppYarnBetaFast)) / \(number(llamaCppYarnBetaSlow)): pass \(flags.joined(separator: " ")) to llama.cpp to run the model's RoPE"))
            }
        }
        if c.expertCount > 0, c.expertGroupCount == nil || c.expertGroupUsedCount == nil {
            findings.append(Finding(
                .warning, code: "metadata_note", file: file,
                message: "\(displayed(file)): deepseek2.expert_group_count / expert_group_used_count absent: routing without expert groups"))
        }
        return findings
    }

    /// The YaRN betas llama.cpp's deepseek2 graph uses whatever the file says (its defaults).
    static let llamaCppYarnBetaFast = 32.0
    static let llamaCppYarnBetaSlow = 1.0

    /// 1.0 → "1", 0.5 → "0.5".
    static func number(_ v: Double) -> String { v == v.rounded() && abs(v) < 1e15 ? String(Int64(v)) : "\(v)" }
}
