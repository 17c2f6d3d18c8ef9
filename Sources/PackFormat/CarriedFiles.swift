import Checkpoint
import FileIO
import Foundation
import TensorCore
#if canImport(Glibc)
import Glibc
#endif

/// A file of a checkpoint folder that holds no tensors (tokenizer, chat template, generation config, remote
/// code, README, LICENSE, `docs/`, `figures/`, …), carried byte for byte by every writer and recorded in the
/// folder record with its size and SHA-256.
public struct CarriedFile: Codable, Sendable, Equatable {
    /// Its path relative to the folder, components joined by `/`.
    public var path: String
    public var size: Int
    /// SHA-256 of its bytes, 64 lowercase hex digits.
    public var sha256: String

    enum CodingKeys: String, CodingKey, CaseIterable { case path, size, sha256 }

    public init(path: String, size: Int, sha256: String) {
        self.path = path
        self.size = size
        self.sha256 = sha256
    }
}

/// Finding, copying and checking carried files. One implementation for `convert`, `export`, `shard`,
/// `shard --merge`, `quantize` and `dequantize` (docs/FORMAT.md, "Carried files").
public enum CarriedFiles {
    /// Bounds on a folder walk: a hostile tree cannot make us list without end.
    public static let maxFiles = 100_000
    public static let maxDepth = 32
    /// Folders in which other tools keep their own state (git, huggingface_hub's `--local-dir` metadata): not
    /// part of the checkpoint, never carried.
    public static let toolFolders: Set<String> = [".git", ".cache"]

    /// The carried files of a Hugging Face checkpoint folder: every file in it and its sub-folders except the
    /// checkpoint's own records (its shards, the index, config.json, any other top-level `.safetensors` file),
    /// tool state (`toolFolders`) and writers' temporary files (`.NAME.partial`). Sorted by path (as bytes).
    /// Refuses a special file (FIFO, device, socket), a symlink to a folder, and a symlink leading out of the
    /// folder (`FolderLinks`), naming it.
    public static func list(checkpoint dir: CheckpointDirectory) throws -> [String] {
        let own = Set(dir.shardNames.map { Array($0.utf8) } + [Array(ShardIndex.fileName.utf8), Array(CheckpointDirectory.configFileName.utf8)])
        return try list(folder: dir.path) { name in own.contains(Array(name.utf8)) || name.hasSuffix(".safetensors") }
    }

    /// Every carried file under `folder`, except top-level names for which `skipTopLevel` is true.
    public static func list(folder: String, skipTopLevel: (String) -> Bool) throws -> [String] {
        var found: [String] = []
        func walk(_ relative: String, depth: Int) throws {
            guard depth <= maxDepth else {
                throw PackError.io(path: folder + "/" + relative, operation: "carry", reason: "folders nested deeper than \(maxDepth) levels")
            }
            let here = relative.isEmpty ? folder : folder + "/" + relative
            let names: [String]
            do { names = try FileManager.default.contentsOfDirectory(atPath: here) } catch {
                throw PackError.io(path: here, operation: "list", reason: error.localizedDescription)
            }
            for name in names.sorted(by: { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }) {
                if relative.isEmpty, skipTopLevel(name) || toolFolders.contains(name) { continue }
                if name.hasPrefix("."), name.hasSuffix(".partial") { continue }
                let path = relative.isEmpty ? name : relative + "/" + name
                let full = folder + "/" + path
                var st = stat()
                guard lstat(full, &st) == 0 else {
                    throw PackError.io(path: full, operation: "stat", reason: String(cString: strerror(errno)))
                }
                var kind = st.st_mode & S_IFMT
                if kind == S_IFLNK {
                    try FolderLinks.check(folder: folder, name: path)
                    guard stat(full, &st) == 0 else {
                        throw PackError.io(path: full, operation: "carry", reason: "a symlink whose target cannot be read (\(String(cString: strerror(errno))))")
                    }
                    kind = st.st_mode & S_IFMT
                    guard kind != S_IFDIR else {
                        throw PackError.io(path: full, operation: "carry", reason: "a symlink to a folder; replace it with the folder itself")
                    }
                }
                switch kind {
                case S_IFDIR: try walk(path, depth: depth + 1)
                case S_IFREG:
                    found.append(path)
                    guard found.count <= maxFiles else {
                        throw PackError.io(path: folder, operation: "carry", reason: "more than \(maxFiles) files besides the tensors")
                    }
                default:
                    throw PackError.io(path: full, operation: "carry", reason: "\(kindName(kind)), not a regular file")
                }
            }
        }
        try walk("", depth: 0)
        return found
    }

    static func kindName(_ kind: mode_t) -> String {
        switch kind {
        case S_IFIFO: "a FIFO"
        case S_IFCHR: "a character device"
        case S_IFBLK: "a block device"
        case S_IFSOCK: "a socket"
        default: "a special file"
        }
    }

