import Foundation
#if canImport(Glibc)
import Glibc
#endif
import TensorCore

/// Where writers may write: the one set of checks every writer's output goes through (convert, export,
/// quantize, dequantize, shard, shard --merge, parity --plot), together with `AtomicFile` for each file.
///
/// - An output never overlaps an input: it is not an input, not inside one, and holds none (paths compared
///   resolved, as bytes: `realpath`, not Swift `String` equality, which would equate NFC and NFD spellings).
/// - An output folder or a folder made inside one is a real folder: a symbolic link at its name is refused,
///   never followed, and so is anything that is not a folder.
public enum OutputPaths {
    /// `path` resolved (`realpath`) as bytes. A path that does not exist yet resolves through its nearest
    /// existing ancestor, the rest appended (`.` and `..` applied to the part that does not exist, which the
    /// writer will create as plain folders). nil when it cannot be resolved (a dangling or looping link, no access).
    public static func resolved(_ path: String) -> [UInt8]? {
        let absolute = path.utf8.first == PathBytes.slash ? path : FileManager.default.currentDirectoryPath + "/" + path
        // Components split on the byte `/` (PathBytes): a `/` followed by a combining mark is still a separator.
        var existing = PathBytes.components(absolute).filter { !$0.isEmpty }
        var rest: [String] = []
        while true {
            let candidate = "/" + existing.joined(separator: "/")
            if var bytes = FolderLinks.resolved(candidate) {
                for component in rest {
                    switch Array(component.utf8) {
                    case [0x2E]: continue
                    case [0x2E, 0x2E]:
                        if let slash = bytes.lastIndex(of: PathBytes.slash) { bytes.removeSubrange(max(slash, 1)...) }
                    default:
                        if bytes != [PathBytes.slash] { bytes.append(PathBytes.slash) }
                        bytes += Array(component.utf8)
                    }
                }
                return bytes
            }
            // Only a name with nothing at it may be resolved through its parent; a dangling link may not.
            var st = stat()
            guard errno == ENOENT, lstat(candidate, &st) != 0, let last = existing.popLast() else { return nil }
            rest.insert(last, at: 0)
        }
    }

    /// `inner` is `outer` or lies inside it (resolved paths as bytes; `FolderLinks.isInside`).
    static func isWithin(_ inner: [UInt8], _ outer: [UInt8]) -> Bool {
        inner == outer || FolderLinks.isInside(inner, root: outer)
    }

    static func text(_ bytes: [UInt8]) -> String { FolderLinks.text(bytes) }

    /// Refuses an output (folder or file) that is one of `inputs`, lies inside one, or holds one.
    public static func refuseOverlap(output: String, inputs: [String]) throws(FileIOError) {
        guard let out = resolved(output) else {
            throw .io(path: output, operation: "write there", reason: "the path does not resolve (a dangling or looping symbolic link, or no permission)")
        }
        for input in inputs {
            guard let inp = resolved(input) else { continue }
            if out == inp {
                throw .io(path: output, operation: "write there", reason: "it is the input \(input) itself; choose another path")
            }
            if isWithin(out, inp) {
                throw .io(path: output, operation: "write there", reason: "it lies inside the input \(input) (\(text(inp))); choose a path outside it")
            }
            if isWithin(inp, out) {
                throw .io(path: output, operation: "write there", reason: "it holds the input \(input) (\(text(inp))); choose a path that does not contain it")
            }
        }
    }

    /// What an existing output folder may hold.
    public enum Existing: Sendable {
        /// It must be empty (a fresh write).
        case empty
        /// Earlier files may be there (`convert --resume`).
        case resumable
        /// Other processes' files may be there (one rank of a shard set).
        case shared
    }

