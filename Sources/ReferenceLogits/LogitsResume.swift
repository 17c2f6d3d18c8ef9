import Checkpoint
import FileIO
import Forward
import Foundation
import TensorCore

/// `k2pack logits --resume`: the run keeps, beside its temporary output, the hidden states of all windows after the
/// last finished layer (two files used in turn, `LayerCheckpoints`) and a small record saying which run they
/// belong to (the model's identity, the input's identity and the options), which layer is done and the SHA-256 of
/// its states. A run with `--resume` that finds a record for the same run continues after that layer and writes a
/// file byte-identical to an uninterrupted run's; a record for another run, or states that are not what the record
/// says, are refused with a message naming the files to remove. The record and the states are removed when the
/// output is in place.
public struct LogitsResume {
    /// What names the model (its path, a digest of its configuration, a digest of its files): `modelIdentity`.
    public var model: [String: String]
    /// Test hook, called after each layer's record is written: throwing stops the run there, as a kill would.
    public var afterLayer: ((Int) throws -> Void)?

    public init(model: [String: String], afterLayer: ((Int) throws -> Void)? = nil) {
        self.model = model
        self.afterLayer = afterLayer
    }

    /// The files of the resumable run writing `path`: the record and the two state files, hidden beside it.
    public struct Files: Sendable, Equatable {
        public var record: String
        public var states: (String, String)

        public init(output path: String) {
            let folder = OutputPaths.folder(of: path), name = OutputPaths.name(of: path)
            let prefix = (folder == "." && !path.hasPrefix("./") ? "" : (folder == "/" ? "/" : folder + "/")) + "." + name + ".resume"
            record = prefix + ".json"
            states = (prefix + "-state-0", prefix + "-state-1")
        }

        public var all: [String] { [record, states.0, states.1] }

        public static func == (a: Files, b: Files) -> Bool { a.all == b.all }
    }

    /// What the record holds.
    struct Record: Codable, Equatable {
        var version: Int
        /// The model's, the input's and the options' identity: a record is used only when all of it matches.
        var identity: [String: String]
        /// The last layer all windows went through.
        var layer: Int
        /// The state file holding that layer's output (its name), its length and SHA-256.
        var states: String
        var bytes: Int
        var sha256: String
    }

    static let version = 1
    /// A record is a few hundred bytes; anything much larger is not one.
    static let recordLimit = 1 << 20

    /// The model's identity for the record: the path as given and resolved, a digest of the forward configuration
    /// and dequantization the pass runs with, and a digest of the model's files (names, lengths, modification
    /// times; the file itself when the model is one file): a changed or replaced checkpoint does not match.
    public static func modelIdentity(path: String, pass: any LanguageModelPass) -> [String: String] {
        let resolved = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
        let config = "\(pass.forward) \(pass.dequant)"
        var listing: [String] = []
        let manager = FileManager.default
        var isFolder: ObjCBool = false
        if manager.fileExists(atPath: resolved, isDirectory: &isFolder), isFolder.boolValue {
            for name in ((try? manager.contentsOfDirectory(atPath: resolved)) ?? []).sorted() {
                listing.append(describe(resolved + "/" + name, as: name))
            }
        } else {
            listing.append(describe(resolved, as: OutputPaths.name(of: resolved)))
        }
        return ["model": resolved, "model_config_sha256": digest(Array(config.utf8)), "model_files_sha256": digest(Array(listing.joined(separator: "\n").utf8))]
    }

    static func describe(_ path: String, as name: String) -> String {
        var info = stat()
        guard stat(path, &info) == 0 else { return "\(name) unreadable" }
        return "\(name) \(info.st_size) \(info.st_mtim.tv_sec).\(info.st_mtim.tv_nsec)"
    }

    static func digest(_ bytes: [UInt8]) -> String { bytes.withUnsafeBytes { SHA256Digest.hex(of: $0) } }

