import Foundation
import FuzzSupport
import Tokenizer

/// The Kimi tokenizer's readers and encoder. The first byte picks what the rest is:
///   0: a tiktoken.model (with a fixed tokenizer_config.json); if it loads, encode and decode a fixed text with it
///   1: a tokenizer_config.json for the fixture's ranks (its ids must land in the special block)
///   2: a text for the fixture tokenizer (UTF-8 checked, then repaired): decode(encode(text)) must equal the text
///   3: ids (two bytes each, little-endian) to decode; ids outside the vocabulary must be refused, not crash
let fixture: URL = {
    var url = URL(fileURLWithPath: #filePath)
    for _ in 0..<5 { url.deleteLastPathComponent() }
    return url.appendingPathComponent("Fixtures/tokenizer")
}()
let scheme = try! TokenizerScheme.kimi()
let fixtureRanks = [UInt8](try! Data(contentsOf: fixture.appendingPathComponent("tiktoken.model")))
let fixtureConfig = [UInt8](try! Data(contentsOf: fixture.appendingPathComponent("tokenizer_config.json")))
let tokenizer = try! KimiTokenizer(ranks: fixtureRanks, ranksFile: "tiktoken.model", config: fixtureConfig,
                                   configFile: "tokenizer_config.json", scheme: scheme)

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ input: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data = input, size > 0 else { return 0 }
    let mode = data[0] % 4
    let bytes = Array(UnsafeBufferPointer(start: data + 1, count: size - 1))
    switch mode {
    case 0:
        guard let table = try? TiktokenModelReader.read(bytes, file: "f") else { return 0 }
        let n = table.count
        let config = Array("{\"added_tokens_decoder\": {\"\(n)\": \"[BOS]\", \"\(n + 1)\": \"[EOS]\"}}".utf8)
        let t = try! KimiTokenizer(ranks: bytes, ranksFile: "f", config: config, configFile: "c", scheme: scheme)
        let text = "Hello wörld 中文 [BOS] 123 \r\n  x"
        precondition((try? t.decode(t.encode(text))) == text, "round trip failed with a fuzzed vocabulary")
    case 1:
        if let config = try? TokenizerConfigReader.read(bytes, file: "c", baseCount: tokenizer.baseCount, scheme: scheme) {
            precondition(config.specialNames.count == scheme.reservedSpecialTokens, "special block size")
            let specials = tokenizer.baseCount..<(tokenizer.baseCount + scheme.reservedSpecialTokens)
            precondition(specials.contains(config.bosID) && specials.contains(config.eosID), "bos/eos outside the block")
        }
    case 2:
        let text = (try? KimiTokenizer.text(fromUTF8: bytes, file: "t")) ?? String(decoding: bytes, as: UTF8.self)
        let ids = tokenizer.encode(text)
        precondition(ids.allSatisfy { $0 >= 0 && $0 < tokenizer.vocabularySize }, "id outside the vocabulary")
        let back = try? tokenizer.decode(ids)
        precondition(back == text, "decode(encode(text)) != text")
    default:
        var ids: [Int] = []
        var i = 0
        while i + 1 < bytes.count {
            ids.append(Int(bytes[i]) | Int(bytes[i + 1]) << 8)
            i += 2
        }
        if let text = try? tokenizer.decode(ids) { _ = text.utf8.count }
        _ = try? IDList.parse(String(decoding: bytes, as: UTF8.self), source: "ids")
    }
    return 0
}

runFuzzer(fuzz)
