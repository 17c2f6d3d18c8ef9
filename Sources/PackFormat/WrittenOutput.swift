import Checkpoint

/// What a writer of a Hugging Face folder (export, merge, quantize, dequantize) puts into its output folder, a
/// folder that was new or empty: removed as a whole after any failure, so no folder is left that looks finished
/// (shards, index and config.json) but lacks some of its files.
public enum WrittenOutput {
    /// Removes the shards, the index, config.json and the carried files with the sub-folders made for them.
    /// Names that were never written are skipped.
    public static func remove(shards: [String], carried: [String], from output: String) {
        CarriedFiles.remove(shards + [ShardIndex.fileName, CheckpointDirectory.configFileName] + carried, from: output)
    }

}
