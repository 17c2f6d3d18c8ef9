import ArgumentParser
import Testing

@testable import K2PackCLI

@Suite("logits command line")
struct LogitsParsingTests {
    static func refusal(_ arguments: [String]) -> String? {
        do {
            _ = try K2Pack.parseAsRoot(arguments)
            return nil
        } catch {
            return K2Pack.message(for: error)
        }
    }

    @Test("logits parses its options")
    func parses() throws {
        let c = try #require(try K2Pack.parseAsRoot(
            ["logits", "m", "--text", "t.txt", "--out", "r.h5:/g", "--ctx", "64", "--bos", "--top-k", "32", "--memory", "2G", "--rank", "1", "--world", "4"]) as? LogitsCommand)
        #expect(c.model == "m" && c.text == "t.txt" && c.out == "r.h5:/g" && c.ctx == 64 && c.bos && !c.full && c.topK == 32)
        #expect(try LogitsCommand.bytes(c.memory) == 2 << 30)
        #expect(try c.share()! == (1, 4))
        #expect(try LogitsCommand.bytes("512") == 512 && LogitsCommand.bytes("3MB") == 3 << 20 && LogitsCommand.bytes(nil) == nil)
    }

    @Test("bad combinations are refused by validate(), with these messages", arguments: [
        (["logits", "m", "--out", "o"], "give either --text FILE or --ids FILE.h5[:/group], not both"),
        (["logits", "m", "--text", "t", "--ids", "d.h5", "--out", "o"], "give either --text FILE or --ids FILE.h5[:/group], not both"),
        (["logits", "--text", "t", "--out", "o"], "give either a model folder or --shards, not both"),
        (["logits", "m", "--shards", "s", "--text", "t", "--out", "o"], "give either a model folder or --shards, not both"),
        (["logits", "m", "--ids", "d.h5", "--bos", "--out", "o"], "--bos applies to --text; a dump's input_ids are used as they are"),
        (["logits", "m", "--text", "t", "--out", "o", "--rank", "1"], "--rank and --world go together"),
        (["logits", "m", "--text", "t", "--out", "o", "--batch-windows", "0"], "--batch-windows 0: expected 1 or more"),
        (["compare", "r.h5", "t", "--batch-windows", "0"], "--batch-windows 0: expected 1 or more"),
        (["compare", "r.h5", "t", "--memory", "0"], "--memory 0: expected a positive size"),
        (["logits", "m", "--text", "t", "--out", "o", "--memory", "0"], "--memory 0: expected a positive size such as 24G, 512M or a number of bytes"),
        (["logits", "m", "--text", "t", "--out", "o", "--memory", "99999999999T"], "--memory 99999999999T: expected a positive size"),
    ])
    func refusals(_ arguments: [String], _ message: String) {
        #expect(Self.refusal(arguments)?.hasPrefix(message) == true, "\(arguments): \(Self.refusal(arguments) ?? "accepted")")
    }
}
