import Checkpoint
import FileIO
import Foundation
import GGUF
import JSONCore
import Testing
import TestSupport

@testable import GGUFConvert

/// k25-tiny copied into a temporary folder with a complete preprocessor_config.json (the fixture's is a stand-in
/// without image_mean / image_std), nested under media_proc_cfg as K2.5's own is.
func k25WithPreprocessor(_ dir: TemporaryDirectory, preprocessor: String? = nil) throws -> String {
    let folder = dir.copy(fixture: "k25-tiny")
    let text = preprocessor ?? """
        {"auto_map": {"AutoProcessor": "kimi_k25_processor.KimiK25Processor"},
         "media_proc_cfg": {"in_patch_limit": 4096, "patch_size": 14,
                            "image_mean": [0.5, 0.25, 0.125], "image_std": [0.5, 0.75, 1.5]}}
        """
    try Data(text.utf8).write(to: URL(fileURLWithPath: folder + "/preprocessor_config.json"))
    return folder
}

/// A checkpoint tensor as float32 (BF16, F16 or F32 source).
func sourceFloats(_ folder: String, _ name: String) throws -> [Float] {
    let dir = try CheckpointDirectory(path: folder)
    let (shard, entry) = try #require(dir.entry(named: name))
    let bytes = Array(try shard.bytes(of: entry))
    switch entry.dtype {
    case .bf16: return (0..<(bytes.count / 2)).map { bf16(bytes, $0) }
    case .f32: return (0..<(bytes.count / 4)).map { i in Float(bitPattern: bytes[(4 * i)..<(4 * i + 4)].reversed().reduce(0) { $0 << 8 | UInt32($1) }) }
    default:
        Issue.record("unexpected dtype \(entry.dtype) for \(name)")
        return []
    }
}

/// The mmproj tensors the test expects, written out independently of the manifest: name, ne, type, source.
func expectedMmprojTensors(matrix: GGMLType, patch: GGMLType) -> [(String, [Int], GGMLType, String)] {
    var out: [(String, [Int], GGMLType, String)] = [
        ("v.patch_embd.weight", [14, 14, 3, 32], patch, "vision_tower.patch_embed.proj.weight"),
        ("v.patch_embd.bias", [32], .f32, "vision_tower.patch_embed.proj.bias"),
        ("v.position_embd.weight", [32, 4, 4], .f32, "vision_tower.patch_embed.pos_emb.weight"),
    ]
    let perBlock: [(String, [Int], Bool, String)] = [
        ("attn_qkv.weight", [32, 96], true, "wqkv.weight"), ("attn_qkv.bias", [96], false, "wqkv.bias"),
        ("attn_out.weight", [32, 32], true, "wo.weight"), ("attn_out.bias", [32], false, "wo.bias"),
        ("ffn_up.weight", [32, 64], true, "mlp.fc0.weight"), ("ffn_up.bias", [64], false, "mlp.fc0.bias"),
        ("ffn_down.weight", [64, 32], true, "mlp.fc1.weight"), ("ffn_down.bias", [32], false, "mlp.fc1.bias"),
        ("ln1.weight", [32], false, "norm0.weight"), ("ln1.bias", [32], false, "norm0.bias"),
        ("ln2.weight", [32], false, "norm1.weight"), ("ln2.bias", [32], false, "norm1.bias"),
    ]
    // The manifest lists each slot once with {B}; the writer emits slot by slot, every block of a slot together.
    for (suffix, ne, isMatrix, source) in perBlock {
        for b in 0..<2 {
            out.append(("v.blk.\(b).\(suffix)", ne, isMatrix ? matrix : .f32, "vision_tower.encoder.blocks.\(b).\(source)"))
        }
    }
    out += [
        ("v.post_ln.weight", [32], .f32, "vision_tower.encoder.final_layernorm.weight"),
        ("v.post_ln.bias", [32], .f32, "vision_tower.encoder.final_layernorm.bias"),
        ("mm.input_norm.weight", [32], .f32, "mm_projector.pre_norm.weight"),
        ("mm.input_norm.bias", [32], .f32, "mm_projector.pre_norm.bias"),
        ("mm.1.weight", [128, 128], matrix, "mm_projector.proj.0.weight"),
        ("mm.1.bias", [128], .f32, "mm_projector.proj.0.bias"),
        ("mm.2.weight", [128, 64], matrix, "mm_projector.proj.2.weight"),
        ("mm.2.bias", [64], .f32, "mm_projector.proj.2.bias"),
    ]
    return out
}

