import Checkpoint
import FileIO
import Foundation
import GGUF
import JSONCore
import TensorCore

/// The output's files as llama.cpp's `gguf-split --split-max-size` makes them (tools/gguf-split): tensors in
/// order, a new part started when the next tensor's padded size would take the current part's tensor data past
/// the limit (a tensor larger than the limit gets a part of its own); the first part holds every metadata key,
/// the others none; every part then gets `split.no` (u16, 0-based), `split.count` (u16) and
/// `split.tensors.count` (i32, the total). Names `STEM-00001-of-0000N.gguf`. One part is written as a plain
/// file `STEM.gguf` without split keys.
struct GGUFSplitPlan {
    /// Tensor indices of each part.
    let members: [[Int]]
    let layouts: [GGUFLayout]

    static let splitNo = "split.no"
    static let splitCount = "split.count"
    static let splitTensorsCount = "split.tensors.count"

    init(metadata: [GGUFKeyValue], tensors: [GGUFTensorDescriptor], maxBytes: Int?) throws(GGUFConvertError) {
        // Sizes and name checks first (one layout over everything).
        let whole = try GGUFLayout(metadata: metadata, tensors: tensors)
        var members: [[Int]] = [[]]
        if let maxBytes {
            var current = 0
            for (i, size) in whole.byteCounts.enumerated() {
                let padded = size + (whole.alignment - size % whole.alignment) % whole.alignment
                if !members[members.count - 1].isEmpty, current + padded > maxBytes {
                    members.append([])
                    current = 0
                }
                members[members.count - 1].append(i)
                current += padded
            }
        } else {
            members = [Array(tensors.indices)]
        }
        guard members.count > 1 else {
            self.members = members
            layouts = [whole]
            return
        }
        guard members.count <= Int(UInt16.max), tensors.count <= Int(Int32.max) else {
            throw .badSize(text: "\(maxBytes ?? 0)", reason: "gives \(members.count) parts; GGUF split sets hold at most \(UInt16.max)")
        }
        var layouts: [GGUFLayout] = []
        for (p, part) in members.enumerated() {
            let keys = [
                GGUFKeyValue(key: Self.splitNo, value: .u16(UInt16(p))),
                GGUFKeyValue(key: Self.splitCount, value: .u16(UInt16(members.count))),
                GGUFKeyValue(key: Self.splitTensorsCount, value: .i32(Int32(tensors.count))),
            ]
            layouts.append(try GGUFLayout(metadata: (p == 0 ? metadata : []) + keys, tensors: part.map { tensors[$0] }))
        }
        self.members = members
        self.layouts = layouts
    }

    func fileNames(stem: String) -> [String] {
        guard layouts.count > 1 else { return [stem + ".gguf"] }
        return layouts.indices.map { GGUFSplitName(prefix: stem, number: $0 + 1, count: layouts.count).fileName }
    }

    /// What identifies the planned output: the SHA-256 of every part's header (keys, names, types, shapes,
    /// offsets) and of the options that change data bytes without changing a header.
    func fingerprint(allowInexactScales: Bool) -> String {
        let digest = SHA256Digest()
        for layout in layouts {
            layout.header.withUnsafeBytes { digest.update($0) }
        }
        Array((allowInexactScales ? "inexact-rounded" : "exact").utf8).withUnsafeBytes { digest.update($0) }
        return digest.finalizeHex()
    }
}

/// The small record kept next to the output (`.STEM.gguf.k2pack-resume.json`): the plan's fingerprint and, for each
/// part finished so far, its file name, length, SHA-256 (computed while it was written) and rounded scales. `--resume` keeps a
/// part only when the plan is the same and the file's length and SHA-256 still match.
struct GGUFResumeRecord: Codable, Equatable {
    struct Part: Codable, Equatable {
        var file: String
        var bytes: Int
        var sha256: String
        /// Scales rounded in it (`--allow-inexact-scales`), reported again when the part is kept.
        var inexactScales: Int

        enum CodingKeys: String, CodingKey, CaseIterable {
            case file, bytes, sha256
            case inexactScales = "inexact_scales"
        }
    }

    var plan: String
    var parts: [Part]

    enum CodingKeys: String, CodingKey, CaseIterable { case plan, parts }

    /// The record at `path`, or nil when there is none or it cannot be read (then nothing is kept: every part is
    /// written again, and the record replaced).
    static func read(_ path: String) -> GGUFResumeRecord? {
        guard let bytes = try? ReadOnlyFile(path: path).readAll() else { return nil }
        return try? StrictJSON.decode(GGUFResumeRecord.self, from: bytes)
    }

    func write(_ path: String) throws(GGUFConvertError) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data: Data
        do {
            data = try encoder.encode(self)
        } catch {
            throw .io(path: path, operation: "encode the resume record", reason: "\(error)")
        }
        do {
            try AtomicFile.write(Array(data), to: path)
        } catch {
            throw .from(error, path: path)
        }
    }

    /// Whether the file at `path` is `bytes` long and hashes to `sha256` (read in pieces, dropped after use).
    static func matches(path: String, bytes: Int, sha256: String) -> Bool {
        guard let file = try? ReadOnlyFile(path: path), file.byteCount == bytes else { return false }
        let digest = SHA256Digest()
        do {
            try file.copyPieces(of: 0..<bytes) { digest.update($0) }
        } catch {
            return false
        }
        return digest.finalizeHex() == sha256
    }
}
