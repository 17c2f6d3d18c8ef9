import Dispatch
import TensorCore
import Testing

@Suite("Locked, SendablePointer, ProgressCounter, parallelMap")
struct ConcurrencyTests {
    @Test("Locked: every increment from many threads counts once")
    func lockedCounts() {
        let count = Locked(0)
        DispatchQueue.concurrentPerform(iterations: 8) { _ in
            for _ in 0..<1000 { count.withLock { $0 += 1 } }
        }
        #expect(count.withLock { $0 } == 8000)
    }

    @Test("SendablePointer: workers writing disjoint ranges fill the whole buffer")
    func pointerRanges() {
        let buffer = UnsafeMutablePointer<Int>.allocate(capacity: 64)
        defer { buffer.deallocate() }
        let target = SendablePointer(buffer)
        DispatchQueue.concurrentPerform(iterations: 8) { worker in
            for i in (worker * 8)..<(worker * 8 + 8) { target.pointer[i] = i * 2 }
        }
        #expect((0..<64).allSatisfy { buffer[$0] == $0 * 2 })
    }

    @Test("ProgressCounter: the total is reported, and at most once per 1/1000 of it")
    func progressReports() {
        let seen = Locked([Int]())
        let counter = ProgressCounter(total: 10_000) { done, total in
            #expect(total == 10_000)
            seen.withLock { $0.append(done) }
        }
        DispatchQueue.concurrentPerform(iterations: 10) { _ in
            for _ in 0..<100 { counter.add(10) }
        }
        let reports = seen.withLock { $0 }
        #expect(reports.contains(10_000))
        #expect(reports.count <= 1001)
    }

    @Test("parallelMap returns every result in order; AtomicCounter hands out each index once")
    func parallelMapOrder() {
        #expect(parallelMap(count: 100, width: 4) { $0 * $0 } == (0..<100).map { $0 * $0 })
        let counter = AtomicCounter()
        let taken = parallelMap(count: 50, width: 4) { _ in counter.increment() }
        #expect(Set(taken) == Set(0..<50))
    }
}
