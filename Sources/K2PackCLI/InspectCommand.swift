import ArgumentParser
import Checkpoint
import GGUF
import GGUFModel
import Inspection
import LoadedModel
import PackFormat
import Repack
import Shard
import Vision

struct InspectCommand: ParsableCommand, ReadsFolders, Reports {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Summarize a checkpoint: architecture, counts, parameters and bytes by role, quantization, memory per GPU.",
        discussion: "Reads only the headers. Exits 1 if the folder's structure has problems (run `k2pack verify` for the full check)."
    )

    @Argument(help: "A Hugging Face checkpoint folder (config.json, model.safetensors.index.json, shards), a k2pack folder, or a .gguf file (any part of a split set).")
    var checkpoint: String

    @Option(help: "GPUs for the memory-per-GPU estimate.")
    var gpus: Int = 8

    @OptionGroup var reporting: ReportOptions

    @Option(help: "Image size HEIGHTxWIDTH in pixels: the tokens one such image becomes (models with a vision tower).")
    var image = "448x448"

    func validate() throws {
        guard gpus >= 1, gpus <= ShardLayout.maxRanks else { throw ValidationError("--gpus \(gpus): expected 1 to \(ShardLayout.maxRanks)") }
        guard imageSize.count == 2 else { throw ValidationError("--image \(image): expected HEIGHTxWIDTH in pixels, e.g. 448x448") }
    }

    var imageSize: [Int] { image.split(separator: "x", omittingEmptySubsequences: false).compactMap { Int($0) } }

    @OptionGroup var folders: FolderOptions

    func run() throws {
        if checkpoint.hasSuffix(".gguf") {  // a GGUF file or any part of a split set (report logic in GGUF)
            let report = try GGUFInspectReport(path: checkpoint, gpus: gpus)
            if reporting.json { try printJSON(report) } else { print(terminalText(report.renderText()), terminator: "") }
            return
        }
        let kind = FolderKind(folder: checkpoint)
        if kind == .shardSet {
            let report = try ShardSetInspectReport(folder: checkpoint)
            if reporting.json { try printJSON(report) } else { print(terminalText(report.renderText()), terminator: "") }
            return
        }
        if kind == .pack {
            let report = try PackInspectReport(folder: checkpoint)
            if reporting.json { try printJSON(report) } else { print(terminalText(report.renderText()), terminator: "") }
            if !report.problems.isEmpty { throw ExitCode(1) }
            return
        }
        let loaded = try LoadedCheckpoint(path: checkpoint)
        keepUntilExit(loaded)
        let report = InspectReport(loaded, gpus: gpus)
        if reporting.json {
            try printJSON(report)
        } else {
            print(terminalText(report.renderText()), terminator: "")
            if let config = loaded.config, config.visionPart != nil { print(terminalText(try VisionSummary(model: config, imageHeight: imageSize[0], imageWidth: imageSize[1], expected: loaded.expected).renderText()), terminator: "") }
        }
        if report.findings.contains(where: { $0.severity == .error }) { throw ExitCode(1) }
    }
}
