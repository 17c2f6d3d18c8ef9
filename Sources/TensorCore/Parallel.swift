import Dispatch
import Foundation

/// Runs `body` for every index in `0..<count` on up to `width` threads and returns the results in order.
/// Used for independent files (one shard each).
public func parallelMap<T: Sendable>(
    count: Int, width: Int = ProcessInfo.processInfo.activeProcessorCount,
    _ body: @Sendable (Int) -> T
) -> [T] {
    let results = ResultSlots<T>(count: count)
    let next = AtomicCounter()
    let workers = max(1, min(width, count))
    DispatchQueue.concurrentPerform(iterations: workers) { _ in
        while true {
            let i = next.increment()
            if i >= count { break }
            results.store(body(i), at: i)
        }
    }
    return results.values()
}

/// A lock-protected counter handing out work items.
public final class AtomicCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var value = 0
    public init() {}
    /// Returns the current value and adds one.
    public func increment() -> Int {
        lock.lock()
        defer { lock.unlock() }
        let v = value
        value += 1
        return v
    }
}

/// Write-once result slots filled from several threads; each slot is written by exactly one worker.
final class ResultSlots<T>: @unchecked Sendable {
    private var slots: [T?]
    private let lock = NSLock()
    init(count: Int) { slots = Array(repeating: nil, count: count) }
    func store(_ value: T, at i: Int) {
        lock.lock()
        slots[i] = value
        lock.unlock()
    }
    func values() -> [T] {
        lock.lock()
        defer { lock.unlock() }
        return slots.map { value in
            guard let value else { preconditionFailure("parallelMap: a slot was never filled") }
            return value
        }
    }
}

/// Bytes processed so far, shared by the scanning threads; reports at most every 1/1000 of the total.
public final class ProgressCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var done = 0
    private var lastReported = 0
    private let total: Int
    private let report: (@Sendable (Int, Int) -> Void)?

    public init(total: Int, report: (@Sendable (Int, Int) -> Void)?) {
        self.total = total
        self.report = report
    }

    public func add(_ bytes: Int) {
        guard let report else { return }
        lock.lock()
        done += bytes
        let now = done
        let due = now - lastReported >= max(1, total / 1000) || now == total
        if due { lastReported = now }
        lock.unlock()
        if due { report(now, total) }
    }
}
