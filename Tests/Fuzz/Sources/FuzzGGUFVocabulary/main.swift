import Foundation
import FuzzSupport
import GGUF
import GGUFConvert

/// The tokenizer's GGUF metadata (`convert --to gguf`) from untrusted tokenizer files. The first byte picks what the
/// rest is, written into a scratch model folder with a fixed config.json (vocab_size 512):
///   0: a Hugging Face tokenizer.json (the DeepSeek-V3 path)
///   1: a tiktoken.model, beside the fixture tokenizer_config.json with its special ids moved to the fuzzed table's end
///   2: a tokenizer_config.json beside a fixed 256-byte tiktoken.model
/// Whatever the bytes, the result is an error or exactly `vocab_size` tokens and token types.
let vocabularySize = 512
let folder: String = {
    let path = NSTemporaryDirectory() + "k2pack-fuzz-vocab-\(getpid())"
    try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    try! Data("{\"vocab_size\": \(vocabularySize), \"bos_token_id\": 256, \"eos_token_id\": 257}".utf8)
        .write(to: URL(fileURLWithPath: path + "/config.json"))
    return path
}()
let byteRanks: [UInt8] = {
    var lines = ""
    for b in 0..<256 { lines += Data([UInt8(b)]).base64EncodedString() + " \(b)\n" }
    return Array(lines.utf8)
}()

func put(_ name: String, _ bytes: [UInt8]?) {
    let path = folder + "/" + name
    if let bytes { try! Data(bytes).write(to: URL(fileURLWithPath: path)) } else { try? FileManager.default.removeItem(atPath: path) }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ input: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data = input, size > 0 else { return 0 }
    let bytes = Array(UnsafeBufferPointer(start: data + 1, count: size - 1))
    switch data[0] % 3 {
    case 0:
        put("tiktoken.model", nil)
        put("tokenizer_config.json", nil)
        put("tokenizer.json", bytes)
    case 1:
        put("tokenizer.json", nil)
        put("tiktoken.model", bytes)
        put("tokenizer_config.json", Array("{\"added_tokens_decoder\": {}}".utf8))
    default:
        put("tokenizer.json", nil)
        put("tiktoken.model", byteRanks)
        put("tokenizer_config.json", bytes)
    }
    guard let metadata = try? GGUFVocabulary.metadata(modelFolder: folder, vocabularySize: vocabularySize) else { return 0 }
    for kv in metadata where kv.key == "tokenizer.ggml.tokens" || kv.key == "tokenizer.ggml.token_type" {
        guard case .array(let array) = kv.value else { preconditionFailure("\(kv.key) is not an array") }
        precondition(array.count == vocabularySize, "\(kv.key): \(array.count) entries for a vocabulary of \(vocabularySize)")
    }
    return 0
}

runFuzzer(fuzz)
