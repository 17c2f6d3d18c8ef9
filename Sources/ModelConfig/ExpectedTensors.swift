import Foundation
import JSONCore
import TensorCore

/// What a tensor is within its module.
public enum TensorForm: String, Sendable, Codable {
    /// A plain tensor (a norm, an embedding, an unquantized weight, a bias).
    case plain
    /// pack-quantized codes: I32 `[out, ceil(in·bits/32)]`.
    case packed
    /// pack-quantized group scales: `[out, ceil(in/group)]`.
    case scale
    /// pack-quantized `[out, in]` as I32 or I64.
    case shape
    /// FP8 block scales `weight_scale_inv`.
    case blockScale
}

/// One tensor the config implies, with its expected shape and dtype.
public struct ExpectedTensor: Sendable {
    public var name: String
    public var role: String
    /// Where the forward pass uses it (the manifest's `slot`, else its role).
    public var slot: String
    public var shape: [Int]
    /// Allowed dtypes (weight_shape may be I32 or I64).
    public var dtypes: [DType]
    public var form: TensorForm
    /// The Linear module this tensor belongs to (name without `.weight` etc.), when it is part of one.
    public var module: String?
    /// The module's logical `[out, in]` for quantized modules.
    public var logicalShape: [Int]?
    /// The quantization of the module, when quantized.
    public var method: QuantizationScheme.Method?
    public var tp: TPRule
    public var tpUnit: Int?
    public var expertParallel: Bool
    /// Decoder layer, expert index or vision block, when the spec repeats.
    public var layer: Int?
    public var expert: Int?
    /// For routed-expert tensors: the name of the expert-major stack they belong to, the expert index written
    /// as `*` (`…mlp.experts.*.gate_proj.weight_packed`).
    public var stackName: String?
    /// Part of the vision tower (an architecture part read from the vision config).
    public var vision = false
}

/// The complete list of tensors a config implies, in manifest order.
public struct ExpectedTensorList: Sendable {
    /// The tensors. Their names are fixed once the list is built (`position(of:)` and `byName` index them);
    /// other fields may be adjusted.
    public var tensors: [ExpectedTensor]
    /// Name → position in `tensors` (the first, where names repeat). Built on first use: `position(of:)` finds
    /// names without it.
    public var byName: [String: Int] { nameTable.table(tensors) }
    /// Distinct roles in manifest order.
    public var roles: [String]
    /// Position in `roles` of each tensor's role (parallel to `tensors`).
    public var roleIDs: [Int]

    /// Refuses configs that imply more tensors than this (a hostile config claiming 10¹² experts).
    public static let maxTensorCount = 1_000_000

    /// Names by pattern (see `ExpectedNameIndex`).
    let nameIndex: ExpectedNameIndex
    /// `byName`, built once on first use.
    private let nameTable = LazyNameTable()

    public init(config: ModelConfig) throws(ConfigError) {
        var tensors: [ExpectedTensor] = []
        // Sized once from an estimate (the list of a real K2.5 is 208,550 entries of ~200 bytes: growing it by
        // doubling copied it twice over and touched twice the memory).
        tensors.reserveCapacity(Self.estimatedCount(config: config))
        var nameIndex = ExpectedNameIndex()
        for part in config.architecture.parts {
            let specs = try ManifestLibrary.specs(named: part.specs)
            for spec in specs {
                try Self.expand(spec, part: part, config: config, into: &tensors, index: &nameIndex)
            }
        }
        nameIndex.finish()
        var roles: [String] = []
        var roleIDs: [Int] = []
        roleIDs.reserveCapacity(tensors.count)
        var previous: (role: String, id: Int)?
        for t in tensors {
            if let previous, previous.role == t.role {
                roleIDs.append(previous.id)
                continue
            }
            let id = roles.firstIndex(of: t.role) ?? { roles.append(t.role); return roles.count - 1 }()
            roleIDs.append(id)
            previous = (t.role, id)
        }
        self.tensors = tensors
        self.nameIndex = nameIndex
        self.roles = roles
        self.roleIDs = roleIDs
    }

    public subscript(name: String) -> ExpectedTensor? { position(of: name).map { tensors[$0] } }

    /// The position in `tensors` of the (first) tensor named `name`, or nil when the config does not imply it.
    /// Reads the name once against the manifest's name patterns; no table of every name is built.
    public func position(of name: String) -> Int? {
        guard nameIndex.usable else { return byName[name] }
        return nameIndex.position(of: name)
    }

