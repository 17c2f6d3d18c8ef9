import Checkpoint
import Foundation
import GGUF
import JSONCore
import LoadedModel
import Manifests
import ModelConfig
import TensorCore

/// The mmproj manifest (`Manifests/json/gguf_mmproj_kimi.json`) as the writer reads it: every key in write order
/// with where its value comes from, and every tensor with its source name, ggml dimensions, type rule and
/// transform.
struct GGUFMmprojManifest: Decodable {
    /// A constant of the manifest: a string, a boolean or a number.
    enum Constant: Decodable {
        case string(String)
        case bool(Bool)
        case number(Double)

        init(from decoder: any Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let b = try? c.decode(Bool.self) {
                self = .bool(b)
            } else if let d = try? c.decode(Double.self) {
                self = .number(d)
            } else {
                self = .string(try c.decode(String.self))
            }
        }

        var json: JSONValue {
            switch self {
            case let .string(s): .string(s)
            case let .bool(b): .bool(b)
            case let .number(d): .number(d == d.rounded() && abs(d) < 1e15 ? String(Int(d)) : String(d))
            }
        }
    }

    struct Key: Decodable {
        var key: String
        var type: String
        var value: Constant?
        var outtypeFileType: Bool?
        var modelName: Bool?
        var vision: [String]?
        var text: String?
        var expression: String?
        var preprocessor: String?
        var `default`: Constant?
        var times: String?
        var equals: String?

        enum CodingKeys: String, CodingKey {
            case key, type, value, vision, text, expression, preprocessor, `default`, times, equals
            case outtypeFileType = "outtype_file_type"
            case modelName = "model_name"
        }
    }

    struct Tensor: Decodable {
        var source: String
        var gguf: String
        var ne: [String]
        var `repeat`: String
        var ggml: String
        var op: String
    }

    var architecture: String
    var projectorType: String
    var blockCountKey: String
    var headsKey: String
    var keys: [Key]
    var tensors: [Tensor]

    enum CodingKeys: String, CodingKey {
        case architecture, keys, tensors
        case projectorType = "projector_type"
        case blockCountKey = "block_count_key"
        case headsKey = "heads_key"
    }

    static let manifestName = "gguf_mmproj_kimi"

    static func load() throws(GGUFConvertError) -> GGUFMmprojManifest {
        guard let data = ManifestResources.data(named: manifestName) else {
            throw .sourceInvalid(reason: "the manifest \(manifestName).json is missing from this build")
        }
        do {
            return try JSONDecoder().decode(GGUFMmprojManifest.self, from: data)
        } catch {
            throw .sourceInvalid(reason: "the manifest \(manifestName).json cannot be read: \(error)")
        }
    }
}

/// `convert --to gguf --mmproj FILE`: K2.5's MoonViT tower, patch merger and projector as the separate multimodal
/// GGUF llama.cpp's `clip` loader reads (projector `kimik25`), every key and tensor from `gguf_mmproj_kimi.json`.
///
/// Types as llama.cpp's converter writes an mmproj: vectors and norms F32, the position table F32 (gguf-py forces
/// `v.position_embd` to F32), the patch embedding F16 under `--outtype f16` and F32 otherwise, every other matrix
/// the `--outtype` type (BF16 by default, as the converter's `auto` picks for a BF16 checkpoint).
enum GGUFMmproj {
    /// The preprocessor files, in the order their values are merged (a later file does not override).
    static let preprocessorFiles = ["preprocessor_config.json", "processor_config.json"]

    struct Plan {
        var metadata: [GGUFKeyValue]
        var tensors: [GGUFPlannedTensor]
    }

