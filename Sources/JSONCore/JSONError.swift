import TensorCore

/// A JSON document that breaks RFC 8259 or one of our bounds. `offset` is the byte position.
public struct JSONError: Error, Equatable, Sendable, CustomStringConvertible {
    public var offset: Int
    public var reason: String

    public init(offset: Int, reason: String) {
        self.offset = offset
        self.reason = reason
    }

    public var description: String { "invalid JSON at byte \(offset): \(displayed(reason, limit: nil))" }
}