    /// At least as many tensors as `init(config:)` will list (a linear module lists at most four: three stored
    /// forms and a bias), at most `maxTensorCount`; only a capacity to reserve, so it never throws: whatever it
    /// cannot read counts nothing here and is reported by the expansion itself (a vision block count that does
    /// not evaluate counts no blocks).
    static func estimatedCount(config: ModelConfig) -> Int {
        let text = config.text
        var total = 0
        for part in config.architecture.parts {
            guard let specs = try? ManifestLibrary.specs(named: part.specs) else { continue }
            // Vision blocks count too: they are listed after the text tensors, so a list sized without them grew
            // once at the end, copying all 208,550 entries of a real K2.5 into a new 80 MB buffer.
            let section = part.config == .vision
                ? (config.architecture.visionConfigKey ?? "config") : (config.architecture.textConfigKey ?? "config")
            let blocks = (try? ShapeExpression.evaluate(
                "vt_num_hidden_layers", section: section, lookup: { config.lookup($0, in: part.config) }))
                .map { min(max($0, 0), 100_000) } ?? 0
            for spec in specs {
                let instances: Int
                switch spec.repeat {
                case .once: instances = 1
                case .layers: instances = text.storedLayers.count
                case .mtpLayers: instances = text.mtpLayers.count
                case .denseLayers: instances = text.denseLayers.count
                case .moeLayers: instances = text.moeLayers.count
                case .experts: instances = CheckedMath.multiply(text.moeLayers.count, text.numRoutedExperts) ?? maxTensorCount
                case .visionBlocks: instances = blocks
                }
                let perInstance = spec.tensor != nil ? 1 : 4
                total = min(maxTensorCount, total + min(maxTensorCount, instances) * perInstance)
            }
        }
        return total
    }

