import ArgumentParser
import Foundation
import GGUFModel
import GGUFUnpack
import Requantize
import TensorCore

extension OutputFormat: ExpressibleByArgument {}

struct QuantizeCommand: ParsableCommand, ReadsFolders, Reports {
    static let configuration = CommandConfiguration(
        commandName: "quantize",
        abstract: "Quantize a BF16 checkpoint to native INT4 pack-quantized, bit-exact with compressed-tensors.",
        discussion: """
            The scheme is the architecture's native one (Kimi K2.5 / K2-Thinking: INT4 symmetric, group 32, routed experts \
            only), or --scheme FILE (a quantization_config). Exactly the Linear weights it targets, minus its ignore list, \
            are quantized; every other tensor is copied byte for byte. A config that still carries a quantization_config \
            over plain .weight tensors is recognized and treated as BF16.
            """)

    @Argument(help: "The BF16 Hugging Face checkpoint folder.")
    var input: String

    @Argument(help: "The output folder (new or empty).")
    var output: String

    @Option(help: "Output layout: hf (safetensors shards) or k2pack.")
    var format: OutputFormat = .hf

    @Option(help: "A quantization_config JSON file to apply instead of the architecture's native scheme.")
    var scheme: String?

    @OptionGroup var reporting: ReportOptions

    @OptionGroup var folders: FolderOptions

    func run() throws {
        let (bar, progress) = reporting.progress("quantize")
        let report = try Quantizer.quantize(input: input, output: output, options: Quantizer.Options(format: format, schemeFile: scheme), progress: killSwitch(progress))
        bar?.finish()
        if reporting.json { try printJSON(report); return }
        for note in report.notes { print("note: \(displayed(note, limit: nil))") }
        print("quantized \(report.quantizedModules) modules (\(displayed(report.scheme))), copied \(report.copiedTensors) tensors: \(report.inputBytes) → \(report.outputBytes) bytes in \(String(format: "%.2f s", report.seconds))")
    }
}

struct DequantizeCommand: ParsableCommand, ReadsFolders, Reports {
    static let configuration = CommandConfiguration(
        commandName: "dequantize",
        abstract: "Turn every pack-quantized module back into a plain .weight: bf16(q·scale) as compressed-tensors does, or --exact float32.",
        discussion: """
            One streaming pass from the INT4 folder; the output config has no quantization_config at any level. \
            Given a GGUF file (deepseek2; any part of a split set): a Hugging Face checkpoint with the original names, \
            every tensor dequantized as ggml defines its type, then --dtype bf16 or f32 (see docs/GGUF-UNPACK.md).
            """)

    @Argument(help: "The INT4 Hugging Face checkpoint folder, or a GGUF file.")
    var input: String

    @Argument(help: "The output folder (new or empty).")
    var output: String

    @Option(help: "Output layout: hf (safetensors shards) or k2pack.")
    var format: OutputFormat = .hf

    @Flag(help: "Write float32 q·scale (exact) instead of BF16.")
    var exact = false

    @Option(help: "GGUF input: the dtype written, bf16 (default) or f32.")
    var dtype: UnpackDType?

    @Option(help: "GGUF input: the config written, deepseek-v3 (default, unless the file records its source), k2, or k25 (with --vision-from).")
    var layout: UnpackLayout?

    @Option(help: "GGUF input: a Kimi K2.5 folder whose vision config and vision tensors complete a K2.5 checkpoint (layout k25).")
    var visionFrom: String?

    @OptionGroup var reporting: ReportOptions

    @OptionGroup var folders: FolderOptions

    func validate() throws {
        if exact, dtype != nil { throw ValidationError("--exact and --dtype: --exact is for an INT4 folder, --dtype f32 for a GGUF; give one") }
    }

    func run() throws {
        let gguf = ForwardModel.isGGUF(input)
        if gguf, exact { throw ValidationError("--exact: \(input) is a GGUF file; its float32 form is --dtype f32") }
        if !gguf, dtype != nil || layout != nil || visionFrom != nil {
            throw ValidationError("--\(dtype != nil ? "dtype" : layout != nil ? "layout" : "vision-from") applies to a GGUF input; \(input) is not a GGUF file (--exact writes an INT4 folder as float32)")
        }
        let (bar, progress) = reporting.progress("dequantize")
        if gguf {
            guard format == .hf else { throw ValidationError("--format k2pack: a GGUF is written back as a Hugging Face folder only (convert that folder afterwards)") }
            let options = GGUFUnpacker.Options(dtype: (dtype ?? .bf16).dtype, layout: layout, visionFrom: visionFrom)
            let report = try GGUFUnpacker.unpack(input: input, output: output, options: options, progress: killSwitch(progress))
            bar?.finish()
            try printUnpack(report, json: reporting.json)
            return
        }
        let report = try Dequantizer.dequantize(input: input, output: output, options: Dequantizer.Options(format: format, exact: exact), progress: killSwitch(progress))
        bar?.finish()
        if reporting.json { try printJSON(report); return }
        print("dequantized \(report.dequantizedModules) modules to \(report.dtype), copied \(report.copiedTensors) tensors: \(report.inputBytes) → \(report.outputBytes) bytes in \(String(format: "%.2f s", report.seconds))")
    }
}