    /// Plans the mmproj file: its metadata and tensors, every refusal made here, before anything is written.
    static func plan(_ checkpoint: LoadedCheckpoint, config: ModelConfig, name: String, outType: GGUFOutType, maxRowBytes: Int) throws(GGUFConvertError) -> Plan {
        let folder = checkpoint.directory.path
        guard config.visionPart != nil, let raw = config.vision else {
            throw .mmproj(file: folder, reason: "\(config.architecture.displayName) has no vision tower: there is nothing to write into an mmproj; drop --mmproj")
        }
        let manifest = try GGUFMmprojManifest.load()
        let settings: [String: JSONValue]
        do {
            settings = try config.resolvedVisionSettings()
        } catch {
            throw .mmproj(file: folder + "/config.json", reason: error.description)
        }
        func evaluate(_ expression: String, for what: String) throws(GGUFConvertError) -> Int {
            do {
                return try ShapeExpression.evaluate(expression, section: "vision_config", lookup: { settings[$0] ?? raw[$0] })
            } catch {
                throw .mmproj(file: folder + "/config.json", reason: "\(what): \(error.description)")
            }
        }
        let preprocessor = try preprocessorValues(folder: folder)

        var metadata: [GGUFKeyValue] = []
        for k in manifest.keys {
            var value: JSONValue?
            var origin = ""
            if let constant = k.value {
                value = constant.json
            } else if k.modelName ?? false {
                value = .string(name)
            } else if k.outtypeFileType ?? false {
                value = .number(String(outType.fileType))
            } else if let candidates = k.vision {
                value = candidates.lazy.compactMap { raw[$0] }.first ?? k.default?.json
                origin = "config.json vision_config (\(candidates.joined(separator: ", ")))"
            } else if let name = k.text {
                value = config.text.resolved[name] ?? config.raw[name]
                origin = "config.json text config \(name)"
            } else if let expression = k.expression {
                value = .number(String(try evaluate(expression, for: k.key)))
            } else if let name = k.preprocessor {
                value = preprocessor[name] ?? k.default?.json
                origin = "\(preprocessorFiles.joined(separator: " / ")) key \(name)"
                if value == nil {
                    throw .mmproj(
                        file: folder + "/" + preprocessorFiles[0],
                        reason: "has no \(name) (nor \(preprocessorFiles[1]), nor their media_proc_cfg / image_processor): llama.cpp's clip loader needs it for \(k.key); add it to the preprocessor config")
                }
            }
            guard var found = value else {
                throw .mmproj(file: folder + "/config.json", reason: "no value for \(k.key): \(origin.isEmpty ? "the manifest names no source" : origin + " is absent")")
            }
            if let times = k.times {
                guard let n = found.intValue, let product = CheckedMath.multiply(n, try evaluate(times, for: k.key)) else {
                    throw .mmproj(file: folder, reason: "\(k.key): \(origin) is \(found.kindName) or too large, expected a whole number")
                }
                found = .number(String(product))
            }
            if let equals = k.equals {
                guard let s = found.stringValue else {
                    throw .mmproj(file: folder + "/config.json", reason: "\(k.key): \(origin) is \(found.kindName), expected a string")
                }
                found = .bool(s == equals)
            }
            metadata.append(GGUFKeyValue(key: k.key, value: try ggufValue(found, type: k.type, key: k.key, origin: origin, folder: folder)))
        }

        // Tensors: each source tensor by name, checked against the manifest's ne, then typed and transformed.
        let blocks = try evaluate(manifest.blockCountKey, for: "block count")
        let heads = try evaluate(manifest.headsKey, for: "attention heads")
        let dir = checkpoint.directory
        var tensors: [GGUFPlannedTensor] = []
        for t in manifest.tensors {
            let instances: [Int?]
            switch t.repeat {
            case "once": instances = [nil]
            case "vision_blocks": instances = (0..<blocks).map { $0 }
            default: throw .sourceInvalid(reason: "\(GGUFMmprojManifest.manifestName).json, \(t.gguf): unknown repeat \(t.repeat)")
            }
            for b in instances {
                let sourceName = b.map { t.source.replacingOccurrences(of: "{B}", with: String($0)) } ?? t.source
                let name = b.map { t.gguf.replacingOccurrences(of: "{B}", with: String($0)) } ?? t.gguf
                var ne: [Int] = []
                for e in t.ne { ne.append(try evaluate(e, for: name)) }
                guard let (shard, entry) = dir.entry(named: sourceName) else {
                    throw .mmproj(file: folder, reason: "tensor \(sourceName) (for mmproj \(name)) is missing")
                }
                let s = SourceTensor(shard: shard, entry: entry)
                guard [.bf16, .f16, .f32].contains(entry.dtype) else {
                    throw .unsupportedSource(file: s.file, tensor: s.name, gguf: name, reason: "dtype \(entry.dtype.rawValue), expected BF16, F16 or F32")
                }
                guard entry.shape == Array(ne.reversed()) else {
                    throw .unsupportedSource(file: s.file, tensor: s.name, gguf: name, reason: "shape \(entry.shape), expected \(Array(ne.reversed())) (ne \(ne))")
                }
                guard ne[0] * 4 <= maxRowBytes else {
                    throw .unsupportedSource(file: s.file, tensor: s.name, gguf: name, reason: "rows of \(ne[0]) are longer than the writer handles")
                }
                let type: GGMLType
                switch t.ggml {
                case "f32": type = .f32
                case "outtype": type = outType.matrixType(ne0: ne[0])
                case "patch_embd": type = outType == .f16 ? .f16 : .f32
                default: throw .sourceInvalid(reason: "\(GGUFMmprojManifest.manifestName).json, \(t.gguf): unknown ggml \(t.ggml)")
                }
                let source: GGUFTensorSource
                switch t.op {
                case "none":
                    source = .converted(s)
                case "rope_split_qk":
                    let rows = entry.shape[0]
                    guard rows % 3 == 0, (rows / 3) % heads == 0, (rows / 3 / heads) % 4 == 0 else {
                        throw .unsupportedSource(
                            file: s.file, tensor: s.name, gguf: name,
                            reason: "\(rows) rows cannot be cut into q, k, v of \(heads) heads with a head size divisible by 4 (rope_split_qk)")
                    }
                    source = .ropeSplitQK(s, heads: heads)
                default:
                    throw .sourceInvalid(reason: "\(GGUFMmprojManifest.manifestName).json, \(t.gguf): unknown op \(t.op)")
                }
                tensors.append(GGUFPlannedTensor(descriptor: GGUFTensorDescriptor(name: name, type: type, ne: ne), source: source))
            }
        }
        return Plan(metadata: metadata, tensors: tensors)
    }

