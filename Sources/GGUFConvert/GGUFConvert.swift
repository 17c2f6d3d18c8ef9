// convert --to gguf lives here (issue 18): the GGUF container writer, the HF → deepseek2 tensor plan, the INT4 →
// Q4_0 nibble repack and the tokenizer's GGUF metadata.
import Checkpoint
import FileIO
import Foundation
import GGUF
import LoadedModel
import ModelConfig
import TensorCore

/// `k2pack convert <hf-dir> <out.gguf | out-dir> --to gguf`: a Hugging Face checkpoint into llama.cpp's
/// `deepseek2` GGUF, one file or split parts named and keyed as `gguf-split` does.
///
/// The checkpoint is opened and checked as `convert` does (same refusals). Every tensor llama.cpp's loader creates
/// is written and nothing else (`GGUFTensorPlanner`); the routed experts' INT4 groups are moved into Q4_0 blocks
/// nibble for nibble, each scale checked exact in F16. Each output file is written front to back through
/// `GGUFStreamWriter` (temporary name, fsync, rename): the input stays mapped, nothing is held whole.
public enum GGUFConverter {
    public struct Options: Sendable {
        public var outType: GGUFOutType = .bf16
        /// At most this many bytes of tensor data per part (gguf-split's `--split-max-size`); nil: one file.
        public var splitMaxBytes: Int?
        /// Keep finished parts of an earlier run whose length and SHA-256 match its record.
        public var resume = false
        /// Round scales F16 cannot hold (counted) instead of refusing.
        public var allowInexactScales = false
        /// Keys added after the model's (the tokenizer's).
        public var extraMetadata: [GGUFKeyValue] = []
        /// Refuse a folder without tokenizer files (`--no-tokenizer` turns this off).
        public var requireTokenizer = true
        /// The tokenizer's keys, made from the folder and its config once the checkpoint is checked (called only
        /// when `requireTokenizer`; nil: `GGUFVocabulary.metadata`); appended after the model's keys and before
        /// `extraMetadata`.
        public var tokenizerMetadata: (@Sendable (_ folder: String, _ config: ModelConfig) throws -> [GGUFKeyValue])?
        /// `general.name`; nil: the input folder's name.
        public var name: String?
        /// `--mmproj FILE.gguf`: also write the vision tower and projector as llama.cpp's separate mmproj file
        /// (`GGUFMmproj`).
        public var mmproj: String?

        public init(outType: GGUFOutType = .bf16, splitMaxBytes: Int? = nil, resume: Bool = false, allowInexactScales: Bool = false,
                    extraMetadata: [GGUFKeyValue] = [], requireTokenizer: Bool = true, name: String? = nil) {
            self.outType = outType
            self.splitMaxBytes = splitMaxBytes
            self.resume = resume
            self.allowInexactScales = allowInexactScales
            self.extraMetadata = extraMetadata
            self.requireTokenizer = requireTokenizer
            self.name = name
        }
    }

    public struct Report: Sendable, Codable {
        /// The files written (or kept), in part order, as paths.
        public var files: [String]
        /// The mmproj file written (`--mmproj`), and its tensor count.
        public var mmproj: String?
        public var mmprojTensors: Int?
        /// The parts kept from an earlier run (`--resume`).
        public var filesReused: [String]
        public var tensors: Int
        /// Of which Q4_0 moved nibble for nibble.
        public var q4_0Tensors: Int
        /// Bytes of all files.
        public var bytes: Int
        /// Scales rounded to F16 (only with `allowInexactScales`; otherwise 0).
        public var inexactScales: Int
        public var warnings: [String]
        public var outType: String
        public var seconds: Double
    }

    /// The tokenizer files convert looks for in a checkpoint folder (Kimi's tiktoken model, or a Hugging Face
    /// `tokenizer.json`).
    public static let tokenizerFiles = ["tiktoken.model", "tokenizer.json"]

    /// Refuses a folder with none of `tokenizerFiles` (llama.cpp cannot load a GGUF without a vocabulary).
    public static func requireTokenizerFiles(in folder: String) throws(GGUFConvertError) {
        guard tokenizerFiles.contains(where: { FileManager.default.fileExists(atPath: folder + "/" + $0) }) else {
            throw .noTokenizer(folder: folder)
        }
    }

    /// The file names in the split record kept next to the output (`--resume`).
    static func recordName(prefix: String) -> String { ".\(prefix).gguf.k2pack-resume.json" }

