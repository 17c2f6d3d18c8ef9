import Foundation
import JSONCore
import TensorCore

/// A weight quantization scheme read from `quantization_config`.
public struct QuantizationScheme: Sendable, Equatable {
    public enum Method: Sendable, Equatable {
        /// compressed-tensors `pack-quantized`: `weight_packed` I32, `weight_scale`, `weight_shape`.
        case packQuantized(bits: Int, groupSize: Int, symmetric: Bool)
        /// DeepSeek's block FP8: F8_E4M3 `weight` plus F32 `weight_scale_inv` per block.
        case fp8Block(blockOut: Int, blockIn: Int)
    }

    public struct Group: Sendable, Equatable {
        public var name: String
        public var targets: [String]
        public var method: Method
    }

    public var quantMethod: String
    public var format: String?
    public var groups: [Group]
    public var ignore: [String]
    /// Where it was found: "text_config" or "top level".
    public var location: String

    /// The group that quantizes `module` (its name relative to the text model, its class), or nil, by
    /// compressed-tensors' rule (see `Matcher`, its one implementation; build a `Matcher` once to ask for many
    /// modules).
    public func group(for module: String, className: String) -> Group? {
        Matcher(self).group(for: module, className: className)
    }

    /// compressed-tensors matching: `re:` patterns with Python `re.match` semantics (anchored at the start),
    /// otherwise an exact module name or class name (compared as bytes, as Python compares strings).
    public static func matches(_ module: String, className: String, target: String) -> Bool {
        Matcher.Target(target).rank(ByteName(module), className: ByteName(className)) != nil
    }