    /// Checks and, when it does not exist, creates an output folder: never one of `inputs` or overlapping one,
    /// never a link (refused, not followed), never something other than a folder; empty unless `existing` allows.
    public static func prepareFolder(_ output: String, inputs: [String], existing: Existing) throws(FileIOError) {
        let path = trimmed(output)
        try refuseOverlap(output: path, inputs: inputs)
        var st = stat()
        if lstat(path, &st) == 0 {
            try requireFolder(path, st)
            if existing == .empty {
                let contents: [String]
                do { contents = try FileManager.default.contentsOfDirectory(atPath: path) } catch {
                    throw .io(path: path, operation: "list the folder", reason: error.localizedDescription)
                }
                if !contents.isEmpty { throw .outputExists(path: output) }
            }
            return
        }
        guard errno == ENOENT else { throw .io(path: path, operation: "examine the folder", reason: errnoText()) }
        let parent = folder(of: path)
        if parent != ".", parent != "/" {
            do { try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true) } catch {
                // Foundation's own description is a dump of its error domain; its localized text is the clear part.
                throw .io(path: output, operation: "create the folder", reason: error.localizedDescription)
            }
        }
        try makeFolder(path)
    }

    /// Creates a folder inside an output folder (`source/`), or accepts one that is already a real folder
    /// (another process of a shard set, or an earlier run); a link or anything else at its name is refused.
    public static func makeFolder(_ path: String) throws(FileIOError) {
        if mkdir(path, 0o755) == 0 { return }
        guard errno == EEXIST else { throw .io(path: path, operation: "create the folder", reason: errnoText()) }
        var st = stat()
        guard lstat(path, &st) == 0 else { throw .io(path: path, operation: "create the folder", reason: errnoText()) }
        try requireFolder(path, st)
    }

    /// A real folder: not a link (even to a folder), not a file or special file.
    static func requireFolder(_ path: String, _ st: stat) throws(FileIOError) {
        switch st.st_mode & S_IFMT {
        case S_IFDIR: return
        case S_IFLNK:
            throw .io(path: path, operation: "write there", reason: "it is a symbolic link\(linkTarget(path)); k2pack does not write through links: name the real folder")
        default:
            throw .io(path: path, operation: "write there", reason: "it exists and is not a folder")
        }
    }

    /// Checks a single output file (`parity --plot`): not a link, folder, device or other special file, and not
    /// one of `inputs` or inside one. Its folder must exist.
    public static func checkFile(_ output: String, inputs: [String]) throws(FileIOError) {
        try refuseOverlap(output: output, inputs: inputs)
        var st = stat()
        if lstat(output, &st) == 0 {
            if let problem = notRegular(st, path: output) { throw .io(path: output, operation: "write there", reason: problem) }
        } else if errno != ENOENT {
            throw .io(path: output, operation: "write there", reason: errnoText())
        }
    }

    /// Why an existing final name must not be replaced, or nil for a regular file.
    static func notRegular(_ st: stat, path: String) -> String? {
        switch st.st_mode & S_IFMT {
        case S_IFREG: nil
        case S_IFLNK: "it is a symbolic link\(linkTarget(path)); k2pack never writes through or over a link"
        case S_IFDIR: "it is a folder"
        case S_IFCHR, S_IFBLK: "it is a device, not a regular file"
        default: "it is a FIFO or socket, not a regular file"
        }
    }

    /// " (to TARGET)" for a link, or "".
    static func linkTarget(_ path: String) -> String {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink(path, &buffer, buffer.count - 1)
        guard n > 0 else { return "" }
        return " (to " + String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) + ")"
    }

    /// Checks an output folder without creating it: what `prepareFolder(existing: .empty)` would refuse.
    public static func checkFolder(_ output: String, inputs: [String]) throws(FileIOError) {
        let path = trimmed(output)
        try refuseOverlap(output: path, inputs: inputs)
        var st = stat()
        guard lstat(path, &st) == 0 else { return }
        try requireFolder(path, st)
        if let contents = try? FileManager.default.contentsOfDirectory(atPath: path), !contents.isEmpty { throw .outputExists(path: output) }
    }

    /// The folder part of a path ("." for a bare name, "/" for a name in the root), split on the byte `/`
    /// (`PathBytes.parent`). Not `NSString`'s `deletingLastPathComponent`, which traps on some one-character paths.
    public static func folder(of path: String) -> String {
        let p = trimmed(path)
        guard p.utf8.contains(PathBytes.slash) else { return "." }
        let parent = PathBytes.parent(of: p)
        return parent.isEmpty ? "/" : parent
    }

    /// The last component of a path (after the last byte `/`).
    public static func name(of path: String) -> String { PathBytes.lastComponent(trimmed(path)) }

    /// The path without trailing slashes (`out/` would follow a link at `out`), as bytes.
    public static func trimmed(_ path: String) -> String {
        var bytes = Array(path.utf8)
        while bytes.count > 1, bytes.last == PathBytes.slash { bytes.removeLast() }
        return String(decoding: bytes, as: UTF8.self)
    }
}