    /// The run's whole identity: the model's, the input's (ids, windows and their numbers) and the options that
    /// change the output (form, group, windows per batch).
    static func identity(model: [String: String], input: TokenWindows, form: LogitsReference.Form, group: String, windowsPerBatch: Int) -> [String: String] {
        var out = model
        out["ids_sha256"] = input.ids.withUnsafeBytes { SHA256Digest.hex(of: $0) }
        out["windows"] = String(input.windows)
        out["ctx"] = String(input.tokens)
        out["window_index_sha256"] = digest(Array(input.indices.map { String($0) }.joined(separator: ",").utf8))
        switch form {
        case .full: out["form"] = "full"
        case .compact(let k): out["form"] = "compact top \(k)"
        }
        out["group"] = group
        out["windows_per_batch"] = String(windowsPerBatch)
        return out
    }

    /// The layer to resume after, from the record at `files.record` (nil when there is none), after checking that
    /// it belongs to this run and that its state file is whole.
    static func resumePoint(files: Files, identity: [String: String], layers: Int, stateBytes: Int) throws -> Int? {
        let manager = FileManager.default
        guard manager.fileExists(atPath: files.record) else { return nil }
        let record: Record
        do {
            let file = try ReadOnlyFile(path: files.record)
            guard file.byteCount <= recordLimit else { throw LogitsError.resumeRecord(record: files.record, reason: "\(file.byteCount) bytes, more than a record's \(recordLimit)") }
            record = try JSONDecoder().decode(Record.self, from: Data(try file.readAll()))
        } catch let error as LogitsError {
            throw error
        } catch {
            throw LogitsError.resumeRecord(record: files.record, reason: "not a k2pack logits record (\(error))")
        }
        guard record.version == version else { throw LogitsError.resumeRecord(record: files.record, reason: "version \(record.version), expected \(version)") }
        for key in Set(record.identity.keys).union(identity.keys).sorted() where record.identity[key] != identity[key] {
            throw LogitsError.resumeMismatch(record: files.record, key: key, found: record.identity[key] ?? "absent", expected: identity[key] ?? "absent")
        }
        guard (0..<layers).contains(record.layer) else {
            throw LogitsError.resumeRecord(record: files.record, reason: "layer \(record.layer), expected 0 to \(layers - 1)")
        }
        let checkpoints = LayerCheckpoints(files: files.states, resumeAfter: record.layer) { _, _ in }
        let path = checkpoints.file(after: record.layer)
        guard record.states == OutputPaths.name(of: path) else {
            throw LogitsError.resumeRecord(record: files.record, reason: "states in \(displayed(record.states)), expected \(displayed(OutputPaths.name(of: path))) for layer \(record.layer)")
        }
        var info = stat()
        guard stat(path, &info) == 0 else { throw LogitsError.resumeState(file: path, reason: "missing (\(String(cString: strerror(errno))))") }
        guard Int(info.st_size) == stateBytes, record.bytes == stateBytes else {
            throw LogitsError.resumeState(file: path, reason: "\(info.st_size) bytes, expected \(stateBytes) (the record says \(record.bytes))")
        }
        let sha = try ReadOnlyFile(path: path).sha256Hex()
        guard sha == record.sha256 else { throw LogitsError.resumeState(file: path, reason: "SHA-256 \(sha), the record says \(record.sha256)") }
        return record.layer
    }

    /// Writes the record for `layer`, whose states are whole and flushed in `path` (atomically: a kill leaves the
    /// previous record or this one).
    static func write(files: Files, identity: [String: String], layer: Int, path: String, bytes: Int) throws {
        let record = Record(
            version: version, identity: identity, layer: layer, states: OutputPaths.name(of: path), bytes: bytes,
            sha256: try ReadOnlyFile(path: path).sha256Hex())
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        try AtomicFile.write(Array(try encoder.encode(record)), to: files.record)
    }

    /// Removes the record first, then the states (the output is in place).
    static func remove(_ files: Files) {
        for path in files.all { unlink(path) }
    }
}

extension LogitsError {
    /// What to do about a resume record or state file that cannot be used: the three files to remove.
    static func startAfresh(_ file: String) -> String {
        let prefix = file.hasSuffix(".json") ? String(file.dropLast(5)) : String(file[..<(file.range(of: "-state-", options: .backwards)?.lowerBound ?? file.endIndex)])
        return "remove \(displayed(prefix)).json and \(displayed(prefix))-state-0/-1 to start afresh"
    }
}
