import Foundation

/// What a folder given to a command holds, read from its records (each written last, so its presence means its
/// writer finished), never guessed from file names. The one place this is decided: `verify`, `inspect` and the
/// forward pass's model store all ask here.
public enum FolderKind: String, Sendable, Equatable, CaseIterable {
    /// `shards.json`: the root of a shard set.
    case shardSet = "shard set"
    /// `k2pack.json`: a converted folder, or one rank of a shard set.
    case pack = "k2pack folder"
    /// Neither record: a Hugging Face checkpoint (or no model folder at all; its reader says which).
    case huggingFace = "Hugging Face checkpoint"

    public init(folder path: String) {
        let files = FileManager.default
        if files.fileExists(atPath: path + "/" + PackManifest.setFileName) {
            self = .shardSet
        } else if files.fileExists(atPath: path + "/" + PackManifest.fileName) {
            self = .pack
        } else {
            self = .huggingFace
        }
    }
}
