import CKernels
import Foundation

/// A set of names, each a byte string with a small integer value, stored back to back in one buffer and found by
/// hash: the index's 208,550 tensor names (or a header's few thousand) without a `String`, an allocation or a
/// SipHash per name. Names are compared as bytes, as `ByteName` compares them.
///
/// The hash mixes eight bytes per multiply, from a per-process random seed. Should a probe ever run long (names
/// crafted to collide), the table switches to the standard library's seeded SipHash (`Hasher`) and places every
/// name again, so hostile input costs one rebuild, never a quadratic fill.
struct NameTable: Sendable {
    private struct Slot {
        /// Where the name's bytes start in `bytes`, and how many there are.
        var start: UInt32
        var length: UInt32
        /// The caller's value; -1 marks an empty slot.
        var value: Int32
        /// High bits of the name's hash, compared before the name itself.
        var tag: UInt32

        static let empty = Slot(start: 0, length: 0, value: -1, tag: 0)
    }

    /// Every name's bytes, in insertion order.
    private var bytes: [UInt8] = []
    private var slots: [Slot]
    private var mask: Int
    private(set) var count = 0
    private var sipHash = false
    /// Longest run of occupied slots an insert may walk before the table turns to SipHash.
    private static let longProbe = 64
    private static let seed = UInt64.random(in: .min ... .max)

    /// `expectedCount` names of `expectedBytes` bytes in all: sizes reserved up front (only a hint). `sipHash`:
    /// start with SipHash (tests; otherwise only a long probe turns it on).
    init(expectedCount: Int, expectedBytes: Int, sipHash: Bool = false) {
        self.sipHash = sipHash
        var capacity = 16
        while capacity < 2 * max(0, min(expectedCount, 1 << 26)) { capacity <<= 1 }
        slots = Self.emptySlots(capacity)
        mask = capacity - 1
        bytes.reserveCapacity(max(0, min(expectedBytes, Int(UInt32.max))))
        let reserved = bytes.capacity
        bytes.withUnsafeMutableBufferPointer { Self.adviseHugePages(UnsafeMutableRawPointer($0.baseAddress), bytes: reserved) }
    }

    /// `capacity` empty slots, in huge pages where the system allows.
    private static func emptySlots(_ capacity: Int) -> [Slot] {
        [Slot](unsafeUninitializedCapacity: capacity) { buffer, count in
            adviseHugePages(UnsafeMutableRawPointer(buffer.baseAddress), bytes: capacity * MemoryLayout<Slot>.stride)
            buffer.initialize(repeating: .empty)
            count = capacity
        }
    }

    /// Asks for transparent huge pages over the 2 MiB-aligned part of a large buffer not yet touched. A lookup or
    /// an insert lands at a random place in the index's 8 MB of slots and 15 MB of names: with 4 KiB pages most
    /// of them missed the TLB as well as the cache (and each page cost a fault). Only advice: ignored where THP
    /// is off.
    private static func adviseHugePages(_ start: UnsafeMutableRawPointer?, bytes count: Int) {
        let huge = 2 << 20
        guard let start, count >= 2 * huge else { return }
        let begin = (Int(bitPattern: start) + huge - 1) & ~(huge - 1)
        let end = (Int(bitPattern: start) + count) & ~(huge - 1)
        guard end > begin, let aligned = UnsafeMutableRawPointer(bitPattern: begin) else { return }
        _ = madvise(aligned, end - begin, MADV_HUGEPAGE)
    }

    /// The value of `name`, or nil when it is not in the table.
    func value(of name: UnsafeRawBufferPointer) -> Int? { value(of: name, hash: hash(name)) }

    /// `value(of:)` with the name's hash already computed (`hash(name)`).
    private func value(of name: UnsafeRawBufferPointer, hash h: UInt64) -> Int? {
        let tag = UInt32(truncatingIfNeeded: h &>> 32)
        var i = Int(truncatingIfNeeded: h) & mask
        return slots.withUnsafeBufferPointer { slots in
            bytes.withUnsafeBytes { stored in
                while true {
                    let slot = slots[i]
                    if slot.value < 0 { return nil }
                    if slot.tag == tag, Self.equal(slot, name, stored) { return Int(slot.value) }
                    i = (i + 1) & mask
                }
            }
        }
    }

    /// The values of `count` names (`withName(i, body)` lends name `i`'s bytes to `body`), nil where absent; the
    /// same answers as `value(of:)` one name at a time. Hashes every name first and asks for its slot's cache line,
    /// then for the stored bytes that slot points at, and only then probes: the random reads into a large table
    /// (the index's 8 MB of slots, 15 MB of names) overlap instead of waiting one after another.
    func values(count: Int, withName: (Int, (UnsafeRawBufferPointer) -> Void) -> Void) -> [Int?] {
        var hashes = [UInt64](repeating: 0, count: count)
        slots.withUnsafeBufferPointer { slots in
            for n in 0..<count {
                withName(n) { name in hashes[n] = hash(name) }
                ck_prefetch(slots.baseAddress! + (Int(truncatingIfNeeded: hashes[n]) & mask))
            }
            bytes.withUnsafeBytes { stored in
                guard let base = stored.baseAddress else { return }
                for h in hashes {
                    let slot = slots[Int(truncatingIfNeeded: h) & mask]
                    if slot.value >= 0 { ck_prefetch(base + Int(slot.start)) }
                }
            }
        }
        var result = [Int?](repeating: nil, count: count)
        for n in 0..<count {
            withName(n) { name in result[n] = value(of: name, hash: hashes[n]) }
        }
        return result
    }

