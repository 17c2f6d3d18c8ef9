import ArgumentParser
import Foundation
import Repack
import TensorCore
#if canImport(Glibc)
import Glibc
#endif

struct ConvertCommand: ParsableCommand, ReadsFolders, Reports {
    static let configuration = CommandConfiguration(
        commandName: "convert",
        abstract: "Repack a Hugging Face checkpoint into the k2pack format (page-aligned, experts stacked expert-major, bit-exact).",
        discussion: "See docs/FORMAT.md. Every output file is written under a temporary name and renamed when complete.")

    @Argument(help: "The Hugging Face checkpoint folder.")
    var input: String

    @Argument(help: "The output folder (new or empty).")
    var output: String

    @Flag(help: "Continue an interrupted conversion: finished files whose checksums verify are kept.")
    var resume = false

    @Flag(help: "Write the compressed archive form (.k2z): independent zstd frames per tensor, not mmap-able; for storage and transfer.")
    var compress = false

    @Option(help: "zstd level for --compress (1–19).")
    var level: Int32 = 3

    @Option(help: "What to write: k2pack (default, from a Hugging Face folder) or hf (from a GGUF file: a Hugging Face folder, Q4_0 experts as INT4).")
    var to: ConvertTarget = .k2pack

    @Option(help: "--to hf: a Kimi K2.5 folder whose vision config and tensors complete a K2.5 checkpoint.")
    var visionFrom: String?

    @OptionGroup var reporting: ReportOptions

    @OptionGroup var folders: FolderOptions

    func validate() throws {
        guard (1...19).contains(level) else { throw ValidationError("--level \(level): zstd levels 1 to 19") }
        if to == .hf, resume || compress {
            throw ValidationError("--to hf with --\(resume ? "resume" : "compress"): that option is for --to k2pack")
        }
        if to != .hf, visionFrom != nil { throw ValidationError("--vision-from only applies with --to hf") }
    }

    func run() throws {
        if to == .hf { return try runHF() }
        let (bar, progress) = reporting.progress("convert")
        let options = Converter.Options(resume: resume, compressionLevel: compress ? level : nil)
        let report = try Converter.convert(input: input, output: output, options: options, progress: killSwitch(progress))
        bar?.finish()
        if reporting.json { try printJSON(report); return }
        let rate = report.seconds > 0 ? Double(report.bytes) / report.seconds / 1e9 : 0
        print("wrote \(report.files.count) files (\(report.filesReused.count) kept from an earlier run), \(report.tensors) tensors (\(report.stackedTensors) expert stacks), \(report.carriedFiles) other files carried, \(report.bytes) bytes in \(String(format: "%.2f s, %.2f GB/s", report.seconds, rate))")
        if compress {
            print(String(format: "zstd level %d: %d tensor bytes in %d bytes of files, ratio %.3f", level, report.bytes, report.fileBytes, Double(report.bytes) / Double(max(report.fileBytes, 1))))
        }
    }
}

/// What `convert` writes (`--to`).
enum ConvertTarget: String, ExpressibleByArgument, CaseIterable {
    /// The k2pack folder format (docs/FORMAT.md), from a Hugging Face folder.
    case k2pack
    /// A Hugging Face folder from a GGUF file, Q4_0 experts as compressed-tensors INT4 (docs/GGUF-UNPACK.md).
    case hf
}

struct ExportCommand: ParsableCommand, Reports {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write a k2pack folder back out as the Hugging Face checkpoint it came from, byte for byte.")

    @Argument(help: "The k2pack folder.")
    var input: String

    @Argument(help: "The output folder (new or empty).")
    var output: String

    @OptionGroup var reporting: ReportOptions

    func run() throws {
        let (bar, progress) = reporting.progress("export")
        let report = try Exporter.export(input: input, output: output, progress: killSwitch(progress))
        bar?.finish()
        if reporting.json { try printJSON(report); return }
        print("wrote \(report.files.count) shards and \(report.carriedFiles) carried files (each checked against its SHA-256), \(report.bytes) bytes in \(String(format: "%.2f s", report.seconds))")
    }
}

/// Crash-safety tests set `K2PACK_TEST_KILL_AFTER_BYTES` to have the real executable SIGKILL itself once that
/// many bytes are copied: a kill at a chosen point, with no time-based guessing. Unset, this changes nothing.
func killSwitch(_ progress: ProgressCallback?) -> ProgressCallback? {
    guard let limit = ProcessInfo.processInfo.environment["K2PACK_TEST_KILL_AFTER_BYTES"].flatMap(Int.init) else { return progress }
    return { done, total in
        progress?(done, total)
        if done >= limit { kill(getpid(), SIGKILL) }
    }
}
