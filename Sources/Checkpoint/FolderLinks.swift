import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Where the files of a checkpoint folder really are. A symlink may lead outside the folder only in the one
/// layout where that is the norm: a Hugging Face cache snapshot (`models--ORG--NAME/snapshots/REV/FILE` →
/// `../../blobs/HASH`), whose links stay inside that repository's own `blobs/`. Anything else outside is refused
/// unless the user says otherwise (`--allow-outside-symlinks`).
public enum FolderLinks {
    /// Set once by the command line, before any folder is opened.
    nonisolated(unsafe) public static var allowOutside = false

    /// The canonical path, or nil when it does not resolve.
    static func resolved(_ path: String) -> String? {
        guard let p = realpath(path, nil) else { return nil }
        defer { free(p) }
        return String(cString: p)
    }

    /// For a Hugging Face cache snapshot folder (`…/models--X/snapshots/REV`), its repository's `blobs/`.
    static func snapshotBlobs(_ folder: String) -> String? {
        let parts = folder.split(separator: "/", omittingEmptySubsequences: true)
        guard parts.count >= 3, parts[parts.count - 2] == "snapshots", parts[parts.count - 3].hasPrefix("models--")
            || parts[parts.count - 3].hasPrefix("datasets--") || parts[parts.count - 3].hasPrefix("spaces--")
        else { return nil }
        return "/" + parts.dropLast(2).joined(separator: "/") + "/blobs"
    }

    /// Refuses `name` (a file in `folder`) when it resolves outside the folder, other than into a snapshot's
    /// own `blobs/`.
    public static func check(folder: String, name: String) throws(CheckpointError) {
        guard !allowOutside, let root = resolved(folder), let target = resolved(folder + "/" + name) else { return }
        if target.hasPrefix(root + "/") { return }
        if let blobs = snapshotBlobs(root), target.hasPrefix(blobs + "/") { return }
        throw .outsideFolder(file: name, target: target)
    }

    /// In a Hugging Face cache snapshot, each large file links to a blob named by its SHA-256: those names, as a
    /// checksum list, for the given files (nil when the folder is not a snapshot or no file links that way).
    public static func blobDigests(folder: String, names: [String]) -> ChecksumList? {
        guard let root = resolved(folder), let blobs = snapshotBlobs(root) else { return nil }
        var digests: [String: String] = [:]
        for name in names {
            guard let target = resolved(folder + "/" + name), target.hasPrefix(blobs + "/") else { continue }
            let blob = String(target.dropFirst(blobs.count + 1))
            if blob.count == 64, blob.allSatisfy({ $0.isHexDigit && !$0.isUppercase }) { digests[name] = blob }
        }
        return digests.isEmpty ? nil : ChecksumList(digests: digests)
    }
}
