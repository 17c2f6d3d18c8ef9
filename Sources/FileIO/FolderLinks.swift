import TensorCore
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Where the files of a checkpoint folder really are. A symlink may lead outside the folder only in the one
/// layout where that is the norm: a Hugging Face cache snapshot (`models--ORG--NAME/snapshots/REV/FILE` →
/// `../../blobs/HASH`), whose links stay inside that repository's own `blobs/`. Anything else outside is refused
/// unless the user says otherwise (`--allow-outside-symlinks`).
///
/// Every file a reader opens inside an input folder goes through `ReadOnlyFile(folder:name:)`, which checks the
/// path before opening it and the file actually opened after. Paths are compared as the bytes `realpath` returns,
/// with a `/` after the folder: as Swift `String`s, canonically equivalent names (NFC and NFD) compare equal and
/// invalid UTF-8 is repaired to U+FFFD, so a sibling folder could pass as inside.
public enum FolderLinks {
    /// Whether links out of the folder are followed (`--allow-outside-symlinks`). Set once by the command line's
    /// entry point (`runCommand`, after parsing, before any folder is opened), never by a command; read under a
    /// lock, so a change is never a data race.
    public static var allowOutside: Bool {
        get { outsidePolicy.withLock { $0 } }
        set { outsidePolicy.withLock { $0 = newValue } }
    }
    private static let outsidePolicy = Locked(false)

    /// The canonical path as bytes, or nil when it does not resolve.
    public static func resolved(_ path: String) -> [UInt8]? {
        guard let p = realpath(path, nil) else { return nil }
        defer { free(p) }
        return Array(UnsafeRawBufferPointer(start: p, count: strlen(p)))
    }

    /// The path an open descriptor refers to (from `/proc/self/fd`), or nil where that is not available.
    static func openedPath(_ fd: Int32) -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink("/proc/self/fd/\(fd)", &buffer, buffer.count - 1)
        guard n > 0, buffer[0] == UInt8(ascii: "/") else { return nil }
        return Array(buffer[..<n])
    }

    /// `path` lies strictly inside `root` (both canonical): `root` followed by `/`, compared byte for byte.
    public static func isInside(_ path: [UInt8], root: [UInt8]) -> Bool {
        if root == [UInt8(ascii: "/")] { return path.count > 1 && path.first == UInt8(ascii: "/") }
        return path.count > root.count + 1 && path[root.count] == UInt8(ascii: "/") && path.starts(with: root)
    }

    /// For a Hugging Face cache snapshot folder (`…/models--X/snapshots/REV`), its repository's `blobs/`.
    public static func snapshotBlobs(_ folder: [UInt8]) -> [UInt8]? {
        let parts = folder.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: true)
        guard parts.count >= 3, parts[parts.count - 2].elementsEqual("snapshots".utf8) else { return nil }
        let repo = parts[parts.count - 3]
        guard ["models--", "datasets--", "spaces--"].contains(where: { repo.starts(with: $0.utf8) }) else { return nil }
        var blobs: [UInt8] = []
        for part in parts.dropLast(2) { blobs += [UInt8(ascii: "/")] + part }
        return blobs + Array("/blobs".utf8)
    }

    /// Whether `target` (canonical) is a place a file of `root` (canonical) may be: inside it, or in a snapshot's
    /// own `blobs/`.
    static func allowed(_ target: [UInt8], root: [UInt8]) -> Bool {
        if isInside(target, root: root) { return true }
        if let blobs = snapshotBlobs(root), isInside(target, root: blobs) { return true }
        return false
    }

    /// Path bytes as text for messages (invalid UTF-8 shown as U+FFFD).
    public static func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

    /// Refuses `name` (a file in `folder`, possibly under subfolders) when it resolves outside the folder, other
    /// than into a snapshot's own `blobs/`. A name that does not resolve is left to `open` to report.
    public static func check(folder: String, name: String) throws(FileIOError) {
        guard !allowOutside, let root = resolved(folder), let target = resolved(folder + "/" + name) else { return }
        if !allowed(target, root: root) { throw .outsideFolder(file: name, target: text(target)) }
    }

    /// The same check on a file already open (what was opened, whatever happened to the path meanwhile).
    static func checkOpened(_ fd: Int32, folder: String, name: String) throws(FileIOError) {
        guard !allowOutside, let root = resolved(folder), let target = openedPath(fd) else { return }
        if !allowed(target, root: root) { throw .outsideFolder(file: name, target: text(target)) }
    }
}

extension ReadOnlyFile {
    /// Opens `name` inside the input folder `folder` (a plain name or a relative path such as `source/x.header`),
    /// refusing it when it resolves outside the folder (FolderLinks): checked before the open, and the file
    /// actually opened checked again after it. Every reader of a checkpoint, k2pack folder or shard set opens
    /// its files this way.
    public convenience init(folder: String, name: String) throws(FileIOError) {
        try FolderLinks.check(folder: folder, name: name)
        try self.init(path: folder + "/" + name)
        try FolderLinks.checkOpened(descriptor, folder: folder, name: name)
    }
}
