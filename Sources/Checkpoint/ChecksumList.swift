import TensorCore

/// A `sha256sum`-format list: `<64 hex digits>  <file name>` per line (`*name` for binary mode).
public struct ChecksumList: Sendable, Equatable {
    /// File name → lowercase hex digest.
    public var digests: [String: String]

    public init(digests: [String: String]) { self.digests = digests }

    public static func parse(_ text: String, fileName: String) throws(CheckpointError) -> ChecksumList {
        var digests: [String: String] = [:]
        for (number, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = rawLine.hasSuffix("\r") ? rawLine.dropLast() : rawLine
            if line.allSatisfy(\.isWhitespace) || line.hasPrefix("#") { continue }
            let parts = line.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
            guard parts.count == 2 else {
                throw .checksumListMalformed(file: fileName, line: number + 1, reason: "expected '<sha256>  <file>'")
            }
            let hex = parts[0].lowercased()
            guard hex.count == 64, hex.allSatisfy(\.isHexDigit) else {
                throw .checksumListMalformed(file: fileName, line: number + 1, reason: "'\(displayed(parts[0]))' is not a 64-digit SHA-256")
            }
            var name = parts[1].drop(while: { $0 == " " })
            if name.hasPrefix("*") { name = name.dropFirst() }
            // Lists often carry a folder prefix (./, model/): the checkpoint's files are matched by base name.
            let base = String(name.split(separator: "/").last ?? name[...])
            guard !base.isEmpty else {
                throw .checksumListMalformed(file: fileName, line: number + 1, reason: "missing file name")
            }
            digests[base] = hex
        }
        return ChecksumList(digests: digests)
    }
}
