import FileIO
import JSONCore
import TensorCore

/// A `sha256sum`-format list: `<64 hex digits>  <file name>` per line (`*name` for binary mode).
///
/// Parsed as bytes, line by line on `\n` (a `\r` before it is dropped, so CRLF lists work): in Swift, `"\r\n"` is
/// one `Character`, and splitting a `String` on `"\n"` would find no line breaks in a CRLF file at all.
public struct ChecksumList: Sendable, Equatable {
    /// Listed path (compared as bytes, a leading `./` removed) → lowercase hex digest.
    public private(set) var digests: [ByteName: String]
    /// The folder components every listed path starts with (`model/` when every line is `model/…`), as bytes
    /// with its trailing `/`; empty when the entries share none.
    public private(set) var commonPrefix: [UInt8]

    public init(digests: [String: String]) {
        self.init(byteDigests: Dictionary(digests.map { (ByteName($0.key), $0.value) }, uniquingKeysWith: { a, _ in a }))
    }

    init(byteDigests: [ByteName: String]) {
        digests = byteDigests
        var shared: [[UInt8]]?
        for key in byteDigests.keys {
            let folders = key.string.utf8.split(separator: PathBytes.slash, omittingEmptySubsequences: false).dropLast().map { Array($0) }
            guard let sofar = shared else { shared = folders; continue }
            shared = Array(zip(sofar, folders).prefix { $0.0 == $0.1 }.map(\.0))
        }
        commonPrefix = (shared ?? []).flatMap { $0 + [PathBytes.slash] }
    }

    /// The digest listed for a file of the checkpoint (its path relative to the checkpoint folder).
    public func digest(for name: String) -> String? { entry(for: name).flatMap { digests[$0] } }

    /// The listed path that stands for the checkpoint file `name` (compared as bytes): the entry with exactly
    /// that path; else the entry with the list's common folder prefix before it (every line `model/…`); else the
    /// one entry that ends in `/` + `name`, nil when none or several do. `docs/config.json` never takes a listed
    /// top-level `config.json`'s digest, and `README.md` never takes `docs/README.md`'s when both are listed.
    public func entry(for name: String) -> ByteName? {
        let key = ByteName(name)
        if digests[key] != nil { return key }
        if !commonPrefix.isEmpty {
            let prefixed = ByteName(String(decoding: commonPrefix + Array(name.utf8), as: UTF8.self))
            if digests[prefixed] != nil { return prefixed }
        }
        let suffix = [PathBytes.slash] + Array(name.utf8)
        var found: ByteName?
        for listed in digests.keys where listed.string.utf8.count > suffix.count && listed.string.utf8.reversed().starts(with: suffix.reversed()) {
            guard found == nil else { return nil }
            found = listed
        }
        return found
    }

    /// The checkpoint path a listed entry stands for: the path itself, or the path without the list's common
    /// folder prefix when only that exists in `exists`.
    public func checkpointPath(of key: ByteName, exists: (String) -> Bool) -> String? {
        if PathBytes.isPlainRelativePath(key.string), exists(key.string) { return key.string }
        let bytes = Array(key.string.utf8)
        guard !commonPrefix.isEmpty, bytes.starts(with: commonPrefix) else { return nil }
        let rest = String(decoding: bytes[commonPrefix.count...], as: UTF8.self)
        return PathBytes.isPlainRelativePath(rest) && exists(rest) ? rest : nil
    }

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
            guard String(validating: nameBytes, as: UTF8.self) != nil else { throw malformed("the file name is not valid UTF-8") }
            // Entries are keyed by their whole path (a checkpoint has sub-folders: `README.md` and
            // `docs/README.md` are two files); only a leading `./` is dropped. A common folder prefix (`model/…`) is
            // matched by `entry(for:)`.
            var path = nameBytes[...]
            while path.starts(with: [0x2E, PathBytes.slash]) { path = path.dropFirst(2) }
            let shown = String(decoding: path, as: UTF8.self)
            guard ![[], [0x2E], [0x2E, 0x2E]].contains(Array(PathBytes.lastComponent(shown).utf8)) else {
                throw malformed("'\(displayed(utf8: nameBytes))' names no file")
            }
            let hex = String(decoding: hexBytes, as: UTF8.self).lowercased()
            let key = ByteName(shown)
            if let previous = digests[key] {
                // The same name twice: harmless when the digests agree, ambiguous when they do not.
                guard previous == hex else {
                    throw malformed("'\(displayed(shown))' is listed twice with different digests (first on line \(firstLine[key] ?? 0))")
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
