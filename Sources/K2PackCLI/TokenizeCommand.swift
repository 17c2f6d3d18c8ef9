import ArgumentParser
import Foundation
import JSONCore
import Tokenizer

struct TokenizeCommand: ParsableCommand, Reports {
    static let configuration = CommandConfiguration(
        commandName: "tokenize",
        abstract: "Token ids of a text with the model's own tokenizer (Kimi: tiktoken.model + tokenizer_config.json), or text of ids with --decode.",
        discussion: """
            Ids equal tiktoken's with the Kimi pattern (every special token allowed in the text; 400,000-character pieces; \
            runs of more than 25,000 whitespace or non-whitespace characters split). --decode replaces bytes that are not \
            UTF-8 with U+FFFD as Python's errors="replace" does. --json prints {"ids": [...]} (with --decode: {"text": "..."}).
            """
    )

    @Argument(help: "A model folder holding tiktoken.model and tokenizer_config.json.")
    var model: String

    @Argument(help: "The text (or, with --decode, the ids: decimal, separated by spaces or commas, or {\"ids\": [...]}).")
    var input: String?

    @Option(help: "Read the text (or the ids) from this file instead; it must be UTF-8.")
    var text: String?

    @OptionGroup var reporting: ReportOptions

    @Flag(help: "Turn ids back into text.")
    var decode = false

    func validate() throws {
        if (input == nil) == (text == nil) { throw ValidationError("give the text either as an argument or with --text FILE (not both)") }
    }

    func run() throws {
        let tokenizer = try KimiTokenizer.load(directory: model)
        let source: String
        let content: String
        if let file = text {
            let bytes = try KimiTokenizer.readFile(file, limit: 1 << 31, what: "a text")
            content = try KimiTokenizer.text(fromUTF8: bytes, file: file)
            source = file
        } else {
            content = input ?? ""
            source = "the argument"
        }
        var out: String
        if decode {
            let ids = try IDList.parse(content, source: source)
            let decoded = try tokenizer.decode(ids)
            if reporting.json {
                var object = JSONObject()
                _ = object.append("text", .string(decoded))
                out = JSONValue.object(object).serialized(indent: nil)
            } else {
                out = decoded
            }
        } else {
            let ids = tokenizer.encode(content)
            let list = ids.map(String.init)
            out = reporting.json ? "{\"ids\": [" + list.joined(separator: ", ") + "]}" : list.joined(separator: " ")
        }
        out += "\n"
        FileHandle.standardOutput.write(Data(out.utf8))
    }
}
