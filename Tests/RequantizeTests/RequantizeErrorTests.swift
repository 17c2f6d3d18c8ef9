import Checkpoint
import Foundation
import Requantize
import TestSupport
import Testing

/// Every refusal of quantize, dequantize and `verify --requantize` that is not about one tensor: its typed case
/// and its message.
@Suite("RequantizeError cases and messages")
struct RequantizeErrorTests {
    static let bf16 = TestPaths.fixture("quantize/k2-thinking-bf16")

    /// A scheme file whose one group has these weights settings (the native scheme's, by default); `format` nil:
    /// no top-level format, the group's own is pack-quantized.
    static func scheme(_ dir: TemporaryDirectory, format: String? = "pack-quantized", bits: Int = 4, groupSize: Int = 32) -> String {
        let top = format.map { "\"format\": \"\($0)\", " } ?? ""
        let inGroup = format == nil ? "\"format\": \"pack-quantized\", " : ""
        return dir.write("scheme-\(format ?? "none")-\(bits)-\(groupSize).json", Array("""
            {"config_groups": {"g": {\(inGroup)"targets": ["Linear"], "weights": {"num_bits": \(bits), "type": "int", "symmetric": true, \
            "strategy": "group", "group_size": \(groupSize)}}}, \(top)"quant_method": "compressed-tensors", "ignore": []}
            """.utf8))
    }

    static func refusal(_ body: () throws -> Void) -> RequantizeError? {
        do {
            try body()
            return nil
        } catch let error as RequantizeError {
            return error
        } catch {
            Issue.record("not a RequantizeError: \(error)")
            return nil
        }
    }

    @Test("dequantize of a BF16 folder: notQuantized")
    func notQuantized() {
        let dir = TemporaryDirectory()
        let error = Self.refusal { _ = try Dequantizer.dequantize(input: Self.bf16, output: dir.path + "/o") }
        #expect(error == .notQuantized(folder: Self.bf16))
        #expect(error?.description == "\(Self.bf16) has no quantization_config: nothing to dequantize")
    }

    @Test("verify --requantize with a BF16 folder as the INT4 one: noQuantizedModules")
    func noQuantizedModules() {
        let error = Self.refusal { _ = try RequantizeCheck.run(int4: Self.bf16, bf16: Self.bf16) }
        #expect(error == .noQuantizedModules(folder: Self.bf16))
        #expect(error?.description == "\(Self.bf16) has no pack-quantized modules to compare")
    }

    @Test("a folder without config.json: brokenCheckpoint, naming the folder")
    func brokenCheckpoint() throws {
        let dir = TemporaryDirectory()
        let input = dir.copy(fixture: "quantize/k2-thinking-bf16")
        try FileManager.default.removeItem(atPath: input + "/config.json")
        let error = Self.refusal { _ = try Quantizer.quantize(input: input, output: dir.path + "/o") }
        guard case .brokenCheckpoint(let reason) = error else {
            Issue.record("expected brokenCheckpoint, got \(String(describing: error))")
            return
        }
        #expect(reason.hasPrefix("\(input) has ") && reason.contains("(run `k2pack verify`); first: "), "\(reason)")
        #expect(error?.description == reason)
    }

    @Test("--scheme refusals: unreadable, not JSON, no pack-quantized format, a setting k2pack does not implement, a bad group size")
    func schemeRefusals() throws {
        let dir = TemporaryDirectory()
        func quantize(_ scheme: String) -> RequantizeError? {
            Self.refusal { _ = try Quantizer.quantize(input: Self.bf16, output: dir.path + "/o-\(UUID().uuidString)", options: .init(schemeFile: scheme)) }
        }
        let missing = dir.path + "/none.json"
        let unreadable = quantize(missing)
        guard case .schemeUnreadable(let cause) = unreadable else {
            Issue.record("expected schemeUnreadable, got \(String(describing: unreadable))")
            return
        }
        #expect(unreadable?.description == "quantization scheme: \(cause)" && "\(cause)".hasPrefix("\(missing): cannot "), "\(cause)")

        let notJSON = dir.write("broken.json", Array("{\"format\": ".utf8))
        let json = quantize(notJSON)
        guard case .schemeJSON(let file, let error) = json else {
            Issue.record("expected schemeJSON, got \(String(describing: json))")
            return
        }
        #expect(file == notJSON && json?.description == "quantization scheme: \(notJSON): \(error)")

        // Each group pack-quantized, but the scheme as a whole names no format: not what k2pack writes.
        let format = quantize(Self.scheme(dir, format: nil))
        #expect(format == .schemeFormat(found: nil))
        #expect(format?.description == "quantization scheme: format \"none\" (k2pack writes pack-quantized)")

        let bits = quantize(Self.scheme(dir, bits: 8))
        #expect(bits == .schemeSetting(group: "g", key: "num_bits", found: "8", expected: "4"))
        #expect(bits?.description == "quantization scheme: config group g: num_bits is 8; k2pack implements 4")

        let group = quantize(Self.scheme(dir, groupSize: 12))
        #expect(group == .schemeGroupSize(group: "g"))
        #expect(group?.description == "quantization scheme: config group g: the group size must be a positive multiple of 8")
    }

    @Test("an architecture with no native INT4 scheme and no --scheme: noNativeScheme")
    func noNativeScheme() {
        let dir = TemporaryDirectory()
        let error = Self.refusal { _ = try Quantizer.quantize(input: TestPaths.fixture("deepseek-v3-tiny"), output: dir.path + "/o") }
        guard case .noNativeScheme(let architecture) = error else {
            Issue.record("expected noNativeScheme, got \(String(describing: error))")
            return
        }
        #expect(architecture.contains("DeepSeek"), "\(architecture)")
        #expect(error?.description == "quantization scheme: \(architecture) has no native INT4 scheme k2pack can produce; pass --scheme FILE (a quantization_config)")
    }
}
