@testable import Forward
import Foundation
import ModelConfig
import TensorCore
import Testing

@Suite("Forward-pass building blocks")
struct KernelTests {
    /// A flat K2-style config.json with the real dimensions and the given YaRN beta_fast.
    static func config(betaFast: Double, mscaleAllDim: Double = 1) throws -> ForwardConfig {
        let json = """
            {"model_type": "kimi_k2", "hidden_size": 7168, "num_hidden_layers": 61, "num_attention_heads": 64,
             "q_lora_rank": 1536, "kv_lora_rank": 512, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128,
             "intermediate_size": 18432, "moe_intermediate_size": 2048, "n_routed_experts": 384, "num_experts_per_tok": 8,
             "n_shared_experts": 1, "first_k_dense_replace": 1, "vocab_size": 163840, "n_group": 1, "topk_group": 1,
             "routed_scaling_factor": 2.827, "rms_norm_eps": 1e-5, "rope_theta": 50000.0,
             "rope_scaling": {"type": "yarn", "factor": 64.0, "original_max_position_embeddings": 4096,
                              "beta_fast": \(betaFast), "beta_slow": 1.0, "mscale": 1.0, "mscale_all_dim": \(mscaleAllDim)}}
            """
        return try ForwardConfig(ModelConfig.parse(Array(json.utf8)).text)
    }

    @Test("YaRN inverse frequencies and softmax scale match the reference values")
    func yarn() throws {
        let k25 = try Self.config(betaFast: 32)
        let f = k25.rope.inverseFrequencies
        let expected: [(Int, Float)] = [(0, 1.0), (1, 0.7131110849), (2, 0.5085274194), (3, 0.3626365398), (9, 4.377665595e-2), (31, 4.382206456e-7)]
        for (i, value) in expected {
            #expect(abs(f[i] - value) <= 1e-6 * value, "inv_freq[\(i)] = \(f[i]), expected \(value)")
        }
        let thinking = try Self.config(betaFast: 1).rope.inverseFrequencies
        #expect(abs(thinking[9] - 4.768861244e-2) <= 1e-6 * 4.768861244e-2, "K2-Thinking inv_freq[9] = \(thinking[9])")
        #expect(abs(k25.softmaxScale - 0.144679626) < 1e-7, "softmax scale \(k25.softmaxScale)")
        #expect(k25.rope.amplitude == 1)
        #expect(k25.latentNormEps == 1e-6 && k25.rmsNormEps == 1e-5)
    }