    public static func convert(input: String, output: String, options: Options = Options(), progress: ProgressCallback? = nil) throws(GGUFConvertError) -> Report {
        let start = Date()
        let checkpoint: LoadedCheckpoint
        do {
            checkpoint = try LoadedCheckpoint(path: input)
        } catch {
            throw .sourceInvalid(reason: error.description)
        }
        if let reason = checkpoint.unusableReason { throw .sourceInvalid(reason: reason) }
        guard let config = checkpoint.config else { throw .sourceInvalid(reason: "\(displayed(input)) has no usable config.json") }
        var tokenizer: [GGUFKeyValue] = []
        if options.requireTokenizer {
            try requireTokenizerFiles(in: input)
            // The folder's tokenizer keys (GGUFVocabulary: a tokenizer.json if there is one, else the Kimi files) unless
            // the caller supplies its own.
            let make = options.tokenizerMetadata ?? { folder, config in
                try GGUFVocabulary.metadata(modelFolder: folder, vocabularySize: config.text.vocabSize)
            }
            do {
                tokenizer = try make(input, config)
            } catch {
                throw .tokenizer(folder: input, reason: "\(error)")
            }
        }
        let folderName = OutputPaths.name(of: input)
        let planned = try GGUFTensorPlanner.plan(checkpoint, outType: options.outType, maxRowBytes: GGUFStreamWriter.bufferBytes)
        let model = GGUFMetadataBuilder.metadata(config: config, name: options.name ?? folderName, outType: options.outType)
        let metadata = model.metadata + tokenizer + options.extraMetadata

        // Where: a .gguf path names the file (parts take its stem), anything else is a folder.
        let (folder, stem) = try outputLocation(output, input: input, defaultStem: "\(folderName).\(options.outType.label)-Q4_0")
        let parts = try GGUFSplitPlan(metadata: metadata, tensors: planned.map(\.descriptor), maxBytes: options.splitMaxBytes)
        let paths = parts.fileNames(stem: stem).map { folder + "/" + $0 }
        let recordPath = folder + "/" + recordName(prefix: stem)
        // --mmproj: planned (every refusal) before anything is written.
        var mmproj: (path: String, plan: GGUFMmproj.Plan, layout: GGUFLayout)?
        if let target = options.mmproj {
            let plan = try GGUFMmproj.plan(checkpoint, config: config, name: options.name ?? folderName, outType: options.outType, maxRowBytes: GGUFStreamWriter.bufferBytes)
            let (mmFolder, mmStem) = try outputLocation(target, input: input, defaultStem: "mmproj-\(folderName).\(options.outType.label)")
            let path = mmFolder + "/" + mmStem + ".gguf"
            guard !paths.contains(path) else {
                throw .output(path: target, reason: "is also the text model's output; give the mmproj its own file name")
            }
            if !options.resume, FileManager.default.fileExists(atPath: path) {
                throw .output(path: path, reason: "already exists; remove it, choose another --mmproj file, or pass --resume to write it again")
            }
            mmproj = (path, plan, try GGUFLayout(metadata: plan.metadata, tensors: plan.tensors.map(\.descriptor)))
        }
        let fingerprint = parts.fingerprint(allowInexactScales: options.allowInexactScales)

        var record = GGUFResumeRecord(plan: fingerprint, parts: [])
        var kept = Set<Int>()
        if options.resume, let earlier = GGUFResumeRecord.read(recordPath), earlier.plan == fingerprint {
            for (i, path) in paths.enumerated() {
                let name = OutputPaths.name(of: path)
                guard let done = earlier.parts.first(where: { $0.file == name }), done.bytes == parts.layouts[i].fileBytes,
                    GGUFResumeRecord.matches(path: path, bytes: done.bytes, sha256: done.sha256)
                else { continue }
                kept.insert(i)
                record.parts.append(done)
            }
        }
        if !options.resume {
            for path in paths + [recordPath] where FileManager.default.fileExists(atPath: path) {
                throw .output(path: path, reason: "already exists; remove it, choose another output, or pass --resume to keep the finished parts of an earlier run")
            }
        }

        let total = parts.layouts.reduce(0) { $0 + $1.fileBytes } + (mmproj?.layout.fileBytes ?? 0)
        let counter = ProgressCounter(total: total, report: progress)
        for i in kept { counter.add(parts.layouts[i].fileBytes) }
        var written: [String] = []
        var inexact = record.parts.reduce(0) { $0 + $1.inexactScales }
        do throws(GGUFConvertError) {
            for (i, layout) in parts.layouts.enumerated() where !kept.contains(i) {
                let writer = try GGUFStreamWriter(path: paths[i], progress: counter.add)
                var encoder = GGUFTensorEncoder(writer: writer, allowInexactScales: options.allowInexactScales)
                try writer.append(layout.header)
                for t in parts.members[i] {
                    try encoder.write(planned[t])
                    try writer.pad(to: layout.alignment)
                }
                // An input rewritten while it was read never becomes a finished-looking part.
                var checked = Set<ObjectIdentifier>()
                for source in parts.members[i].flatMap({ planned[$0].source.files }) where checked.insert(ObjectIdentifier(source)).inserted {
                    do { try source.file.checkUnchanged() } catch { throw GGUFConvertError.from(error, path: source.file.path) }
                }
                guard writer.position == layout.fileBytes else {
                    throw .io(path: paths[i], operation: "write", reason: "\(writer.position) bytes were produced where \(layout.fileBytes) were planned (a k2pack bug: please report it)")
                }
                let (bytes, sha256) = try writer.commit()
                written.append(paths[i])
                inexact += encoder.inexactScales
                record.parts.append(.init(file: OutputPaths.name(of: paths[i]), bytes: bytes, sha256: sha256, inexactScales: encoder.inexactScales))
                try record.write(recordPath)
            }
            if let mmproj {
                try writeMmproj(path: mmproj.path, plan: mmproj.plan, layout: mmproj.layout, progress: counter.add)
                written.append(mmproj.path)
            }
        } catch {
            // A fresh run leaves nothing behind; a resumed one keeps what it finished for the next try.
            if !options.resume {
                for path in written + [recordPath] { try? FileManager.default.removeItem(atPath: path) }
            }
            throw error
        }
        var warnings = model.warnings
        if inexact > 0 {
            warnings.append("\(inexact) group scale\(inexact == 1 ? " was" : "s were") not exact in F16 and rounded (--allow-inexact-scales): those groups are not bit-exact")
        }
        let q4 = planned.filter { $0.descriptor.type == .q4_0 }.count
        return Report(
            files: paths, mmproj: mmproj?.path, mmprojTensors: mmproj?.plan.tensors.count, filesReused: kept.sorted().map { paths[$0] }, tensors: planned.count, q4_0Tensors: q4, bytes: total,
            inexactScales: inexact, warnings: warnings, outType: options.outType.rawValue, seconds: Date().timeIntervalSince(start))
    }

