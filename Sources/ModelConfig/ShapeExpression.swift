import JSONCore

/// Evaluates the small integer expressions manifests use for shapes:
/// integers, config keys, `key[i]`, `+ - * /` (exact division) and parentheses.
public struct ShapeExpression {
    let text: [Character]
    var position = 0
    let lookup: (String) -> JSONValue?
    let section: String

    /// Evaluates `text`; a key the config lacks is reported as missing from `section`.
    public static func evaluate(_ text: String, section: String = "config", lookup: @escaping (String) -> JSONValue?) throws(ConfigError) -> Int {
        var parser = ShapeExpression(text: Array(text), lookup: lookup, section: section)
        let value = try parser.sum()
        parser.skipSpaces()
        guard parser.position == parser.text.count else { throw parser.fail("unexpected '\(parser.text[parser.position])'") }
        return value
    }

    func fail(_ reason: String) -> ConfigError { .expression(expression: String(text), reason: reason) }

    mutating func skipSpaces() { while position < text.count, text[position] == " " { position += 1 } }

    mutating func sum() throws(ConfigError) -> Int {
        var value = try product()
        while true {
            skipSpaces()
            guard position < text.count, text[position] == "+" || text[position] == "-" else { return value }
            let op = text[position]
            position += 1
            let rhs = try product()
            let (r, overflow) = op == "+" ? value.addingReportingOverflow(rhs) : value.subtractingReportingOverflow(rhs)
            guard !overflow else { throw fail("overflow") }
            value = r
        }
    }

    mutating func product() throws(ConfigError) -> Int {
        var value = try atom()
        while true {
            skipSpaces()
            guard position < text.count, text[position] == "*" || text[position] == "/" else { return value }
            let op = text[position]
            position += 1
            let rhs = try atom()
            if op == "*" {
                let (r, overflow) = value.multipliedReportingOverflow(by: rhs)
                guard !overflow else { throw fail("overflow") }
                value = r
            } else {
                guard rhs != 0, value % rhs == 0 else { throw fail("\(value) is not divisible by \(rhs)") }
                value /= rhs
            }
        }
    }

    mutating func atom() throws(ConfigError) -> Int {
        skipSpaces()
        guard position < text.count else { throw fail("unexpected end") }
        let c = text[position]
        if c == "(" {
            position += 1
            let value = try sum()
            skipSpaces()
            guard position < text.count, text[position] == ")" else { throw fail("missing ')'") }
            position += 1
            return value
        }
        if c.isNumber {
            var digits = ""
            while position < text.count, text[position].isNumber {
                digits.append(text[position])
                position += 1
            }
            guard let v = Int(digits) else { throw fail("bad number \(digits)") }
            return v
        }
        var name = ""
        while position < text.count, text[position].isLetter || text[position].isNumber || text[position] == "_" {
            name.append(text[position])
            position += 1
        }
        guard !name.isEmpty else { throw fail("unexpected '\(c)'") }
        guard var value = lookup(name) else { throw .missingKey(file: "config.json", section: section, key: name) }
        if position < text.count, text[position] == "[" {
            position += 1
            let i = try sum()
            guard position < text.count, text[position] == "]" else { throw fail("missing ']'") }
            position += 1
            guard let items = value.arrayValue, i >= 0, i < items.count else { throw fail("\"\(name)\" has no element \(i)") }
            value = items[i]
        }
        guard let v = value.intValue else { throw fail("\"\(name)\" must be an integer, found \(value.kindName)") }
        return v
    }
}
