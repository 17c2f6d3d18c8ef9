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
        // Compared as two byte buffers, eight bytes at a time, in place (the generic `elementsEqual` walks them a
        // byte at a time; `withUTF8` needs a copy of each string). Dictionary lookups of 70-byte tensor names spend
        // most of their time here.
        guard a.string.utf8.count == b.string.utf8.count else { return false }
        let inPlace = a.string.utf8.withContiguousStorageIfAvailable { x in
            b.string.utf8.withContiguousStorageIfAvailable { y in equalBytes(UnsafeRawBufferPointer(x), UnsafeRawBufferPointer(y)) }
        }
        if case let equal?? = inPlace { return equal }
        return a.string.utf8.elementsEqual(b.string.utf8)  // a string without contiguous UTF-8 (bridged)
    }

    /// Two buffers of the same length hold the same bytes.
    static func equalBytes(_ x: UnsafeRawBufferPointer, _ y: UnsafeRawBufferPointer) -> Bool {
        let n = x.count
        var i = 0
        while i + 8 <= n {
            if x.loadUnaligned(fromByteOffset: i, as: UInt64.self) != y.loadUnaligned(fromByteOffset: i, as: UInt64.self) { return false }
            i += 8
        }
        while i < n {
            if x[i] != y[i] { return false }
            i += 1
        }
        return true
    }

    public static func < (a: ByteName, b: ByteName) -> Bool { a.string.utf8.lexicographicallyPrecedes(b.string.utf8) }

    public func hash(into hasher: inout Hasher) {
        // The same bytes either way: in place when the string's UTF-8 is contiguous, else through a copy.
        let done: Void? = string.utf8.withContiguousStorageIfAvailable { hasher.combine(bytes: UnsafeRawBufferPointer($0)) }
        if done == nil {
            var copy = string
            copy.withUTF8 { hasher.combine(bytes: UnsafeRawBufferPointer($0)) }
        }
    }

    public var description: String { string }
}
