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

/// Runs `side` on a thread of its own while `body` runs on the calling thread; returns both results once both are
/// done. Unlike a two-item `parallelMap`, `body` does not run inside `concurrentPerform`, where Dispatch runs any
/// nested `concurrentPerform` (a `parallelMap` within `body`) on one thread: here that `parallelMap` still spreads
/// over every core, and `side` shares them.
public func withSideJob<S: Sendable, R>(_ side: @escaping @Sendable () -> S, while body: () -> R) -> (R, S) {
    let result = Locked<S?>(nil)
    let done = DispatchSemaphore(value: 0)
    let thread = Thread {
        let value = side()
        result.withLock { $0 = value }
        done.signal()
    }
    thread.stackSize = 8 << 20  // a worker's usual size: `side` may parse nested JSON
    thread.start()
    let own = body()
    done.wait()
    guard let value = result.withLock({ $0 }) else { preconditionFailure("withSideJob: the side job left no result") }
    return (own, value)
}

/// A lock-protected counter handing out work items.
public final class AtomicCounter: Sendable {
    private let value = Locked(0)
    public init() {}
    /// Returns the current value and adds one.
    public func increment() -> Int {
        value.withLock { value in
            defer { value += 1 }
            return value
        }
    }
}

/// Write-once result slots filled from several threads; each slot is written by exactly one worker.
final class ResultSlots<T: Sendable>: Sendable {
    private let slots: Locked<[T?]>
    init(count: Int) { slots = Locked(Array(repeating: nil, count: count)) }
    func store(_ value: T, at i: Int) {
        slots.withLock { $0[i] = value }
    }
    func values() -> [T] {
        slots.withLock { slots in
            slots.map { value in
                guard let value else { preconditionFailure("parallelMap: a slot was never filled") }
                return value
            }
        }
    }
}

/// Bytes processed so far, shared by the scanning threads; reports at most every 1/1000 of the total.
public final class ProgressCounter: Sendable {
    /// Bytes done, and the count last reported.
    private let state = Locked((done: 0, lastReported: 0))
    private let total: Int
    private let report: ProgressCallback?

    public init(total: Int, report: ProgressCallback?) {
        self.total = total
        self.report = report
    }

    public func add(_ bytes: Int) {
        guard let report else { return }
        let total = self.total
        let (now, due) = state.withLock { state in
            state.done += bytes
            let now = state.done
            let due = now - state.lastReported >= max(1, total / 1000) || now == total
            if due { state.lastReported = now }
            return (now, due)
        }
        if due { report(now, total) }
    }
}