/// The source row an output row of a fused QKV comes from, computed from the output side: within a head of `hd`
/// rows, output row `b·hd/2 + a·2 + c` (split halves) holds source row `a·4 + b·2 + c` (interleaved pairs); V rows
/// stay where they are.
func qkvSourceRow(_ r: Int, rows: Int, heads: Int) -> Int {
    let part = rows / 3
    guard r < 2 * part else { return r }
    let hd = part / heads
    let section = r / part, within = r % part
    let h = within / hd, rem = within % hd
    let b = rem / (hd / 2), a = (rem % (hd / 2)) / 2, c = rem % 2
    return section * part + h * hd + a * 4 + b * 2 + c
}

@Suite("convert --to gguf --mmproj")
struct GGUFMmprojTests {
    /// Converts `folder` with --mmproj into `dir` (which must not hold the input).
    func convert(_ folder: String, _ dir: TemporaryDirectory, outType: GGUFOutType = .bf16) throws -> (GGUFConverter.Report, GGUFFile) {
        var options = GGUFConverter.Options(outType: outType, requireTokenizer: false)
        options.mmproj = dir.path + "/mmproj.gguf"
        let report = try GGUFConverter.convert(input: folder, output: dir.path + "/out.gguf", options: options)
        return (report, try GGUFFile(path: dir.path + "/mmproj.gguf"))
    }

