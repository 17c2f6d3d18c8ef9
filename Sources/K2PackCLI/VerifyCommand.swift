import ArgumentParser
import Checkpoint
import FileIO
import Foundation
import GGUFModel
import Inspection
import PackFormat
import Repack
import Requantize
import Shard

struct VerifyCommand: ParsableCommand, ReadsFolders, Reports {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Check every byte range, the index, config↔tensor consistency and the INT4 experts of a checkpoint.",
        discussion: """
            Exits 0 when clean and 1 with a report naming each problem (file, tensor, found vs expected).
            With --sha256, every listed file is checked against its SHA-256 (sha256sum format, LF or CRLF), and every shard must be listed.
            With --requantize --bf16 DIR, the BF16 weights of DIR are quantized in memory by the compressed-tensors rule and \
            compared with the checkpoint's INT4 codes and scales: agreement is reported per tensor, not assumed.
            A .gguf file (any part of a split set) is checked for its structure, every block's scales and every float \
            value finite, the tensor set and shapes its architecture needs, its tokenizer and its metadata.
            """
    )

    @Argument(help: "A Hugging Face checkpoint folder, a k2pack folder made by `k2pack convert`, a shard set made by `k2pack shard` (or one of its rank folders), or a .gguf file (any part of a split set).")
    var checkpoint: String

    @Option(name: .customLong("sha256"), help: "A sha256sum-format list of the checkpoint's files.")
    var sha256List: String?

    @Flag(help: "Check headers, index and config only; do not read tensor data.")
    var headersOnly = false

    @Option(help: "Shards scanned at once (default: the number of cores).")
    var threads: Int?

    @Flag(help: "Compare the INT4 codes and scales with the BF16 weights of --bf16 quantized again (the reference rule).")
    var requantize = false

    @Option(help: "With --requantize: the BF16 checkpoint folder.")
    var bf16: String?

    @OptionGroup var reporting: ReportOptions

    func validate() throws {
        if let threads, threads < 1 || threads > ForwardOptions.maxThreads {
            throw ValidationError("--threads \(threads): expected 1 to \(ForwardOptions.maxThreads)")
        }
        if requantize != (bf16 != nil) { throw ValidationError("--requantize and --bf16 DIR go together") }
    }

    @OptionGroup var folders: FolderOptions

    func run() throws {
        if requantize, let bf16 {
            let report = try RequantizeCheck.run(int4: checkpoint, bf16: bf16)
            if reporting.json { try printJSON(report) } else { print(terminalText(report.renderText())) }
            return
        }
        var options = VerifyOptions(scanData: !headersOnly)
        if let threads { options.threads = threads }
        if checkpoint.hasSuffix(".gguf") || ForwardModel.isGGUF(checkpoint) {
            // A GGUF file or any part of a split set (checks in Inspection's GGUFVerifier).
            if sha256List != nil { throw ValidationError("--sha256 checks a Hugging Face checkpoint folder's files; \(checkpoint) is a GGUF file") }
            let (bar, progress) = reporting.progress("verify")
            let report = try GGUFVerifier.verify(path: checkpoint, options: options, progress: progress)
            bar?.finish()
            if reporting.json { try printJSON(report) } else { print(terminalText(report.renderText()), terminator: "") }
            if !report.passed { throw ExitCode(1) }
            return
        }
        if let sha256List {
            let bytes = try ReadOnlyFile(path: sha256List).readAll()
            options.checksums = try ChecksumList.parse(bytes: bytes, fileName: sha256List)
        }
        let kind = FolderKind(folder: checkpoint)
        let isShardSet = kind == .shardSet, isPack = kind == .pack
        if sha256List != nil, isShardSet || isPack {
            // The list names a Hugging Face checkpoint's files; accepting it here would check nothing.
            throw ValidationError(
                "--sha256 checks a Hugging Face checkpoint's files; \(checkpoint) is a \(isShardSet ? "shard set" : "k2pack folder") "
                    + "(its files carry their own xxHash64 checksums, checked by verify; export it and verify the export with the list)")
        }
        let (bar, progress) = reporting.progress("verify")
        let report =
            isShardSet
            ? try ShardVerifier.verify(folder: checkpoint, threads: options.threads, progress: progress)
            : isPack
            ? try PackVerifier.verify(folder: checkpoint, threads: options.threads, progress: progress)
            : try Verifier.verify(path: checkpoint, options: options, progress: progress)
        bar?.finish()
        keepUntilExit(report)
        if reporting.json {
            try printJSON(report)
        } else {
            print(terminalText(report.renderText()), terminator: "")
        }
        if !report.passed { throw ExitCode(1) }
    }
}