    /// Copies `path` from folder `source` to folder `destination` (sub-folders created as needed, the file
    /// written atomically), computing its SHA-256 as it goes. With `expected`, a file whose size or SHA-256
    /// differs is refused before it is renamed into place. Returns what was copied.
    @discardableResult
    public static func copy(_ path: String, from source: String, to destination: String, expected: CarriedFile? = nil) throws -> CarriedFile {
        let input = try ReadOnlyFile(folder: source, name: path)
        if let expected, expected.size != input.byteCount {
            throw PackError.io(path: source + "/" + path, operation: "carry", reason: changed(expected, size: input.byteCount, sha256: nil))
        }
        let target = destination + "/" + path
        // Sub-folders one at a time, each a real folder: a link planted at one of their names is refused, not
        // followed out of the destination.
        var folder = destination
        for part in PathBytes.components(path).dropLast() where !part.isEmpty {
            folder += "/" + part
            try OutputPaths.makeFolder(folder)
        }
        let output = try AtomicFile(path: target)
        let digest = SHA256Digest()
        var at = 0
        try input.copyPieces(of: 0..<input.byteCount) { piece in
            digest.update(piece)
            try output.write(piece, at: at)
            at += piece.count
        }
        let copied = CarriedFile(path: path, size: input.byteCount, sha256: digest.finalizeHex())
        if let expected, expected.sha256 != copied.sha256 {
            throw PackError.io(path: source + "/" + path, operation: "carry", reason: changed(expected, size: copied.size, sha256: copied.sha256))
        }
        try output.commit()
        return copied
    }

    /// Copies every file of a record, each checked against its size and SHA-256.
    public static func copy(_ files: [CarriedFile], from source: String, to destination: String) throws {
        for file in files { try copy(file.path, from: source, to: destination, expected: file) }
    }

    /// Each recorded file as found in `folder`: nil when it matches its size and SHA-256, otherwise why not.
    public static func check(_ files: [CarriedFile], in folder: String) -> [(file: CarriedFile, problem: String)] {
        files.compactMap { file in
            do {
                let input = try ReadOnlyFile(folder: folder, name: file.path)
                guard input.byteCount == file.size else { return (file, changed(file, size: input.byteCount, sha256: nil)) }
                let actual = try input.sha256Hex()
                return actual == file.sha256 ? nil : (file, changed(file, size: input.byteCount, sha256: actual))
            } catch {
                return (file, "carried file cannot be read: \(error)")
            }
        }
    }

    static func changed(_ file: CarriedFile, size: Int, sha256: String?) -> String {
        if size != file.size { return "carried file changed: \(size) bytes, the folder record says \(file.size)" }
        return "carried file changed: SHA-256 \(sha256 ?? "?"), the folder record says \(displayed(file.sha256))"
    }

    /// Removes what a failed writer carried into `folder` (a folder that was new or empty), and the sub-folders
    /// it made when they are left empty.
    public static func remove(_ paths: [String], from folder: String) {
        // Compared as bytes: NFC and NFD spellings are two folders.
        var parents: Set<[UInt8]> = []
        for path in paths {
            unlink(folder + "/" + path)
            var parent = PathBytes.parent(of: path)
            while !parent.isEmpty {
                parents.insert(Array(parent.utf8))
                parent = PathBytes.parent(of: parent)
            }
        }
        // Deepest first, so a folder's children go before it.
        for parent in parents.sorted(by: { $0.count > $1.count }) { rmdir(folder + "/" + String(decoding: parent, as: UTF8.self)) }
    }

    /// Why `paths` cannot be a record's carried files, or nil: each component a plain name (not empty, `.`,
    /// `..`, and without `\` or NUL), each path once (as bytes), no path inside another (a file cannot also be
    /// a folder), and no top-level name in `reserved` (compared as bytes): the names the folder, or the folder a
    /// reader writes from it, uses for its own files.
    public static func problem(paths: [String], reserved: [String]) -> String? {
        let reservedBytes = Set(reserved.map { Array($0.utf8) })
        var seen: Set<[UInt8]> = []
        for path in paths {
            let parts = PathBytes.components(path)
            guard parts.allSatisfy(PathBytes.isPlainName) else { return "carried file \"\(displayed(path))\" is not a plain relative path inside the folder" }
            guard !reservedBytes.contains(Array(parts[0].utf8)) else {
                return "carried file \"\(displayed(path))\" takes the name \"\(displayed(parts[0]))\", which the folder uses for its own records"
            }
            guard seen.insert(Array(path.utf8)).inserted else { return "carried file \"\(displayed(path))\" is listed twice" }
        }
        for path in paths {
            var parent = PathBytes.parent(of: path)
            while !parent.isEmpty {
                if seen.contains(Array(parent.utf8)) { return "carried file \"\(displayed(parent))\" is also a folder holding \"\(displayed(path))\"" }
                parent = PathBytes.parent(of: parent)
            }
        }
        return nil
    }
}

/// The first time a writer needs a stored tensor, reads it whole as one sequential stream (a stack at once, not
/// one expert's slice at a time) and checks its xxHash64: export and merge never write bytes a checksum does not
/// vouch for. The copy that follows reads them again from the page cache.
public final class ChecksumOnce: @unchecked Sendable {
    private let lock = NSLock()
    private var seen: Set<[Int]> = []

    public init() {}

    /// `index` identifies `pack` among the writer's files.
    public func check(_ index: Int, _ pack: PackFile, _ tensor: PackTensor) throws {
        lock.lock()
        let first = seen.insert([index, tensor.offset]).inserted
        lock.unlock()
        guard first else { return }
        let actual = try pack.checksum(of: tensor)
        guard actual == tensor.xxh64 else {
            throw PackError.checksumMismatch(file: pack.name, tensor: tensor.name, expected: tensor.xxh64, actual: actual)
        }
    }
}