    /// One mmproj file front to back (temporary name, fsync, rename), its sources checked unchanged before commit.
    static func writeMmproj(path: String, plan: GGUFMmproj.Plan, layout: GGUFLayout, progress: @escaping (Int) -> Void) throws(GGUFConvertError) {
        let writer = try GGUFStreamWriter(path: path, progress: progress)
        var encoder = GGUFTensorEncoder(writer: writer, allowInexactScales: false)
        try writer.append(layout.header)
        for tensor in plan.tensors {
            try encoder.write(tensor)
            try writer.pad(to: layout.alignment)
        }
        var checked = Set<ObjectIdentifier>()
        for source in plan.tensors.flatMap(\.source.files) where checked.insert(ObjectIdentifier(source)).inserted {
            do { try source.file.checkUnchanged() } catch { throw GGUFConvertError.from(error, path: source.file.path) }
        }
        guard writer.position == layout.fileBytes else {
            throw .io(path: path, operation: "write", reason: "\(writer.position) bytes were produced where \(layout.fileBytes) were planned (a k2pack bug: please report it)")
        }
        _ = try writer.commit()
    }

    /// The output folder and file stem: `out.gguf` → (its folder, "out"); a folder → (it, `defaultStem`), created
    /// when missing. Never inside or holding the input, never through a link.
    static func outputLocation(_ output: String, input: String, defaultStem: String) throws(GGUFConvertError) -> (folder: String, stem: String) {
        let trimmed = OutputPaths.trimmed(output)
        var isFolder: ObjCBool = false
        let exists = FileManager.default.fileExists(atPath: trimmed, isDirectory: &isFolder)
        do {
            if trimmed.hasSuffix(".gguf"), !(exists && isFolder.boolValue) {
                let name = OutputPaths.name(of: trimmed)
                let stem = String(name.dropLast(".gguf".count))
                guard !stem.isEmpty else { throw GGUFConvertError.output(path: output, reason: "the file name has no stem before .gguf") }
                let folder = OutputPaths.folder(of: trimmed)
                try OutputPaths.checkFile(trimmed, inputs: [input])
                try OutputPaths.prepareFolder(folder, inputs: [input], existing: .shared)
                return (folder, stem)
            }
            try OutputPaths.prepareFolder(trimmed, inputs: [input], existing: .shared)
            return (trimmed, defaultStem)
        } catch let error as GGUFConvertError {
            throw error
        } catch let error as FileIOError {
            throw .from(error, path: output)
        } catch {
            throw .output(path: output, reason: "\(error)")
        }
    }

    /// `50G`, `500M`, `20K` or a plain byte count: decimal units, as gguf-split reads them (M = 1000², G = 1000³).
    public static func parseSize(_ text: String) throws(GGUFConvertError) -> Int {
        let units: [Character: Int] = ["K": 1000, "M": 1_000_000, "G": 1_000_000_000, "T": 1_000_000_000_000]
        var digits = Substring(text)
        var scale = 1
        if let last = digits.last, let unit = units[Character(last.uppercased())] {
            scale = unit
            digits = digits.dropLast()
        }
        guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }), let n = Int(digits) else {
            throw .badSize(text: text, reason: "expected a whole number with an optional K, M, G or T suffix (decimal: 50G = 50·10⁹ bytes)")
        }
        guard n > 0 else { throw .badSize(text: text, reason: "must be positive") }
        guard let bytes = CheckedMath.multiply(n, scale) else { throw .badSize(text: text, reason: "too large") }
        return bytes
    }
}