    static func expand(
        _ spec: TensorSpec, part: ArchitecturePart, config: ModelConfig, into tensors: inout [ExpectedTensor],
        index nameIndex: inout ExpectedNameIndex
    ) throws(ConfigError) {
        let lookup: (String) -> JSONValue? = { config.lookup($0, in: part.config) }
        let section = part.config == .vision
            ? (config.architecture.visionConfigKey ?? "config") : (config.architecture.textConfigKey ?? "config")
        if let rule = spec.when {
            let condition = try SpecCondition(parsing: rule, manifest: part.specs)
            if !condition.holds(lookup: lookup) { return }
        }
        let text = config.text
        // (layer, expert-or-block) instances.
        var instances: [(layer: Int?, index: Int?)] = []
        switch spec.repeat {
        case .once: instances = [(nil, nil)]
        case .layers: instances = text.storedLayers.map { ($0, nil) }
        case .mtpLayers: instances = text.mtpLayers.map { ($0, nil) }
        case .denseLayers: instances = text.denseLayers.map { ($0, nil) }
        case .moeLayers: instances = text.moeLayers.map { ($0, nil) }
        case .experts:
            let moe = text.moeLayers
            guard let count = CheckedMath.multiply(moe.count, text.numRoutedExperts),
                count <= (maxTensorCount - tensors.count) / 3
            else {
                throw .invalidValue(
                    file: ModelConfig.fileName, section: "config", key: "n_routed_experts",
                    reason: "\(text.numRoutedExperts) experts × \(moe.count) MoE layers is more tensors than k2pack accepts (\(maxTensorCount))")
            }
            instances.reserveCapacity(count)
            for l in moe { for e in 0..<text.numRoutedExperts { instances.append((l, e)) } }
        case .visionBlocks:
            let blocks = try ShapeExpression.evaluate("vt_num_hidden_layers", section: section, lookup: lookup)
            guard blocks >= 0, blocks <= 100_000 else {
                throw .invalidValue(file: ModelConfig.fileName, section: section, key: "vt_num_hidden_layers", reason: "\(blocks) blocks is not a plausible count")
            }
            instances = (0..<blocks).map { (nil, $0) }
        }
        guard tensors.count + instances.count <= maxTensorCount else {
            throw .invalidValue(
                file: ModelConfig.fileName, section: "config", key: "num_hidden_layers",
                reason: "the config implies more tensors than k2pack accepts (\(maxTensorCount))")
        }
        // Shapes do not depend on the instance: evaluate once.
        let eval: (String) throws(ConfigError) -> Int = { e throws(ConfigError) in
            let value = try ShapeExpression.evaluate(e, section: section, lookup: lookup)
            guard value >= 0 else {
                throw .invalidValue(file: ModelConfig.fileName, section: section, key: e, reason: "evaluates to \(value); sizes cannot be negative")
            }
            return value
        }
        let tpUnit = try spec.tpUnit.map(eval)
        let expertParallel = spec.ep ?? false
        let plainDType = try spec.dtype.map { name throws(ConfigError) -> DType in
            guard let d = DType(rawValue: name) else { throw .manifest(name: part.specs, reason: "unknown dtype \(name)") }
            return d
        } ?? config.weightDType

        let nameTemplate = NameTemplate(part.prefix + (spec.tensor ?? spec.linear ?? ""))
        func instantiate(_ inst: (layer: Int?, index: Int?)) -> String { nameTemplate.render(layer: inst.layer, index: inst.index) }
        // The stack name replaces the expert index by `*`: it depends on the layer only, so it is rendered once
        // per layer (`stackBase`) and the suffix after the module carries over.
        // The full stack names of the current layer, by suffix: every expert of the layer shares them.
        var stackLayer: Int?? = .none
        var stackBase = ""
        var layerStacks: [String: String] = [:]
        func stackName(_ inst: (layer: Int?, index: Int?)) -> String? {
            guard spec.repeat == .experts else { return nil }
            if stackLayer != .some(inst.layer) {
                stackBase = nameTemplate.render(layer: inst.layer, index: nil, wildcard: "*")
                stackLayer = .some(inst.layer)
                layerStacks.removeAll(keepingCapacity: true)
            }
            return stackBase
        }
        func make(_ name: String, _ role: String, _ shape: [Int], _ dtypes: [DType], _ form: TensorForm,
                  module: String?, logical: [Int]?, method: QuantizationScheme.Method?, inst: (layer: Int?, index: Int?),
                  stackBase: String?, suffix: String = "") -> ExpectedTensor {
            let stack: String? = stackBase.map { base in
                if let known = layerStacks[suffix] { return known }
                let full = base + suffix
                layerStacks[suffix] = full
                return full
            }
            // Everything stored in a multi-token-prediction layer is reported under one role.
            let isMTP = inst.layer.map { $0 >= text.numLayers } ?? false
            return ExpectedTensor(
                name: name, role: isMTP ? "mtp" : role, slot: spec.slot ?? spec.role, shape: shape, dtypes: dtypes, form: form, module: module, logicalShape: logical,
                method: method, tp: spec.tp, tpUnit: tpUnit, expertParallel: expertParallel, layer: inst.layer,
                expert: spec.repeat == .experts ? inst.index : nil, stackName: stack, vision: part.config == .vision)
        }

        if spec.tensor != nil {
            let shape = try (spec.shape ?? []).map(eval)
            let dtypes = [plainDType]
            let pattern = nameIndex.pattern(nameTemplate, suffix: "")
            for inst in instances {
                nameIndex.add(pattern: pattern, layer: inst.layer, index: inst.index, position: tensors.count)
                tensors.append(make(instantiate(inst), spec.role, shape, dtypes, .plain, module: nil, logical: nil, method: nil, inst: inst, stackBase: stackName(inst)))
            }
            return
        }
        guard spec.linear != nil, let outExpr = spec.out, let inExpr = spec.in else {
            throw .manifest(name: part.specs, reason: "a spec needs either \"tensor\" with \"shape\" or \"linear\" with \"out\" and \"in\"")
        }
        let out = try eval(outExpr)
        let inFeatures = try eval(inExpr)
        let textPrefix = config.architecture.textPrefix
        // Everything but the names is the same for every instance: build it once.
        let logical = [out, inFeatures]
        let plainDTypes = [plainDType]
        // An unquantized Linear weight may also be float32, a lossless superset (what `dequantize --exact`
        // writes); loaders convert it to the model dtype.
        let weightDTypes = plainDType == .f32 ? plainDTypes : plainDTypes + [.f32]
        let biasShape = [out]
        let hasBias = spec.bias ?? false
        let matcher = part.quantizable ? config.quantization.map(QuantizationScheme.Matcher.init) : nil
        // The stored forms depend on the method only (out and in are the spec's): looked up once per method.
        var formsMethod: QuantizationScheme.Method?
        var forms: [QuantizedForms.Form] = []
        // Name patterns of the stored forms (parallel to `forms`), of a plain weight and of the bias.
        var formPatterns: [Int?] = []
        let weightPattern = nameIndex.pattern(nameTemplate, suffix: ".weight")
        let biasPattern = hasBias ? nameIndex.pattern(nameTemplate, suffix: ".bias") : nil
        for inst in instances {
            let module = instantiate(inst)
            let stack = stackName(inst)
            var method: QuantizationScheme.Method?
            if let matcher {
                // Manifest names are ASCII: the prefix is dropped by bytes.
                let relative = module.utf8.starts(with: textPrefix.utf8)
                    ? String(Substring(module.utf8.dropFirst(textPrefix.utf8.count))) : module
                method = matcher.group(for: relative, className: "Linear")?.method
            }
            if let method, method != formsMethod {
                switch method {
                case let .packQuantized(bits, groupSize, _):
                    forms = QuantizedForms.packed(out: out, in: inFeatures, bits: bits, groupSize: groupSize, scaleDType: config.weightDType)
                case let .fp8Block(blockOut, blockIn):
                    forms = QuantizedForms.fp8(out: out, in: inFeatures, blockOut: blockOut, blockIn: blockIn)
                }
                formsMethod = method
                formPatterns = forms.map { nameIndex.pattern(nameTemplate, suffix: $0.suffix) }
            }
            if method != nil {
                for (f, (suffix, shape, dtypes, form)) in forms.enumerated() {
                    nameIndex.add(pattern: formPatterns[f], layer: inst.layer, index: inst.index, position: tensors.count)
                    tensors.append(make(module + suffix, spec.role, shape, dtypes, form, module: module, logical: logical, method: method, inst: inst, stackBase: stack, suffix: suffix))
                }
            } else {
                nameIndex.add(pattern: weightPattern, layer: inst.layer, index: inst.index, position: tensors.count)
                tensors.append(make(module + ".weight", spec.role, logical, weightDTypes, .plain, module: module, logical: nil, method: nil, inst: inst, stackBase: stack, suffix: ".weight"))
            }
            if hasBias {
                nameIndex.add(pattern: biasPattern, layer: inst.layer, index: inst.index, position: tensors.count)
                tensors.append(make(module + ".bias", spec.role, biasShape, plainDTypes, .plain, module: module, logical: nil, method: nil, inst: inst, stackBase: stack, suffix: ".bias"))
            }
        }
    }
}

