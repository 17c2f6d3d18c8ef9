import Foundation

/// A value shared by threads, every access under its lock: the package's one lock wrapper. Reach the value only
/// through `withLock`, which holds the lock for the whole of `body`.
public final class Locked<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value

    public init(_ value: Value) { self.value = value }

    /// Runs `body` on the value with the lock held; what `body` returns is returned.
    public func withLock<Result>(_ body: (inout Value) throws -> Result) rethrows -> Result {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
}

/// A pointer handed to worker threads that read the memory it points to or write disjoint ranges of it: the
/// package's one pointer wrapper. The caller keeps the memory alive until every worker is done.
public struct SendablePointer<Pointee>: @unchecked Sendable {
    public let pointer: UnsafeMutablePointer<Pointee>
    public init(_ pointer: UnsafeMutablePointer<Pointee>) { self.pointer = pointer }
}

/// Work done so far (`done` of `total`), reported by a long operation: the package's one progress callback type.
/// It may be called from any thread.
public typealias ProgressCallback = @Sendable (_ done: Int, _ total: Int) -> Void
