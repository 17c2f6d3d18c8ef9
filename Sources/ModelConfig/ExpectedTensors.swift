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
///
/// Kept as one small record per tensor (its kind — spec, stored form and method — and its layer and index); the
/// `ExpectedTensor` values, with their names, are built on first use of `tensors` (inspect and verify of a
/// well-formed checkpoint read the fields they check through `shape(at:)`, `dtypes(at:)`… and never build them:
/// a real K2.5 lists 208,550 tensors).
public struct ExpectedTensorList: Sendable {
    /// The tensors. Their names are fixed once the list is built (`position(of:)` and `byName` index them);
    /// other fields may be adjusted (the list then holds the adjusted copy; the `…(at:)` accessors read it).
    public var tensors: [ExpectedTensor] {
        get { replaced ?? layout.tensors }
        set { replaced = newValue }
    }
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
    /// The records `tensors` is built from.
    private let layout: ExpectedLayout
    /// `tensors` as set (adjusted) by a user of the list.
    private var replaced: [ExpectedTensor]?

    public init(config: ModelConfig) throws(ConfigError) {
        var builder = ExpectedLayout.Builder(numLayers: config.text.numLayers)
        // Sized once from an estimate (growing by doubling copies the records and touches twice the memory).
        builder.entries.reserveCapacity(Self.estimatedCount(config: config))
        var nameIndex = ExpectedNameIndex()
        for part in config.architecture.parts {
            let specs = try ManifestLibrary.specs(named: part.specs)
            for spec in specs {
                try Self.expand(spec, part: part, config: config, into: &builder, index: &nameIndex)
            }
        }
        nameIndex.finish()
        let layout = ExpectedLayout(builder)
        var roles: [String] = []
        var roleIDs: [Int] = []
        roleIDs.reserveCapacity(layout.entries.count)
        var previous: (role: String, id: Int)?
        for p in layout.entries.indices {
            let role = layout.role(at: p)
            if let previous, previous.role == role {
                roleIDs.append(previous.id)
                continue
            }
            let id = roles.firstIndex(of: role) ?? { roles.append(role); return roles.count - 1 }()
            roleIDs.append(id)
            previous = (role, id)
        }
        self.layout = layout
        self.nameIndex = nameIndex
        self.roles = roles
        self.roleIDs = roleIDs
    }

    /// How many tensors the config implies (`tensors.count`, without building them).
    public var count: Int { replaced?.count ?? layout.entries.count }

