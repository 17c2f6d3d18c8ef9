import ArgumentParser
import Checkpoint
import Inspection
import Repack
import Shard
import Vision

struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Summarize a checkpoint: architecture, counts, parameters and bytes by role, quantization, memory per GPU.",
        discussion: "Reads only the headers. Exits 1 if the folder's structure has problems (run `k2pack verify` for the full check)."
    )

    @Argument(help: "A Hugging Face checkpoint folder (config.json, model.safetensors.index.json, shards), or a k2pack folder.")
    var checkpoint: String

    @Option(help: "GPUs for the memory-per-GPU estimate.")
    var gpus: Int = 8

    @Flag(help: "Print the report as JSON.")
    var json = false

    @Option(help: "Image size HEIGHTxWIDTH in pixels: the tokens one such image becomes (models with a vision tower).")
    var image = "448x448"

    func validate() throws {
        guard gpus >= 1, gpus <= 4096 else { throw ValidationError("--gpus \(gpus): expected 1 to 4096") }
        guard imageSize.count == 2 else { throw ValidationError("--image \(image): expected HEIGHTxWIDTH in pixels, e.g. 448x448") }
    }

    var imageSize: [Int] { image.split(separator: "x", omittingEmptySubsequences: false).compactMap { Int($0) } }

    @OptionGroup var folders: FolderOptions

    func run() throws {
        folders.apply()
        if ShardSetManifest.isShardSet(checkpoint) {
            let report = try ShardSetInspectReport(folder: checkpoint)
            if json { try printJSON(report) } else { print(terminalText(report.renderText()), terminator: "") }
            return
        }
        if PackVerifier.isPackFolder(checkpoint) {
            let report = try PackInspectReport(folder: checkpoint)
            if json { try printJSON(report) } else { print(terminalText(report.renderText()), terminator: "") }
            if !report.problems.isEmpty { throw ExitCode(1) }
            return
        }
        let loaded = try LoadedCheckpoint(path: checkpoint)
        keepUntilExit(loaded)
        let report = InspectReport(loaded, gpus: gpus)
        if json {
            try printJSON(report)
        } else {
            print(terminalText(report.renderText()), terminator: "")
            if let config = loaded.config, config.visionPart != nil { print(terminalText(try VisionSummary(model: config, imageHeight: imageSize[0], imageWidth: imageSize[1]).renderText()), terminator: "") }
        }
        if report.findings.contains(where: { $0.severity == .error }) { throw ExitCode(1) }
    }
}