    @Test("k25-tiny: every key of the manifest, in its order, with its type and the value from config and preprocessor")
    func keys() throws {
        let dir = TemporaryDirectory(), out = TemporaryDirectory()
        let (report, file) = try convert(try k25WithPreprocessor(dir), out)
        #expect(report.mmproj == out.path + "/mmproj.gguf")
        #expect(report.mmprojTensors == 35)
        let manifest = try GGUFMmprojManifest.load()
        #expect(file.metadata.map(\.key) == manifest.keys.map(\.key))
        for (kv, k) in zip(file.metadata, manifest.keys) {
            #expect(kv.value.typeName == k.type, "\(k.key): \(kv.value.typeName) against \(k.type)")
        }
        let expected: [String: GGUFValue] = [
            "general.architecture": .string("clip"), "general.type": .string("mmproj"), "general.file_type": .u32(32), "general.name": .string("k25-tiny"), "general.quantization_version": .u32(2),
            "clip.has_vision_encoder": .bool(true), "clip.vision.projection_dim": .u32(64), "clip.vision.image_size": .u32(56),
            "clip.vision.patch_size": .u32(14), "clip.vision.embedding_length": .u32(32), "clip.vision.feed_forward_length": .u32(64),
            "clip.vision.block_count": .u32(2), "clip.vision.attention.head_count": .u32(2),
            "clip.vision.image_mean": .array(.f32([0.5, 0.25, 0.125])), "clip.vision.image_std": .array(.f32([0.5, 0.75, 1.5])),
            "clip.projector_type": .string("kimik25"), "vision.pos_emb_height": .u32(4), "vision.pos_emb_width": .u32(4),
            "vision.pos_emb_time": .u32(4), "clip.use_gelu": .bool(true), "clip.vision.attention.layer_norm_epsilon": .f32(1e-5),
            "clip.vision.projector.scale_factor": .u32(2), "clip.vision.image_min_pixels": .u32(8 * 14 * 14),
            "clip.vision.image_max_pixels": .u32(4096 * 14 * 14),
        ]
        #expect(Set(expected.keys) == Set(file.metadata.map(\.key)))
        for kv in file.metadata { #expect(kv.value == expected[kv.key], "\(kv.key)") }
        #expect(file.architecture == "clip")
    }

    @Test("k25-tiny: every tensor's name, ne and type; values equal the source, the Q/K rows permuted element by element")
    func tensors() throws {
        let dir = TemporaryDirectory(), out = TemporaryDirectory()
        let folder = try k25WithPreprocessor(dir)
        let (_, file) = try convert(folder, out)
        let expected = expectedMmprojTensors(matrix: .bf16, patch: .f32)
        #expect(file.tensors.map(\.name) == expected.map(\.0))
        for (name, ne, type, source) in expected {
            let info = try #require(file.tensor(named: name))
            #expect(info.ne == ne && info.type == type, "\(name): ne \(info.ne) \(info.type.name)")
            let values = try GGUFDequantizer.dequantize(info, of: file)
            let src = try sourceFloats(folder, source)
            #expect(values.count == src.count, "\(name)")
            guard values.count == src.count else { continue }
            if name.contains("attn_qkv") {
                let rows = 96, columns = name.hasSuffix(".weight") ? 32 : 1
                var moved = 0
                for r in 0..<rows {
                    let from = qkvSourceRow(r, rows: rows, heads: 2)
                    if from != r { moved += 1 }
                    for j in 0..<columns {
                        #expect(values[r * columns + j] == src[from * columns + j], "\(name) row \(r) column \(j)")
                    }
                }
                // head size 16: a row stays only where 4a + 2b = 8b + 2a (a = 3b), 4 of 16; 12 move per head of Q and of K.
                #expect(moved == 48)
            } else {
                #expect(values == src, "\(name)")
            }
        }
    }

    @Test("--outtype f16: matrices and the patch embedding F16, the position table and vectors F32, file_type 1")
    func f16() throws {
        let dir = TemporaryDirectory(), out = TemporaryDirectory()
        let (_, file) = try convert(try k25WithPreprocessor(dir), out, outType: .f16)
        #expect(file["general.file_type"] == .u32(1))
        for (name, ne, type, _) in expectedMmprojTensors(matrix: .f16, patch: .f16) {
            let info = try #require(file.tensor(named: name))
            #expect(info.ne == ne && info.type == type, "\(name)")
        }
    }

    @Test("the fused QKV permutation of the writer equals the test's own index computation")
    func permutation() {
        let rows = 3 * 3 * 8, columns = 2, heads = 3
        let values = (0..<(rows * columns)).map(Float.init)
        let out = GGUFMmproj.ropeSplitQK(values, rows: rows, columns: columns, heads: heads)
        for r in 0..<rows {
            for j in 0..<columns { #expect(out[r * columns + j] == values[qkvSourceRow(r, rows: rows, heads: heads) * columns + j]) }
        }
    }

    @Test("--mmproj on a checkpoint without a vision tower is refused by name, nothing written")
    func noVision() throws {
        let dir = TemporaryDirectory()
        var options = GGUFConverter.Options(requireTokenizer: false)
        options.mmproj = dir.path + "/mmproj.gguf"
        #expect {
            _ = try GGUFConverter.convert(input: TestPaths.fixture("k2-thinking-tiny"), output: dir.path + "/out.gguf", options: options)
        } throws: { error in
            let text = "\(error)"
            return text.hasPrefix("--mmproj: ") && text.contains("k2-thinking-tiny") && text.contains("has no vision tower")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).isEmpty)
    }

