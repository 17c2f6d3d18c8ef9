/// Relative paths and file names taken apart as UTF-8 bytes: the one set of helpers every reader and writer uses.
///
/// Not as Swift `Character`s: a `/` followed by a combining mark (U+0301) is one `Character` that is not `"/"`,
/// so `"../\u{301}/x".contains("/")` is false and splitting that `String` on `"/"` finds no separator, while the
/// file system sees `..` and a folder. `/` (0x2F), `\` (0x5C) and NUL never occur inside a multi-byte UTF-8
/// sequence, so splitting on the byte leaves every piece valid UTF-8.
public enum PathBytes {
    public static let slash: UInt8 = 0x2F
    public static let backslash: UInt8 = 0x5C

    /// The components of `path` split on the byte `/`, empty ones kept (`"a//b"` → `a`, ``, `b`).
    public static func components(_ path: String) -> [String] {
        path.utf8.split(separator: slash, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
    }

    /// The folder part of a relative path, "" for a bare name (and for a name right after a leading `/`).
    public static func parent(of path: String) -> String {
        let bytes = Array(path.utf8)
        guard let last = bytes.lastIndex(of: slash) else { return "" }
        return String(decoding: bytes[..<last], as: UTF8.self)
    }

    /// The part after the last `/` (the whole path when it has none).
    public static func lastComponent(_ path: String) -> String {
        let bytes = Array(path.utf8)
        guard let last = bytes.lastIndex(of: slash) else { return path }
        return String(decoding: bytes[(last + 1)...], as: UTF8.self)
    }

    /// A name that stays inside its folder: not empty, not `.` or `..`, and without the bytes `/`, `\` or NUL.
    public static func isPlainName(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard !bytes.isEmpty, bytes != [0x2E], bytes != [0x2E, 0x2E] else { return false }
        return !bytes.contains { $0 == slash || $0 == backslash || $0 == 0 }
    }

    /// A relative path whose every component (split on the byte `/`) is a plain name.
    public static func isPlainRelativePath(_ path: String) -> Bool {
        components(path).allSatisfy(isPlainName)
    }
}