    // The fields inspect and verify check, read in place (the same values as `tensors[position].…`).
    // The kind's field is read in its array (`kinds[k].x`, not a copy of the whole kind: a copy retains its arrays).
    public func shape(at position: Int) -> [Int] { replaced?[position].shape ?? layout.kinds[layout.kindIndex(at: position)].shape }
    public func dtypes(at position: Int) -> [DType] { replaced?[position].dtypes ?? layout.kinds[layout.kindIndex(at: position)].dtypes }
    public func form(at position: Int) -> TensorForm { replaced?[position].form ?? layout.kinds[layout.kindIndex(at: position)].form }
    public func method(at position: Int) -> QuantizationScheme.Method? {
        if let replaced { return replaced[position].method }
        return layout.kinds[layout.kindIndex(at: position)].method
    }
    public func tp(at position: Int) -> TPRule { replaced?[position].tp ?? layout.kinds[layout.kindIndex(at: position)].tp }
    public func expertParallel(at position: Int) -> Bool {
        replaced?[position].expertParallel ?? layout.kinds[layout.kindIndex(at: position)].expertParallel
    }
    public func isVision(at position: Int) -> Bool { replaced?[position].vision ?? layout.kinds[layout.kindIndex(at: position)].vision }
    public func role(at position: Int) -> String { replaced?[position].role ?? layout.role(at: position) }

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
            // once at the end, copying every record of a real K2.5 into a new buffer.
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
        _ spec: TensorSpec, part: ArchitecturePart, config: ModelConfig, into builder: inout ExpectedLayout.Builder,
        index nameIndex: inout ExpectedNameIndex
    ) throws(ConfigError) {
        let listed = builder.entries.count
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
                count <= (maxTensorCount - listed) / 3
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
        guard listed + instances.count <= maxTensorCount else {
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
        let specID = builder.addSpec(
            template: nameTemplate, role: spec.role, slot: spec.slot ?? spec.role, tp: spec.tp, tpUnit: tpUnit,
            expertParallel: expertParallel, isExpert: spec.repeat == .experts, vision: part.config == .vision)

        if spec.tensor != nil {
            let shape = try (spec.shape ?? []).map(eval)
            let kind = builder.addKind(spec: specID, suffix: nil, shape: shape, dtypes: [plainDType], form: .plain, logical: nil, method: nil)
            let pattern = nameIndex.pattern(nameTemplate, suffix: "")
            for inst in instances {
                nameIndex.add(pattern: pattern, layer: inst.layer, index: inst.index, position: builder.entries.count)
                builder.append(kind: kind, inst)
            }
            return
        }
        guard spec.linear != nil, let outExpr = spec.out, let inExpr = spec.in else {
            throw .manifest(name: part.specs, reason: "a spec needs either \"tensor\" with \"shape\" or \"linear\" with \"out\" and \"in\"")
        }
        let out = try eval(outExpr)
        let inFeatures = try eval(inExpr)
        let textPrefix = config.architecture.textPrefix
        // Everything but the names is the same for every instance: built once, as kinds.
        let logical = [out, inFeatures]
        let plainDTypes = [plainDType]
        // An unquantized Linear weight may also be float32, a lossless superset (what `dequantize --exact`
        // writes); loaders convert it to the model dtype.
        let weightDTypes = plainDType == .f32 ? plainDTypes : plainDTypes + [.f32]
        let hasBias = spec.bias ?? false
        let matcher = part.quantizable ? config.quantization.map(QuantizationScheme.Matcher.init) : nil
        // The stored forms depend on the method only (out and in are the spec's): looked up once per method, and
        // their kinds and name patterns made once per method (methods are few: the scheme's groups).
        var formsMethod: QuantizationScheme.Method?
        var formKinds: [(kind: Int, pattern: Int?)] = []
        var kindsByMethod: [(method: QuantizationScheme.Method, kinds: [(kind: Int, pattern: Int?)])] = []
        let weightKind = builder.addKind(
            spec: specID, suffix: ".weight", shape: logical, dtypes: weightDTypes, form: .plain, logical: nil, method: nil)
        let weightPattern = nameIndex.pattern(nameTemplate, suffix: ".weight")
        let biasKind = hasBias
            ? builder.addKind(spec: specID, suffix: ".bias", shape: [out], dtypes: plainDTypes, form: .plain, logical: nil, method: nil) : 0
        let biasPattern = hasBias ? nameIndex.pattern(nameTemplate, suffix: ".bias") : nil
        // The module name relative to the text model, as the matcher reads it. Manifest names are ASCII: the
        // prefix is dropped by bytes.
        func relativeName(_ inst: (layer: Int?, index: Int?)) -> String {
            let module = nameTemplate.render(layer: inst.layer, index: inst.index)
            return module.utf8.starts(with: textPrefix.utf8) ? String(Substring(module.utf8.dropFirst(textPrefix.utf8.count))) : module
        }
        // One method for every instance, chosen once, where that is provably what asking name by name gives: each
        // instance's module name is the template with its placeholders written as plain decimal numbers, so the
        // names differ only in runs of digits; a digit-free text prefix is dropped from all of them alike (it lies
        // within the names' first digit-free run); and the matcher answers alike for such names
        // (`Matcher.decidesAlike`). Otherwise (a `re:` entry that may pick out single layers or experts) the
        // matcher reads every instance's name.
        var sharedMethod: QuantizationScheme.Method??
        if let matcher, let first = instances.first, Self.rendersAsDigits(nameTemplate, instances),
            !textPrefix.utf8.contains(where: { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") })
        {
            let relative = relativeName(first)
            if matcher.decidesAlike(namesLike: relative) { sharedMethod = .some(matcher.group(for: relative, className: "Linear")?.method) }
        }
        for inst in instances {
            var method: QuantizationScheme.Method?
            if let sharedMethod {
                method = sharedMethod
            } else if let matcher {
                method = matcher.group(for: relativeName(inst), className: "Linear")?.method
            }
            if let method, method != formsMethod {
                if let known = kindsByMethod.first(where: { $0.method == method }) {
                    formKinds = known.kinds
                } else {
                    let forms: [QuantizedForms.Form]
                    switch method {
                    case let .packQuantized(bits, groupSize, _):
                        forms = QuantizedForms.packed(out: out, in: inFeatures, bits: bits, groupSize: groupSize, scaleDType: config.weightDType)
                    case let .fp8Block(blockOut, blockIn):
                        forms = QuantizedForms.fp8(out: out, in: inFeatures, blockOut: blockOut, blockIn: blockIn)
                    }
                    formKinds = forms.map { form in
                        (kind: builder.addKind(
                            spec: specID, suffix: form.suffix, shape: form.shape, dtypes: form.dtypes, form: form.form, logical: logical,
                            method: method),
                         pattern: nameIndex.pattern(nameTemplate, suffix: form.suffix))
                    }
                    kindsByMethod.append((method, formKinds))
                }
                formsMethod = method
            }
            if method != nil {
                for (kind, pattern) in formKinds {
                    nameIndex.add(pattern: pattern, layer: inst.layer, index: inst.index, position: builder.entries.count)
                    builder.append(kind: kind, inst)
                }
            } else {
                nameIndex.add(pattern: weightPattern, layer: inst.layer, index: inst.index, position: builder.entries.count)
                builder.append(kind: weightKind, inst)
            }
            if hasBias {
                nameIndex.add(pattern: biasPattern, layer: inst.layer, index: inst.index, position: builder.entries.count)
                builder.append(kind: biasKind, inst)
            }
        }
    }
}

extension ExpectedTensorList {
    /// Whether `template` renders every placeholder of every instance as a plain decimal number (a value present
    /// and not negative), so that the instances' names differ only in runs of digits.
    static func rendersAsDigits(_ template: NameTemplate, _ instances: [(layer: Int?, index: Int?)]) -> Bool {
        var usesLayer = false, usesIndex = false
        for piece in template.pieces {
            switch piece {
            case .text: break
            case .layer: usesLayer = true
            case .index: usesIndex = true
            }
        }
        return instances.allSatisfy { inst in
            (!usesLayer || (inst.layer ?? -1) >= 0) && (!usesIndex || (inst.index ?? -1) >= 0)
        }
    }
}

/// The expected tensors as records: what is the same for many tensors (a spec's template, role and rules; a stored
/// form's suffix, shape and dtypes) is kept once as a kind, and each tensor is its kind, layer and index.
final class ExpectedLayout: Sendable {
    /// What the tensors of one spec share.
    struct Spec: Sendable {
        var template: NameTemplate
        var role: String
        var slot: String
        var tp: TPRule
        var tpUnit: Int?
        var expertParallel: Bool
        /// Repeated per expert: `expert` is the index and the tensor belongs to an expert-major stack.
        var isExpert: Bool
        var vision: Bool
    }

    /// What the tensors of one stored form of one spec share.
    struct Kind: Sendable {
        var spec: Int
        /// After the module's name (`.weight_packed`); nil for a plain `tensor` spec (no module).
        var suffix: String?
        var shape: [Int]
        var dtypes: [DType]
        var form: TensorForm
        var logical: [Int]?
        var method: QuantizationScheme.Method?
        // Copied from the spec, for reads in place.
        var tp: TPRule
        var expertParallel: Bool
        var vision: Bool
    }

    /// One tensor: its kind, layer and index (`none`: the spec does not repeat over it).
    struct Entry: Sendable {
        var kind: Int32
        var layer: Int
        var index: Int
    }
    static let none = Int.min

    struct Builder {
        var specs: [Spec] = []
        var kinds: [Kind] = []
        var entries: [Entry] = []
        let numLayers: Int

        init(numLayers: Int) { self.numLayers = numLayers }

        mutating func addSpec(
            template: NameTemplate, role: String, slot: String, tp: TPRule, tpUnit: Int?, expertParallel: Bool, isExpert: Bool,
            vision: Bool
        ) -> Int {
            specs.append(Spec(
                template: template, role: role, slot: slot, tp: tp, tpUnit: tpUnit, expertParallel: expertParallel,
                isExpert: isExpert, vision: vision))
            return specs.count - 1
        }

        mutating func addKind(
            spec: Int, suffix: String?, shape: [Int], dtypes: [DType], form: TensorForm, logical: [Int]?,
            method: QuantizationScheme.Method?
        ) -> Int {
            let s = specs[spec]
            kinds.append(Kind(
                spec: spec, suffix: suffix, shape: shape, dtypes: dtypes, form: form, logical: logical, method: method, tp: s.tp,
                expertParallel: s.expertParallel, vision: s.vision))
            return kinds.count - 1
        }

        mutating func append(kind: Int, _ inst: (layer: Int?, index: Int?)) {
            // Kinds number a few hundred at most (specs × stored forms × methods).
            entries.append(Entry(kind: Int32(truncatingIfNeeded: kind), layer: inst.layer ?? ExpectedLayout.none, index: inst.index ?? ExpectedLayout.none))
        }
    }

    let specs: [Spec]
    let kinds: [Kind]
    let entries: [Entry]
    /// Decoder layers; stored layers from here on are multi-token-prediction layers.
    let numLayers: Int
    private let built = Locked<[ExpectedTensor]?>(nil)

    init(_ builder: Builder) {
        specs = builder.specs
        kinds = builder.kinds
        entries = builder.entries
        numLayers = builder.numLayers
    }

    /// The position in `kinds` of the tensor at `position`.
    func kindIndex(at position: Int) -> Int { Int(entries[position].kind) }

    /// The role of the tensor at `position`: everything stored in a multi-token-prediction layer is reported
    /// under one role.
    func role(at position: Int) -> String {
        let entry = entries[position]
        if entry.layer != Self.none, entry.layer >= numLayers { return "mtp" }
        return specs[kinds[Int(entry.kind)].spec].role
    }

    /// The tensors, built once.
    var tensors: [ExpectedTensor] {
        built.withLock { built in
            if let built { return built }
            let made = materialize()
            built = made
            return made
        }
    }

    private func materialize() -> [ExpectedTensor] {
        var tensors: [ExpectedTensor] = []
        tensors.reserveCapacity(entries.count)
        // The module of the previous tensor (its stored forms follow one another), and per kind the stack name of
        // the last layer seen (the experts of a layer share it).
        var module: (spec: Int, layer: Int, index: Int, name: String)?
        var stacks = [(layer: Int, name: String)?](repeating: nil, count: kinds.count)
        var stackBases = [(layer: Int, name: String)?](repeating: nil, count: specs.count)
        for p in entries.indices {
            let entry = entries[p]
            let k = Int(entry.kind)
            let kind = kinds[k]
            let spec = specs[kind.spec]
            let layer: Int? = entry.layer != Self.none ? entry.layer : nil
            let index: Int? = entry.index != Self.none ? entry.index : nil
            var moduleName: String?
            let name: String
            if let suffix = kind.suffix {
                if let m = module, m.spec == kind.spec, m.layer == entry.layer, m.index == entry.index {
                    moduleName = m.name
                } else {
                    let rendered = spec.template.render(layer: layer, index: index)
                    module = (kind.spec, entry.layer, entry.index, rendered)
                    moduleName = rendered
                }
                name = moduleName! + suffix
            } else {
                name = spec.template.render(layer: layer, index: index)
            }
            // The stack name replaces the expert index by `*`.
            var stackName: String?
            if spec.isExpert {
                if let known = stacks[k], known.layer == entry.layer {
                    stackName = known.name
                } else {
                    let base: String
                    if let known = stackBases[kind.spec], known.layer == entry.layer {
                        base = known.name
                    } else {
                        base = spec.template.render(layer: layer, index: nil, wildcard: "*")
                        stackBases[kind.spec] = (entry.layer, base)
                    }
                    let full = base + (kind.suffix ?? "")
                    stacks[k] = (entry.layer, full)
                    stackName = full
                }
            }
            tensors.append(ExpectedTensor(
                name: name, role: role(at: p), slot: spec.slot, shape: kind.shape, dtypes: kind.dtypes, form: kind.form,
                module: moduleName, logicalShape: kind.logical, method: kind.method, tp: spec.tp, tpUnit: spec.tpUnit,
                expertParallel: spec.expertParallel, layer: layer, expert: spec.isExpert ? index : nil, stackName: stackName,
                vision: spec.vision))
        }
        return tensors
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
