/// How deeply nested a JSON document may be, per kind of document: the bound every reader passes to
/// `JSONScanner` / `JSONDocument.parse`, named once (docs/RELIABILITY.md, "bounded memory on hostile headers").
public enum JSONDepth {
    /// A document with no tighter bound of its own (tokenizer files, manifests, `--scheme` files, id lists).
    public static let standard = 64
    /// `config.json` (nested `text_config`, `quantization_config` groups).
    public static let config = 32
    /// A safetensors header (tensor entries and `__metadata__`, two levels deep).
    public static let safetensorsHeader = 16
    /// `model.safetensors.index.json` (`weight_map` and `metadata`).
    public static let shardIndex = 8
}