    /// A name's hash computed ahead of its `insert`, under the hash in force then.
    struct PreparedHash {
        var value: UInt64
        var sipHash: Bool
    }

    /// Hashes `name` for a later `insert(_:value:prepared:)` and asks for the cache line of its first slot, so that
    /// inserts a few names apart overlap their cache misses.
    func prepareInsert(_ name: UnsafeRawBufferPointer) -> PreparedHash {
        let h = hash(name)
        slots.withUnsafeBufferPointer { slots in
            if let base = slots.baseAddress { ck_prefetch(base + (Int(truncatingIfNeeded: h) & mask)) }
        }
        return PreparedHash(value: h, sipHash: sipHash)
    }

    /// Adds `name` with `value` (0 ... Int32.max) unless it is already there; returns the value it already had,
    /// or nil when it was added. Callers hold names read from inputs that are capped well below 4 GiB in all.
    /// `prepared`: `prepareInsert(name)`, used when the table still hashes the same way.
    mutating func insert(_ name: UnsafeRawBufferPointer, value: Int, prepared: PreparedHash? = nil) -> Int? {
        precondition(value >= 0 && value <= Int(Int32.max), "NameTable: value out of range")
        precondition(bytes.count + name.count <= Int(UInt32.max), "NameTable: more than 4 GiB of names")
        let known = prepared.flatMap { $0.sipHash == sipHash ? $0.value : nil }
        if let found = place(name, start: nil, value: value, hash: known) { return found }
        count += 1
        if 2 * count > slots.count { grow() }
        return nil
    }

    /// Replaces every value by `transform(value)` (0 ... Int32.max).
    mutating func mapValues(_ transform: (Int) -> Int) {
        for i in slots.indices where slots[i].value >= 0 {
            let value = transform(Int(slots[i].value))
            precondition(value >= 0 && value <= Int(Int32.max), "NameTable: value out of range")
            slots[i].value = Int32(value)
        }
    }

    /// Every (name, value), in no particular order.
    func forEach(_ body: (UnsafeRawBufferPointer, Int) -> Void) {
        bytes.withUnsafeBytes { stored in
            for slot in slots where slot.value >= 0 {
                body(UnsafeRawBufferPointer(rebasing: stored[Int(slot.start)..<Int(slot.start + slot.length)]), Int(slot.value))
            }
        }
    }

    /// Finds `name`'s slot: returns its value when present; otherwise fills the empty slot at the end of the
    /// probe (`start`: where its bytes already are in `bytes`, else they are appended) and returns nil.
    private mutating func place(_ name: UnsafeRawBufferPointer, start: Int?, value: Int, hash known: UInt64? = nil) -> Int? {
        let h = known ?? hash(name)
        let tag = UInt32(truncatingIfNeeded: h &>> 32)
        var i = Int(truncatingIfNeeded: h) & mask
        var probes = 0
        let found: Int? = slots.withUnsafeBufferPointer { slots in
            bytes.withUnsafeBytes { stored in
                while slots[i].value >= 0 {
                    if slots[i].tag == tag, Self.equal(slots[i], name, stored) { return Int(slots[i].value) }
                    i = (i + 1) & mask
                    probes += 1
                }
                return nil
            }
        }
        if let found { return found }
        let offset = start ?? bytes.count
        // As typed bytes, so the append is one copy (a raw buffer is appended a byte at a time).
        if start == nil { bytes.append(contentsOf: name.assumingMemoryBound(to: UInt8.self)) }
        slots[i] = Slot(start: UInt32(offset), length: UInt32(name.count), value: Int32(value), tag: tag)
        if probes > Self.longProbe, !sipHash {
            sipHash = true
            rehash(capacity: slots.count)
        }
        return nil
    }

    private mutating func grow() { rehash(capacity: slots.count * 2) }

    /// Places every name again in a table of `capacity` slots (with the hash now in force).
    private mutating func rehash(capacity: Int) {
        let old = slots
        slots = Self.emptySlots(capacity)
        mask = capacity - 1
        let all = bytes
        all.withUnsafeBytes { stored in
            for slot in old where slot.value >= 0 {
                let name = UnsafeRawBufferPointer(rebasing: stored[Int(slot.start)..<Int(slot.start + slot.length)])
                _ = place(name, start: Int(slot.start), value: Int(slot.value))
            }
        }
    }

    private static func equal(_ slot: Slot, _ name: UnsafeRawBufferPointer, _ stored: UnsafeRawBufferPointer) -> Bool {
        guard Int(slot.length) == name.count else { return false }
        guard let a = name.baseAddress, let b = stored.baseAddress else { return name.isEmpty }
        return memcmp(a, b + Int(slot.start), name.count) == 0
    }

    private func hash(_ name: UnsafeRawBufferPointer) -> UInt64 {
        if sipHash {
            var hasher = Hasher()
            hasher.combine(bytes: name)
            return UInt64(truncatingIfNeeded: hasher.finalize())
        }
        let k: UInt64 = 0x9E37_79B9_7F4A_7C15
        var h = Self.seed ^ (UInt64(name.count) &* k)
        let n = name.count
        var i = 0
        while i + 8 <= n {
            h = (h ^ name.loadUnaligned(fromByteOffset: i, as: UInt64.self)) &* k
            h ^= h &>> 29
            i += 8
        }
        if i < n {
            var word: UInt64 = 0
            var shift: UInt64 = 0
            while i < n {
                word |= UInt64(name[i]) &<< shift
                shift += 8
                i += 1
            }
            h = (h ^ word) &* k
            h ^= h &>> 29
        }
        h = (h ^ (h &>> 32)) &* 0xD6E8_FEB8_6659_FD93
        return h ^ (h &>> 32)
    }
}
