import Foundation

/// A copy of k25-tiny (in `dir`) whose last two shards are renamed to the NFC and the NFD spelling of one name
/// (`café.safetensors` as U+00E9, and as `e` + U+0301): two files to the file system, canonically equal Swift
/// Strings. The index is rewritten byte for byte to name them. Returns the folder and, for each new name, the
/// original shard's bytes.
public func normalizationTwins(in dir: TemporaryDirectory) throws -> (folder: String, shards: [(name: String, bytes: Data)]) {
    let folder = dir.copy(fixture: "k25-tiny")
    let renames = [
        ("model-00005-of-000006.safetensors", "caf\u{E9}.safetensors"),
        ("model-00006-of-000006.safetensors", "cafe\u{301}.safetensors"),
    ]
    let indexPath = folder + "/model.safetensors.index.json"
    var index = Array(try Data(contentsOf: URL(fileURLWithPath: indexPath)))
    var shards: [(name: String, bytes: Data)] = []
    for (old, new) in renames {
        let bytes = try Data(contentsOf: URL(fileURLWithPath: folder + "/" + old))
        try FileManager.default.removeItem(atPath: folder + "/" + old)
        guard FileManager.default.createFile(atPath: folder + "/" + new, contents: bytes) else {
            throw CocoaError(.fileWriteUnknown)
        }
        shards.append((new, bytes))
        index = replacing(Array(old.utf8), with: Array(new.utf8), in: index)
    }
    try Data(index).write(to: URL(fileURLWithPath: indexPath))
    return (folder, shards)
}

/// `bytes` with every occurrence of `old` replaced by `new` (as bytes: no Unicode normalization on the way).
public func replacing(_ old: [UInt8], with new: [UInt8], in bytes: [UInt8]) -> [UInt8] {
    var out: [UInt8] = []
    var i = 0
    while i < bytes.count {
        if bytes[i...].starts(with: old) {
            out += new
            i += old.count
        } else {
            out.append(bytes[i])
            i += 1
        }
    }
    return out
}