    /// A config value as the manifest's GGUF type.
    static func ggufValue(_ v: JSONValue, type: String, key: String, origin: String, folder: String) throws(GGUFConvertError) -> GGUFValue {
        func wrong(_ expected: String) -> GGUFConvertError {
            .mmproj(file: folder, reason: "\(key): \(origin.isEmpty ? "the value" : origin) is \(v.kindName), expected \(expected)")
        }
        switch type {
        case "string":
            guard let s = v.stringValue else { throw wrong("a string") }
            return .string(s)
        case "bool":
            guard let b = v.boolValue else { throw wrong("a boolean") }
            return .bool(b)
        case "u32":
            guard let n = v.intValue, n >= 0, n <= Int(UInt32.max) else { throw wrong("a whole number from 0 to \(UInt32.max)") }
            return .u32(UInt32(n))
        case "f32":
            guard let d = v.doubleValue, d.isFinite else { throw wrong("a finite number") }
            return .f32(Float(d))
        case "array of f32":
            guard let items = v.arrayValue, !items.isEmpty else { throw wrong("a non-empty array of numbers") }
            var floats: [Float] = []
            for item in items {
                guard let d = item.doubleValue, d.isFinite else { throw wrong("an array of finite numbers") }
                floats.append(Float(d))
            }
            return .array(.f32(floats))
        default:
            throw .sourceInvalid(reason: "\(GGUFMmprojManifest.manifestName).json, \(key): unknown type \(type)")
        }
    }

    /// preprocessor_config.json with its `media_proc_cfg` merged to the top level, then processor_config.json with
    /// its `image_processor` merged, each later one overriding (Python's `{**a, **b}`, as llama.cpp's converter
    /// merges them): the values it reads.
    static func preprocessorValues(folder: String) throws(GGUFConvertError) -> [String: JSONValue] {
        var merged: [String: JSONValue] = [:]
        for (file, nested) in zip(preprocessorFiles, ["media_proc_cfg", "image_processor"]) {
            let path = folder + "/" + file
            guard FileManager.default.fileExists(atPath: path) else { continue }
            let object: JSONObject
            do {
                let attributes = try FileManager.default.attributesOfItem(atPath: path)
                guard (attributes[.size] as? Int ?? 0) <= 1 << 20 else {
                    throw GGUFConvertError.mmproj(file: path, reason: "is larger than 1 MiB, not a preprocessor config")
                }
                let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
                guard let o = try JSONDocument.parse(bytes).objectValue else {
                    throw GGUFConvertError.mmproj(file: path, reason: "is not a JSON object")
                }
                object = o
            } catch let error as GGUFConvertError {
                throw error
            } catch {
                throw .mmproj(file: path, reason: "cannot be read: \(error)")
            }
            for (key, value) in object.entries { merged[key] = value }
            if let inner = object[nested]?.objectValue {
                for (key, value) in inner.entries { merged[key] = value }
            }
        }
        return merged
    }

    /// Q and K rows of a fused `wqkv` weight (or bias: `columns` 1) moved from interleaved RoPE pairs to the split
    /// halves llama.cpp's `build_rope_2d` reads: within each head, row `a·4 + b·2 + c` (a < head/4, b, c < 2)
    /// goes to `b·head/2 + a·2 + c`; V rows are unchanged.
    static func ropeSplitQK(_ values: [Float], rows: Int, columns: Int, heads: Int) -> [Float] {
        var out = values
        let part = rows / 3
        let head = part / heads
        let quarter = head / 4
        for section in 0..<2 {
            for h in 0..<heads {
                for a in 0..<quarter {
                    for b in 0..<2 {
                        for c in 0..<2 {
                            let from = section * part + h * head + a * 4 + b * 2 + c
                            let to = section * part + h * head + b * (quarter * 2) + a * 2 + c
                            for j in 0..<columns { out[to * columns + j] = values[from * columns + j] }
                        }
                    }
                }
            }
        }
        return out
    }
}