    @Test("unsupported configs are named")
    func unsupported() throws {
        let json = #"{"model_type": "kimi_k2", "hidden_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2, "q_lora_rank": 32, "kv_lora_rank": 32, "qk_nope_head_dim": 16, "qk_rope_head_dim": 8, "v_head_dim": 16, "intermediate_size": 96, "moe_intermediate_size": 32, "n_routed_experts": 8, "num_experts_per_tok": 2, "n_shared_experts": 1, "first_k_dense_replace": 1, "vocab_size": 256, "scoring_func": "softmax"}"#
        // Refused when config.json is read (every command, verify included), before any forward config exists.
        #expect(throws: ConfigError.invalidValue(
            file: "config.json", section: "config", key: "scoring_func",
            reason: "found \"softmax\", expected \"sigmoid\" (the reference forward pass implements sigmoid routing)")) {
            _ = try ForwardConfig(ModelConfig.parse(Array(json.utf8)).text)
        }
        let groups = json.replacingOccurrences(of: #""scoring_func": "softmax""#, with: #""n_group": 3, "topk_group": 1"#)
        #expect(throws: ConfigError.invalidValue(file: "config.json", section: "config", key: "n_group", reason: "3 groups do not divide n_routed_experts 8")) {
            _ = try ForwardConfig(ModelConfig.parse(Array(groups.utf8)).text)
        }
    }

    /// A matrix stored in memory (kept alive by the returned buffer).
    static func stored(_ bytes: [UInt8], dtype: DType, shape: [Int]) -> (TensorView, UnsafeMutableRawBufferPointer) {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 64)
        buffer.copyBytes(from: bytes)
        return (TensorView(name: "w", dtype: dtype, shape: shape, bytes: UnsafeRawBufferPointer(buffer)), buffer)
    }

    @Test("fused few-token kernels equal decode + OpenBLAS for BF16 and INT4", arguments: [1, 2, 4])
    func fused(tokens m: Int) throws {
        let rows = 48, cols = 256
        var rng = SystemRandomNumberGenerator()
        let bf16 = (0..<(rows * cols)).flatMap { _ -> [UInt8] in
            let b = BFloat16Bits.fromFloat(Float.random(in: -1...1, using: &rng))
            return [UInt8(b & 0xFF), UInt8(b >> 8)]
        }
        let codes = (0..<(rows * cols / 2)).map { _ in UInt8.random(in: 0...255, using: &rng) }
        let scales = (0..<(rows * cols / 32)).flatMap { _ -> [UInt8] in
            let b = BFloat16Bits.fromFloat(Float.random(in: 0.001...0.1, using: &rng))
            return [UInt8(b & 0xFF), UInt8(b >> 8)]
        }
        let (plainView, b1) = Self.stored(bf16, dtype: .bf16, shape: [rows, cols])
        let (codeView, b2) = Self.stored(codes, dtype: .i32, shape: [rows, cols / 8])
        let (scaleView, b3) = Self.stored(scales, dtype: .bf16, shape: [rows, cols / 32])
        defer { [b1, b2, b3].forEach { $0.deallocate() } }
        let x = (0..<(m * cols)).map { _ in Float.random(in: -2...2, using: &rng) }
        for matrix in [
            WeightMatrix(name: "bf16", rows: rows, cols: cols, storage: .plain(plainView)),
            WeightMatrix(name: "int4", rows: rows, cols: cols, storage: .packed(codes: codeView, scales: scaleView, groupSize: 32, bits: 4, dequant: .exact, highFirst: false)),
        ] {
            #expect(FusedKernels.supports(matrix))
            let decoded = matrix.all()
            let reference = Gemm.linear(x, decoded, m: m, n: rows, k: cols)
            var fused = [Float](repeating: 0, count: m * rows)
            x.withUnsafeBufferPointer { xp in
                fused.withUnsafeMutableBufferPointer { FusedKernels.rows(matrix, 0..<rows, x: xp.baseAddress!, m: m, y: $0.baseAddress!, ldy: rows) }
            }
            let worst = zip(fused, reference).enumerated().max { abs($0.element.0 - $0.element.1) < abs($1.element.0 - $1.element.1) }!
            #expect(abs(worst.element.0 - worst.element.1) <= 1e-4, "\(matrix.name): largest difference \(abs(worst.element.0 - worst.element.1)) at [\(worst.offset / rows), \(worst.offset % rows)]")
        }
    }

    @Test("INT4 decoding: nibble order, offset binary, exact and bf16 dequantization")
    func int4Decode() throws {
        // q = [5, 2, 0, -4, -4, -8, -7, -8] → word 0x010448AD (reference §5), scale 0.3 (not exact in BF16).
        let word: UInt32 = 0x010448AD
        let codeBytes = (0..<4).map { UInt8(truncatingIfNeeded: word >> (8 * $0)) } + [UInt8](repeating: 0x88, count: 12)
        let s = BFloat16Bits.fromFloat(0.3)
        let (codes, b1) = Self.stored(codeBytes, dtype: .i32, shape: [1, 4])
        let (scales, b2) = Self.stored([UInt8(s & 0xFF), UInt8(s >> 8)], dtype: .bf16, shape: [1, 1])
        defer { b1.deallocate(); b2.deallocate() }
        let scale = BFloat16Bits.toFloat(s)
        for mode in Dequantization.allCases {
            let m = WeightMatrix(name: "m", rows: 1, cols: 32, storage: .packed(codes: codes, scales: scales, groupSize: 32, bits: 4, dequant: mode, highFirst: false))
            let row = m.row(0)
            let q: [Float] = [5, 2, 0, -4, -4, -8, -7, -8]
            for i in 0..<8 {
                let exact = q[i] * scale
                let expected = mode == .exact ? exact : BFloat16Bits.toFloat(BFloat16Bits.fromFloat(exact))
                #expect(row[i] == expected, "\(mode) element \(i): \(row[i]), expected \(expected)")
            }
            #expect(row[8...].allSatisfy { $0 == 0 }, "code 8 (0x8 nibble) is zero")
        }
    }
}
