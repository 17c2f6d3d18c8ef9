import Checkpoint
import Foundation
import JSONCore
import TestSupport
import Testing
@testable import Tokenizer

/// The fixture tokenizer and its hostile corpus (Fixtures/tokenizer, made by scripts/fixtures/make_tokenizer.py
/// with tiktoken as the oracle).
enum TokenizerFixture {
    static let folder = TestPaths.fixture("tokenizer")

    static func tokenizer() throws -> KimiTokenizer { try KimiTokenizer.load(directory: folder) }

    struct Case {
        var name: String
        var text: String
        var ids: [Int]
        var pieces: [String]?
    }

    static func corpus(_ path: String = folder + "/corpus.json") throws -> (cases: [Case], decode: [(ids: [Int], text: String)]) {
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        let root = try JSONDocument.parse(bytes)
        var cases: [Case] = []
        for c in try #require(root["cases"]?.arrayValue) {
            let name = try #require(c["name"]?.stringValue)
            var text = ""
            if let t = c["text"]?.stringValue {
                text = t
            } else {
                for step in try #require(c["recipe"]?.arrayValue) {
                    let unit = try #require(step.arrayValue?[0].stringValue)
                    let count = try #require(step.arrayValue?[1].intValue)
                    text += String(repeating: unit, count: count)
                }
            }
            var ids: [Int] = []
            if let list = c["ids"]?.arrayValue {
                ids = list.compactMap(\.intValue)
            } else {
                for block in try #require(c["ids_blocks"]?.arrayValue) {
                    let unit = try #require(block.arrayValue?[0].arrayValue).compactMap(\.intValue)
                    let count = try #require(block.arrayValue?[1].intValue)
                    for _ in 0..<count { ids.append(contentsOf: unit) }
                }
            }
            let pieces = c["pieces"]?.arrayValue?.compactMap(\.stringValue)
            cases.append(Case(name: name, text: text, ids: ids, pieces: pieces))
        }
        var decode: [(ids: [Int], text: String)] = []
        for d in try #require(root["decode"]?.arrayValue) {
            decode.append((try #require(d["ids"]?.arrayValue).compactMap(\.intValue), try #require(d["text"]?.stringValue)))
        }
        return (cases, decode)
    }
}

@Suite("Kimi tokenizer against tiktoken's ids")
struct CorpusTests {
    @Test("every corpus case encodes to tiktoken's ids")
    func corpusIDs() throws {
        let (cases, _) = try TokenizerFixture.corpus()
        #expect(cases.count >= 400)
        try check(cases)
    }

    /// A larger corpus made by `make_tokenizer.py --extra N PATH SEED`, when K2PACK_TOKENIZER_CORPUS names it.
    @Test("an extra corpus (K2PACK_TOKENIZER_CORPUS), when given", .enabled(if: ProcessInfo.processInfo.environment["K2PACK_TOKENIZER_CORPUS"] != nil))
    func extraCorpus() throws {
        let (cases, _) = try TokenizerFixture.corpus(ProcessInfo.processInfo.environment["K2PACK_TOKENIZER_CORPUS"]!)
        try check(cases)
        for c in cases where c.pieces != nil {
            let ours = PreTokenizer().pieces(of: c.text)
            #expect(ours == c.pieces!, "case \(c.name): ours \(ours.map(\.debugDescription)) tiktoken's \(c.pieces!.map(\.debugDescription))")
        }
    }

    func check(_ cases: [TokenizerFixture.Case]) throws {
        let tokenizer = try TokenizerFixture.tokenizer()
        var failures = 0
        for c in cases {
            let got = tokenizer.encode(c.text)
            guard got != c.ids else { continue }
            failures += 1
            let first = zip(got, c.ids).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? min(got.count, c.ids.count)
            let lo = max(0, first - 3)
            let pieces = PreTokenizer().pieces(of: String(c.text.unicodeScalars.prefix(200)))
            Issue.record("""
                case \(c.name): first differing id at position \(first) (expected \(c.ids.count) ids, got \(got.count)); \
                expected …\(Array(c.ids[lo..<min(c.ids.count, first + 4)])) got …\(Array(got[lo..<min(got.count, first + 4)])); \
                our pre-token split: \(pieces.map(\.debugDescription).joined(separator: " | ")); \
                tiktoken's: \(c.pieces.map { $0.map(\.debugDescription).joined(separator: " | ") } ?? "not recorded")
                """)
            if failures > 20 { break }
        }
    }

    @Test("the pre-token split equals tiktoken's on the recorded subset")
    func pieces() throws {
        let (cases, _) = try TokenizerFixture.corpus()
        let recorded = cases.filter { $0.pieces != nil }
        #expect(recorded.count >= 350)
        for c in recorded {
            let ours = PreTokenizer().pieces(of: c.text)
            #expect(ours == c.pieces!, "case \(c.name): ours \(ours.map(\.debugDescription)) tiktoken's \(c.pieces!.map(\.debugDescription))")
        }
    }

