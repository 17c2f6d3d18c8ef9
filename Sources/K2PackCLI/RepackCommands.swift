import ArgumentParser
import Foundation
import GGUFConvert
import Repack
import TensorCore
#if canImport(Glibc)
import Glibc
#endif

/// What `convert` writes (`--to`). A new output format is one more case here and one more branch in `run()`.
enum ConvertTarget: String, ExpressibleByArgument, CaseIterable {
    /// The k2pack folder format (docs/FORMAT.md).
    case k2pack
    /// llama.cpp's GGUF, architecture deepseek2 (docs/GGUF.md).
    case gguf
    /// A Hugging Face folder from a GGUF file, Q4_0 experts as compressed-tensors INT4 (docs/GGUF-UNPACK.md).
    case hf
}

extension GGUFOutType: ExpressibleByArgument {}

struct ConvertCommand: ParsableCommand, ReadsFolders, Reports {
    static let configuration = CommandConfiguration(
        commandName: "convert",
        abstract: "Repack a Hugging Face checkpoint into the k2pack format (page-aligned, experts stacked expert-major, bit-exact), or into a GGUF for llama.cpp (--to gguf).",
        discussion: "See docs/FORMAT.md and docs/GGUF.md. Every output file is written under a temporary name and renamed when complete.")

    @Argument(help: "The Hugging Face checkpoint folder.")
    var input: String

    @Argument(help: "The output: a folder (new or empty) for k2pack; a .gguf file name or a folder for --to gguf.")
    var output: String

    @Option(help: "The output format: k2pack or gguf (from a Hugging Face folder), or hf (from a GGUF file: a Hugging Face folder, Q4_0 experts as INT4).")
    var to: ConvertTarget = .k2pack

    @Flag(help: "Continue an interrupted conversion: finished files whose checksums verify are kept.")
    var resume = false

    @Option(help: "--to gguf: the type of the dense matrices, bf16 (lossless), f16 or q8_0. Norms and the router are F32, INT4 experts Q4_0 bit for bit.")
    var outtype: GGUFOutType = .bf16

    @Option(help: "--to gguf: split into parts of at most this much tensor data, named and keyed as gguf-split does (decimal K, M, G: 50G).")
    var splitMaxSize: String?

    @Flag(help: "--to gguf: round group scales that F16 cannot hold exactly (counted and reported) instead of refusing.")
    var allowInexactScales = false

    @Flag(help: "--to gguf: write no tokenizer metadata (for a folder without tokenizer files).")
    var noTokenizer = false

    @Option(help: "--to gguf: also write K2.5's vision tower and projector as llama.cpp's separate mmproj GGUF (clip, kimik25) to this file.")
    var mmproj: String?

    @Flag(help: "Write the compressed archive form (.k2z): independent zstd frames per tensor, not mmap-able; for storage and transfer.")
    var compress = false

    @Option(help: "zstd level for --compress (1–19).")
    var level: Int32 = 3

    @Option(help: "--to hf: a Kimi K2.5 folder whose vision config and tensors complete a K2.5 checkpoint.")
    var visionFrom: String?

    @OptionGroup var reporting: ReportOptions

    @OptionGroup var folders: FolderOptions

    func validate() throws {
        guard (1...19).contains(level) else { throw ValidationError("--level \(level): zstd levels 1 to 19") }
        if to != .hf, visionFrom != nil { throw ValidationError("--vision-from only applies with --to hf") }
        var ggufOnly: [String] = []
        if outtype != .bf16 { ggufOnly.append("--outtype") }
        if splitMaxSize != nil { ggufOnly.append("--split-max-size") }
        if allowInexactScales { ggufOnly.append("--allow-inexact-scales") }
        if noTokenizer { ggufOnly.append("--no-tokenizer") }
        if mmproj != nil { ggufOnly.append("--mmproj") }
        switch to {
        case .k2pack, .hf:
            if !ggufOnly.isEmpty { throw ValidationError("\(ggufOnly.joined(separator: ", ")) only apply with --to gguf") }
            if to == .hf, resume || compress {
                throw ValidationError("--to hf with --\(resume ? "resume" : "compress"): that option is for --to k2pack")
            }
        case .gguf:
            if compress { throw ValidationError("--compress writes the k2pack archive form; it does not apply with --to gguf") }
            if let splitMaxSize {
                do { _ = try GGUFConverter.parseSize(splitMaxSize) } catch { throw ValidationError(error.description) }
            }
        }
    }

    func run() throws {
        switch to {
        case .k2pack: try runK2Pack()
        case .gguf: try runGGUF()
        case .hf: try runHF()
        }
    }

    func runGGUF() throws {
        let (bar, progress) = reporting.progress("convert --to gguf")
        var options = GGUFConverter.Options(
            outType: outtype, splitMaxBytes: try splitMaxSize.map { try GGUFConverter.parseSize($0) }, resume: resume,
            allowInexactScales: allowInexactScales, requireTokenizer: !noTokenizer)
        options.mmproj = mmproj
        let report = try GGUFConverter.convert(input: input, output: output, options: options, progress: killSwitch(progress))
        bar?.finish()
        for warning in report.warnings { FileHandle.standardError.write(Data("WARNING: \(warning)\n".utf8)) }
        if reporting.json { try printJSON(report); return }
        let rate = report.seconds > 0 ? Double(report.bytes) / report.seconds / 1e9 : 0
        print("wrote \(report.files.count) GGUF file\(report.files.count == 1 ? "" : "s") (\(report.filesReused.count) kept from an earlier run), \(report.tensors) tensors (\(report.q4_0Tensors) Q4_0 moved nibble for nibble), \(report.bytes) bytes in \(String(format: "%.2f s, %.2f GB/s", report.seconds, rate))")
        for file in report.files { print("  \(file)") }
        if let path = report.mmproj { print("wrote the mmproj (clip, kimik25), \(report.mmprojTensors ?? 0) tensors:\n  \(path)") }
        if allowInexactScales { print("\(report.inexactScales) group scale\(report.inexactScales == 1 ? "" : "s") rounded to F16") }
    }

    func runK2Pack() throws {
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