    public static func parse(_ value: JSONValue, location: String, file: String) throws(ConfigError) -> QuantizationScheme {
        let section = "quantization_config"
        guard let object = value.objectValue else { throw .notAnObject(file: file, key: section) }
        guard let method = object["quant_method"]?.stringValue else {
            throw .missingKey(file: file, section: section, key: "quant_method")
        }
        // Every field we read must have the type compressed-tensors gives it: its pydantic models coerce some
        // wrong types (the string "false" becomes False), so a wrong type would be read differently by us.
        func field(_ o: JSONObject, _ key: String, _ section: String) -> JSONValue? {
            guard let v = o[key], !v.isNull else { return nil }
            return v
        }
        func string(_ o: JSONObject, _ key: String, _ section: String) throws(ConfigError) -> String? {
            guard let v = field(o, key, section) else { return nil }
            guard let s = v.stringValue else { throw .wrongType(file: file, section: section, key: key, expected: "a string", found: v.kindName) }
            return s
        }
        func strings(_ o: JSONObject, _ key: String, _ section: String) throws(ConfigError) -> [String]? {
            guard let v = field(o, key, section) else { return nil }
            guard let items = v.arrayValue else { throw .wrongType(file: file, section: section, key: key, expected: "an array of strings", found: v.kindName) }
            var out: [String] = []
            for item in items {
                guard let s = item.stringValue else {
                    throw .wrongType(file: file, section: section, key: key, expected: "an array of strings", found: "an array holding \(item.kindName)")
                }
                out.append(s)
            }
            return out
        }
        func integer(_ o: JSONObject, _ key: String, _ section: String) throws(ConfigError) -> Int? {
            guard let v = field(o, key, section) else { return nil }
            guard let n = v.intValue else { throw .wrongType(file: file, section: section, key: key, expected: "an integer", found: v.numberText ?? v.kindName) }
            return n
        }
        func boolean(_ o: JSONObject, _ key: String, _ section: String) throws(ConfigError) -> Bool? {
            guard let v = field(o, key, section) else { return nil }
            guard let b = v.boolValue else {
                let found = v.stringValue.map { "the string \"\($0)\"" } ?? v.kindName
                throw .wrongType(file: file, section: section, key: key, expected: "true or false", found: found)
            }
            return b
        }
        var ignoreList = try strings(object, "ignore", section)
        if ignoreList == nil { ignoreList = try strings(object, "modules_to_not_convert", section) }
        let ignore = ignoreList ?? []
        for pattern in ignore where pattern.hasPrefix("re:") && !PatternCache.shared.pattern(String(pattern.dropFirst(3))).isValid {
            throw .unsupportedQuantization(
                file: file, reason: "ignore pattern \"\(displayed(pattern))\" is not a valid regular expression, or nests quantifiers (catastrophic backtracking)")
        }
        switch method {
        case "compressed-tensors":
            let format = try string(object, "format", section)
            guard let groupsValue = field(object, "config_groups", section) else {
                throw .missingKey(file: file, section: section, key: "config_groups")
            }
            guard let groupsObject = groupsValue.objectValue else {
                throw .wrongType(file: file, section: section, key: "config_groups", expected: "an object", found: groupsValue.kindName)
            }
            guard groupsObject.count > 0 else { throw .missingKey(file: file, section: section, key: "config_groups") }
            var groups: [Group] = []
            for (name, groupValue) in groupsObject.entries {
                let where_ = "\(section).config_groups.\(displayed(name))"
                guard let g = groupValue.objectValue else { throw .notAnObject(file: file, key: where_) }
                guard let targets = try strings(g, "targets", where_) else { throw .missingKey(file: file, section: where_, key: "targets") }
                for t in targets where t.hasPrefix("re:") && !PatternCache.shared.pattern(String(t.dropFirst(3))).isValid {
                    throw .unsupportedQuantization(
                        file: file, reason: "target pattern \"\(displayed(t))\" is not a valid regular expression, or nests quantifiers (catastrophic backtracking)")
                }
                guard let weightsValue = field(g, "weights", where_) else {
                    throw .missingKey(file: file, section: where_, key: "weights")
                }
                guard let weights = weightsValue.objectValue else {
                    throw .wrongType(file: file, section: where_, key: "weights", expected: "an object", found: weightsValue.kindName)
                }
                let w = where_ + ".weights"
                let groupFormat = try string(g, "format", where_) ?? format
                guard groupFormat == "pack-quantized" else {
                    throw .unsupportedQuantization(file: file, reason: "format \"\(displayed(groupFormat ?? "none"))\" (k2pack reads pack-quantized)")
                }
                let bits = try integer(weights, "num_bits", w)
                guard let bits, bits == 4 || bits == 8 else {
                    throw .unsupportedQuantization(file: file, reason: "\(where_).weights.num_bits must be 4 or 8")
                }
                let strategy = try string(weights, "strategy", w), groupSize = try integer(weights, "group_size", w)
                guard strategy == "group", let groupSize, groupSize > 0 else {
                    throw .unsupportedQuantization(file: file, reason: "\(where_): only the group strategy with a positive group_size is supported")
                }
                guard try string(weights, "type", w) ?? "int" == "int" else {
                    throw .unsupportedQuantization(file: file, reason: "\(where_).weights.type must be int")
                }
                let symmetric = try boolean(weights, "symmetric", w) ?? true
                guard symmetric else {
                    throw .unsupportedQuantization(file: file, reason: "\(where_): asymmetric (zero-point) schemes are not supported")
                }
                groups.append(Group(name: name, targets: targets, method: .packQuantized(bits: bits, groupSize: groupSize, symmetric: symmetric)))
            }
            return QuantizationScheme(quantMethod: method, format: format, groups: groups, ignore: ignore, location: location)
        case "fp8":
            let block = object["weight_block_size"]?.arrayValue?.compactMap(\.intValue) ?? []
            guard block.count == 2, block.allSatisfy({ $0 > 0 }) else {
                throw .unsupportedQuantization(file: file, reason: "fp8 needs weight_block_size [out, in]")
            }
            let group = Group(name: "fp8", targets: ["Linear"], method: .fp8Block(blockOut: block[0], blockIn: block[1]))
            // DeepSeek keeps the output head in BF16.
            return QuantizationScheme(quantMethod: method, format: object["fmt"]?.stringValue, groups: [group], ignore: ignore + ["lm_head"], location: location)
        default:
            throw .unsupportedQuantization(file: file, reason: "quant_method \"\(displayed(method))\" (k2pack reads compressed-tensors and fp8)")
        }
    }

    /// A one-line summary: `compressed-tensors pack-quantized INT4 group 32 symmetric`.
    public var summary: String {
        groups.map { g in
            switch g.method {
            case let .packQuantized(bits, groupSize, symmetric):
                "\(quantMethod) pack-quantized INT\(bits) group \(groupSize) \(symmetric ? "symmetric" : "asymmetric")"
            case let .fp8Block(o, i):
                "fp8 block \(o)×\(i)"
            }
        }.joined(separator: "; ")
    }
}

/// Compiled `re:` patterns, shared by all threads. Bounded: a config is a handful of patterns, and a stream of
/// hostile configs (the fuzzer is one) must not grow it without end.
final class PatternCache: Sendable {
    static let shared = PatternCache()
    static let capacity = 256
    private let compiled = Locked([String: PythonPattern]())

    func pattern(_ text: String) -> PythonPattern {
        compiled.withLock { compiled in
            if let cached = compiled[text] { return cached }
            let made = PythonPattern(text)
            if compiled.count >= Self.capacity { compiled.removeAll(keepingCapacity: true) }
            compiled[text] = made
            return made
        }
    }
}
