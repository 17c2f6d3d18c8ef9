import JSONCore
import TensorCore

/// A `sha256sum`-format list: `<64 hex digits>  <file name>` per line (`*name` for binary mode).
///
/// Parsed as bytes, line by line on `\n` (a `\r` before it is dropped, so CRLF lists work): in Swift, `"\r\n"` is
/// one `Character`, and splitting a `String` on `"\n"` would find no line breaks in a CRLF file at all.
public struct ChecksumList: Sendable, Equatable {
    /// File name (compared as bytes) → lowercase hex digest.
    public var digests: [ByteName: String]

    public init(digests: [String: String]) {
        self.digests = Dictionary(digests.map { (ByteName($0.key), $0.value) }, uniquingKeysWith: { a, _ in a })
    }

    init(byteDigests: [ByteName: String]) { digests = byteDigests }

    /// The digest listed for a file of the checkpoint, by its exact name.
    public func digest(for name: String) -> String? { digests[ByteName(name)] }

    public static func parse(_ text: String, fileName: String) throws(CheckpointError) -> ChecksumList {
        try parse(bytes: Array(text.utf8), fileName: fileName)
    }

    /// Refuses a malformed line by its number, a name listed twice with different digests, and a list with no
    /// entries at all (a list that checks nothing must not pass as a check).
    public static func parse(bytes: [UInt8], fileName: String) throws(CheckpointError) -> ChecksumList {
        var digests: [ByteName: String] = [:]
        var firstLine: [ByteName: Int] = [:]
        var number = 0
        for rawLine in bytes.split(separator: 0x0A, omittingEmptySubsequences: false) {
            number += 1
            var line = rawLine[...]
            if line.last == 0x0D { line = line.dropLast() }
            if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) || line.first == UInt8(ascii: "#") { continue }
            func malformed(_ reason: String) -> CheckpointError {
                .checksumListMalformed(file: fileName, line: number, reason: reason)
            }
            // sha256sum writes `\` before the digest when the name holds a backslash or a newline (escaped).
            var escaped = false
            if line.first == UInt8(ascii: "\\") {
                escaped = true
                line = line.dropFirst()
            }
            guard let space = line.firstIndex(of: 0x20) else { throw malformed("expected '<sha256>  <file>'") }
            let hexBytes = line[..<space]
            guard hexBytes.count == 64, hexBytes.allSatisfy(isHexDigit) else {
                throw malformed("'\(displayed(utf8: hexBytes))' is not a 64-digit SHA-256")
            }
            var rest = line[line.index(after: space)...]
            // One separator: a second space (text mode) or `*` (binary mode); tolerate extra spaces.
            while rest.first == 0x20 { rest = rest.dropFirst() }
            if rest.first == UInt8(ascii: "*") { rest = rest.dropFirst() }
            var nameBytes = Array(rest)
            if escaped {
                guard let unescaped = unescape(nameBytes) else { throw malformed("bad escape in the file name (only \\\\ and \\n are allowed)") }
                nameBytes = unescaped
            }
            guard !nameBytes.isEmpty else { throw malformed("missing file name") }
            guard let name = String(validating: nameBytes, as: UTF8.self) else { throw malformed("the file name is not valid UTF-8") }
            // Lists often carry a folder prefix (./, model/): the checkpoint's files are matched by base name.
            let base = String(name.split(separator: "/").last ?? name[...])
            guard !base.isEmpty, base != ".", base != ".." else { throw malformed("'\(displayed(utf8: nameBytes))' names no file") }
            let hex = String(decoding: hexBytes, as: UTF8.self).lowercased()
            let key = ByteName(base)
            if let previous = digests[key] {
                // The same name twice: harmless when the digests agree, ambiguous when they do not.
                guard previous == hex else {
                    throw malformed("'\(displayed(base))' is listed twice with different digests (first on line \(firstLine[key] ?? 0))")
                }
                continue
            }
            digests[key] = hex
            firstLine[key] = number
        }
        guard !digests.isEmpty else {
            throw .checksumListMalformed(file: fileName, line: number, reason: "the list has no entries: it would check nothing")
        }
        return ChecksumList(byteDigests: digests)
    }

    private static func isHexDigit(_ b: UInt8) -> Bool {
        (0x30...0x39).contains(b) || (0x41...0x46).contains(b) || (0x61...0x66).contains(b)
    }

    private static func unescape(_ bytes: [UInt8]) -> [UInt8]? {
        var out: [UInt8] = []
        var i = 0
        while i < bytes.count {
            if bytes[i] == UInt8(ascii: "\\") {
                guard i + 1 < bytes.count else { return nil }
                switch bytes[i + 1] {
                case UInt8(ascii: "\\"): out.append(UInt8(ascii: "\\"))
                case UInt8(ascii: "n"): out.append(0x0A)
                default: return nil
                }
                i += 2
            } else {
                out.append(bytes[i])
                i += 1
            }
        }
        return out
    }
}