    @Test("decode gives tiktoken's text, invalid UTF-8 replaced as Python's errors='replace'")
    func decodeCases() throws {
        let tokenizer = try TokenizerFixture.tokenizer()
        let (_, decode) = try TokenizerFixture.corpus()
        #expect(decode.count >= 60)
        for d in decode {
            let got = try tokenizer.decode(d.ids)
            #expect(got == d.text, "ids \(d.ids): got \(got.debugDescription), tiktoken \(d.text.debugDescription)")
        }
    }

    @Test("decode(encode(text)) == text on every corpus case")
    func roundTrip() throws {
        let tokenizer = try TokenizerFixture.tokenizer()
        for c in try TokenizerFixture.corpus().cases {
            let back = try tokenizer.decode(tokenizer.encode(c.text))
            #expect(back == c.text, "case \(c.name)")
        }
    }

    @Test("the fixture's specials: 256 ids after the ranks, named from added_tokens_decoder, the rest reserved")
    func specials() throws {
        let tokenizer = try TokenizerFixture.tokenizer()
        let n = tokenizer.baseCount
        #expect(tokenizer.vocabularySize == n + 256)
        #expect(tokenizer.config.bosID == n)
        #expect(tokenizer.config.eosID == n + 1)
        #expect(tokenizer.config.padID == n + 255)
        #expect(tokenizer.config.unkID == n + 254)
        #expect(tokenizer.config.specialNames[5] == "<|reserved_token_\(n + 5)|>")
        #expect(tokenizer.encode("[BOS]x<|reserved_token_\(n + 5)|>") == [n, Int(UInt8(ascii: "x")), n + 5])
    }

    @Test("the quadratic and the heap BPE make the same merges")
    func bpeAgree() throws {
        let tokenizer = try TokenizerFixture.tokenizer()
        let (cases, _) = try TokenizerFixture.corpus()
        var rng = SeededGenerator(seed: 7)
        let texts = cases.filter { $0.text.utf8.count > 4 && $0.text.utf8.count < 2000 }.map { Array($0.text.utf8) }
        for _ in 0..<3000 {
            let t = texts[Int(rng.next() % UInt64(texts.count))]
            let a = Int(rng.next() % UInt64(t.count))
            let len = 2 + Int(rng.next() % 90)
            let piece = Array(t[a..<min(t.count, a + len)])
            guard piece.count >= 2 else { continue }
            var scan: [Int] = [], heap: [Int] = []
            piece.withUnsafeBufferPointer { p in
                BytePairEncoder.scan(p.baseAddress!, p.count, tokenizer.table, into: &scan)
                BytePairEncoder.heap(p.baseAddress!, p.count, tokenizer.table, into: &heap)
            }
            #expect(scan == heap, "piece \(piece)")
        }
    }

    @Test("the Unicode tables hash to what the generator recorded")
    func tableHash() {
        let runs = Array(UnicodeTables.runs.utf8.filter { $0 != UInt8(ascii: "\n") })
        let all = runs + Array("|".utf8) + Array(UnicodeTables.folds.utf8)
        let digest = all.withUnsafeBytes { SHA256Digest.hex(of: $0) }
        #expect(digest == UnicodeTables.sha256)
        #expect(digest == "23f0dc62bc8eacaf8f6b29286ad52b2c005d6570c72bc0c91115b24b9204df0e")
        #expect(UnicodeTables.tiktokenVersion == "0.14.0")
    }

    @Test("character classes: spot checks of the probed tables")
    func classes() {
        let c = CharacterClasses.shared
        #expect(c.of(0x4E2D) & CharacterClasses.han != 0)          // 中
        #expect(c.of(0x3005) & CharacterClasses.han != 0)          // 々 (Lm, Han)
        #expect(c.of(0x16FF0) & CharacterClasses.upper == 0)       // Han-script mark: not in the letter classes
        #expect(c.of(0x0301) & CharacterClasses.lower != 0)        // combining acute: \p{M}
        #expect(c.of(0x0661) & CharacterClasses.number != 0)       // Arabic-Indic one
        #expect(c.of(0x3000) & CharacterClasses.space != 0)
        #expect(c.of(0x1F) & CharacterClasses.space == 0)          // not White_Space ...
        #expect(c.of(0x1F) & CharacterClasses.pythonSpace != 0)    // ... but str.isspace
        #expect(c.of(0x200B) & (CharacterClasses.space | CharacterClasses.pythonSpace) == 0)
        #expect(c.folds(0x17F, to: 0))                             // ſ matches (?i:s)
        #expect(c.folds(0x53, to: 0) && c.folds(0x73, to: 0))
        #expect(!c.folds(0x212A, to: 0))                           // K sign: k, not s
    }
}
