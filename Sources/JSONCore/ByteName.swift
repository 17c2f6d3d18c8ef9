/// A name compared as its UTF-8 bytes.
///
/// Swift `String` equality is canonical equivalence: "é" as U+00E9 and as "e" + U+0301 are equal `String`s, and
/// so the same `Set` element and dictionary key. To the file system, to Python and to safetensors they are two
/// different names. Wherever names read from files are compared (tensor names, shard and file names), compare
/// them as `ByteName`s.
public struct ByteName: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let string: String

    public init(_ string: String) { self.string = string }

    public static func == (a: ByteName, b: ByteName) -> Bool {
        // Compared as two byte buffers (the generic `elementsEqual` over UTF-8 views walks them a byte at a time).
        guard a.string.utf8.count == b.string.utf8.count else { return false }
        var x = a.string, y = b.string
        return x.withUTF8 { xb in y.withUTF8 { yb in xb.elementsEqual(yb) } }
    }

    public static func < (a: ByteName, b: ByteName) -> Bool { a.string.utf8.lexicographicallyPrecedes(b.string.utf8) }

    public func hash(into hasher: inout Hasher) {
        var copy = string
        copy.withUTF8 { hasher.combine(bytes: UnsafeRawBufferPointer($0)) }
    }

    public var description: String { string }
}