/// A name with `{L}` (layer) and `{E}`/`{B}` (expert or block) placeholders, split once and filled fast.
struct NameTemplate {
    enum Piece {
        case text(String)
        case layer
        case index
    }

    let pieces: [Piece]
    /// The template as written.
    let source: String

    init(_ template: String) {
        source = template
        var pieces: [Piece] = []
        var rest = Substring(template)
        while let open = rest.firstIndex(of: "{"), let close = rest[open...].firstIndex(of: "}") {
            let key = rest[rest.index(after: open)..<close]
            guard key == "L" || key == "E" || key == "B" else {
                pieces.append(.text(String(rest[...close])))
                rest = rest[rest.index(after: close)...]
                continue
            }
            if open > rest.startIndex { pieces.append(.text(String(rest[..<open]))) }
            pieces.append(key == "L" ? .layer : .index)
            rest = rest[rest.index(after: close)...]
        }
        if !rest.isEmpty { pieces.append(.text(String(rest))) }
        self.pieces = pieces
    }

    func render(layer: Int?, index: Int?, wildcard: String = "{E}") -> String {
        var out = ""
        out.reserveCapacity(64)
        for piece in pieces {
            switch piece {
            case .text(let t): out += t
            case .layer: out += layer.map(String.init) ?? "{L}"
            case .index: out += index.map(String.init) ?? wildcard
            }
        }
        return out
    }
}

/// The stored tensors of a quantized Linear: (name suffix, shape, allowed dtypes, form). Memoized per shape, so
/// the 69,120 expert modules of a real checkpoint share their shape arrays.
enum QuantizedForms {
    typealias Form = (suffix: String, shape: [Int], dtypes: [DType], form: TensorForm)
    private static let cache = FormCache()

    static func packed(out: Int, in inFeatures: Int, bits: Int, groupSize: Int, scaleDType: DType) -> [Form] {
        cache.get("p\(out),\(inFeatures),\(bits),\(groupSize),\(scaleDType.rawValue)") {
            [
                (".weight_packed", [out, CheckedMath.ceilDiv(inFeatures, 32 / bits)], [.i32], .packed),
                (".weight_scale", [out, CheckedMath.ceilDiv(inFeatures, groupSize)], [scaleDType], .scale),
                (".weight_shape", [2], [.i32, .i64], .shape),
            ]
        }
    }

    static func fp8(out: Int, in inFeatures: Int, blockOut: Int, blockIn: Int) -> [Form] {
        cache.get("f\(out),\(inFeatures),\(blockOut),\(blockIn)") {
            [
                (".weight", [out, inFeatures], [.f8e4m3], .plain),
                (".weight_scale_inv", [CheckedMath.ceilDiv(out, blockOut), CheckedMath.ceilDiv(inFeatures, blockIn)], [.f32], .blockScale),
            ]
        }
    }

    final class FormCache: Sendable {
        private let forms = Locked([String: [Form]]())
        func get(_ key: String, _ make: () -> [Form]) -> [Form] {
            forms.withLock { forms in
                if let cached = forms[key] { return cached }
                let made = make()
                forms[key] = made
                return made
            }
        }
    }
}

/// A name-keyed table of the expected tensors, built once on first use and shared by copies of the list.
final class LazyNameTable: Sendable {
    private let built = Locked<[String: Int]?>(nil)

    func table(_ tensors: [ExpectedTensor]) -> [String: Int] {
        built.withLock { built in
            if let built { return built }
            // The first occurrence of a name wins.
            let table = Dictionary(tensors.indices.lazy.map { (tensors[$0].name, $0) }, uniquingKeysWith: { first, _ in first })
            built = table
            return table
        }
    }
}
