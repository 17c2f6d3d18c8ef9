import ArgumentParser
import Foundation
import GGUFModel
import GGUFUnpack
import TensorCore

// A GGUF written back as a Hugging Face folder (GGUFUnpack): `convert FILE.gguf OUT --to hf` here, and the GGUF
// branch of `dequantize` (QuantizeCommands.swift).

extension ConvertCommand {
    /// `convert FILE.gguf OUT --to hf` (GGUFUnpack).
    func runHF() throws {
        guard ForwardModel.isGGUF(input) else {
            throw ValidationError("--to hf: \(input) is not a GGUF file (convert --to hf writes a GGUF back as a Hugging Face folder)")
        }
        let (bar, progress) = reporting.progress("convert --to hf")
        let report = try GGUFUnpacker.unpack(
            input: input, output: output, options: GGUFUnpacker.Options(repackExperts: true, visionFrom: visionFrom), progress: killSwitch(progress))
        bar?.finish()
        try printUnpack(report, json: reporting.json)
    }
}

extension UnpackLayout: ExpressibleByArgument {}

/// `--dtype` of a GGUF dequantize.
enum UnpackDType: String, ExpressibleByArgument {
    case bf16, f32
    var dtype: DType { self == .f32 ? .f32 : .bf16 }
}

/// The report of a GGUF written back as a Hugging Face folder (dequantize and convert --to hf).
func printUnpack(_ report: GGUFUnpacker.Report, json: Bool) throws {
    if json { try printJSON(report); return }
    for note in report.notes { print("note: \(displayed(note, limit: nil))") }
    print("wrote \(report.tensors) tensors (\(report.copiedTensors) copied byte for byte, \(report.repackedModules) expert modules as INT4, the rest \(report.dtype)) in \(report.shards.count) shards, layout \(report.layout): \(report.outputBytes) bytes in \(String(format: "%.2f s", report.seconds))")
}