    @Test("the fixture's stand-in preprocessor config (no image_mean) is refused naming file and key, nothing written")
    func missingMean() throws {
        let dir = TemporaryDirectory()
        let folder = dir.copy(fixture: "k25-tiny")
        let out = TemporaryDirectory()
        var options = GGUFConverter.Options(requireTokenizer: false)
        options.mmproj = out.path + "/mmproj.gguf"
        #expect(throws: GGUFConvertError.mmproj(
            file: folder + "/preprocessor_config.json",
            reason: "has no image_mean (nor processor_config.json, nor their media_proc_cfg / image_processor): llama.cpp's clip loader needs it for clip.vision.image_mean; add it to the preprocessor config")
        ) {
            _ = try GGUFConverter.convert(input: folder, output: out.path + "/out.gguf", options: options)
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: out.path).isEmpty)
        let message = GGUFConvertError.mmproj(file: "/x/preprocessor_config.json", reason: "has no image_mean").description
        #expect(message == "--mmproj: /x/preprocessor_config.json: has no image_mean")
    }

    @Test("image_std of the wrong kind is refused naming the key and where it came from")
    func wrongKind() throws {
        let dir = TemporaryDirectory()
        let folder = try k25WithPreprocessor(dir, preprocessor: #"{"image_mean": [0.5, 0.5, 0.5], "image_std": "half"}"#)
        let out = TemporaryDirectory()
        var options = GGUFConverter.Options(requireTokenizer: false)
        options.mmproj = out.path + "/mmproj.gguf"
        #expect(throws: GGUFConvertError.mmproj(
            file: folder,
            reason: "clip.vision.image_std: preprocessor_config.json / processor_config.json key image_std is a string, expected a non-empty array of numbers")
        ) {
            _ = try GGUFConverter.convert(input: folder, output: out.path + "/out.gguf", options: options)
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: out.path).isEmpty)
    }

    @Test("preprocessor values merged as llama.cpp's converter merges them: media_proc_cfg over the top level, processor_config.json's image_processor over both")
    func processorConfig() throws {
        let dir = TemporaryDirectory()
        let folder = try k25WithPreprocessor(dir, preprocessor: #"{"image_std": [1, 1, 1], "image_mean": [3, 3, 3], "in_patch_limit": 7, "media_proc_cfg": {"in_patch_limit": 100}}"#)
        try Data(#"{"image_processor": {"image_mean": [0.25, 0.25, 0.25], "image_std": [9, 9, 9]}}"#.utf8)
            .write(to: URL(fileURLWithPath: folder + "/processor_config.json"))
        let out = TemporaryDirectory()
        let (_, file) = try convert(folder, out)
        #expect(file["clip.vision.image_mean"] == .array(.f32([0.25, 0.25, 0.25])))
        #expect(file["clip.vision.image_std"] == .array(.f32([9, 9, 9])))
        #expect(file["clip.vision.image_max_pixels"] == .u32(100 * 14 * 14))
    }

    @Test("an existing mmproj file is refused without --resume; the text GGUF is not written either")
    func existing() throws {
        let dir = TemporaryDirectory()
        let folder = try k25WithPreprocessor(dir)
        let out = TemporaryDirectory()
        out.write("mmproj.gguf", [1, 2, 3])
        var options = GGUFConverter.Options(requireTokenizer: false)
        options.mmproj = out.path + "/mmproj.gguf"
        #expect(throws: GGUFConvertError.output(
            path: out.path + "/mmproj.gguf", reason: "already exists; remove it, choose another --mmproj file, or pass --resume to write it again")
        ) {
            _ = try GGUFConverter.convert(input: folder, output: out.path + "/out.gguf", options: options)
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: out.path) == ["mmproj.gguf"])
    }

    @Test("--mmproj naming the text output itself is refused")
    func sameFile() throws {
        let dir = TemporaryDirectory()
        let folder = try k25WithPreprocessor(dir)
        let out = TemporaryDirectory()
        var options = GGUFConverter.Options(requireTokenizer: false)
        options.mmproj = out.path + "/out.gguf"
        #expect(throws: GGUFConvertError.output(path: out.path + "/out.gguf", reason: "is also the text model's output; give the mmproj its own file name")) {
            _ = try GGUFConverter.convert(input: folder, output: out.path + "/out.gguf", options: options)
        }
    }
}
