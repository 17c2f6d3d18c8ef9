import Foundation
import TensorCore

/// Finds an expected tensor by name without a table keyed by every expected name.
///
/// A name is read once, as bytes, into its skeleton (each dot-separated component that is a plain decimal number
/// replaced by `#`) and those numbers. The manifest's name patterns (`model.layers.{L}.mlp.experts.{E}.…` plus a
/// stored-form suffix) are few: each is keyed by its skeleton's hash and knows which of its numbers is the layer,
/// which the expert or block, and which are literal (`mm_projector.proj.0`). The layer and index then select the
/// position in a per-pattern table. The match is confirmed against the pattern's own template (its bytes, with
/// the layer and index written in): the tensor at that position was named by rendering that template with that
/// layer and index, so its stored name need not be read (a cache miss per lookup in a list of 200,000 entries).
/// Where a name is the name of several expected tensors the first wins, as in a name-keyed table.
struct ExpectedNameIndex: Sendable {
    /// How one number of a pattern's skeleton is read.
    enum Slot: Sendable, Equatable {
        case literal(Int)
        case layer
        case index
    }

    /// One name pattern and the positions of its instances, keyed by (layer, index).
    struct Pattern: Sendable {
        var slots: [Slot]
        /// The template and suffix as rendered: runs of literal bytes, the layer and the index (each written as a
        /// plain decimal number).
        var rendered: [Rendered]
        var hasLayer: Bool
        var hasIndex: Bool
        /// (layer, index, position) in expansion order while building; emptied by `finish`.
        var pending: [(layer: Int, index: Int, position: Int)] = []
        /// Positions by `layer * indexSpan + index` (-1: none) when dense enough, else `sparse`.
        var dense: [Int32] = []
        var sparse: [Int: Int] = [:]
        var indexSpan = 1
        var layerSpan = 1
    }

    /// The most numbers a pattern's name may hold; names with more are never expected tensors of a pattern.
    static let maxSlots = 4
    /// One piece of a rendered name.
    enum Rendered: Sendable {
        case bytes([UInt8])
        case layer
        case index
    }

    /// Marks of the layer and index placeholders while a template is analysed (outside the byte range).
    static let layerMark: UInt16 = 0x100
    static let indexMark: UInt16 = 0x101

    private(set) var patterns: [Pattern] = []
    private var bySkeleton: [UInt64: [Int]] = [:]
    /// Pattern id by template text (with its suffix), so one template is analysed once.
    private var byTemplate: [String: Int] = [:]
    /// False when some expected name cannot be found this way (a placeholder inside a component, a value
    /// rendered as text); lookups then go through the name-keyed table.
    private(set) var usable = true

    /// The pattern id of a name template followed by `suffix`; nil (and the index unusable) when the template's
    /// placeholders are not whole components.
    mutating func pattern(_ template: NameTemplate, suffix: String) -> Int? {
        var key = template.source
        key += "\u{0}"
        key += suffix
        if let known = byTemplate[key] { return known }
        // The template rendered with one mark (outside the byte range) per placeholder, then split into components.
        var marked: [UInt16] = []
        for piece in template.pieces {
            switch piece {
            case .text(let t): marked += t.utf8.map(UInt16.init)
            case .layer: marked.append(Self.layerMark)
            case .index: marked.append(Self.indexMark)
            }
        }
        marked += suffix.utf8.map(UInt16.init)
        var slots: [Slot] = []
        var hasher = SkeletonHasher()
        var first = true
        var valid = true
        for component in marked.split(separator: UInt16(UInt8(ascii: ".")), omittingEmptySubsequences: false) {
            if !first { hasher.add(UInt8(ascii: ".")) }
            first = false
            if component.count == 1, component.first == Self.layerMark {
                slots.append(.layer); hasher.add(UInt8(ascii: "#"))
            } else if component.count == 1, component.first == Self.indexMark {
                slots.append(.index); hasher.add(UInt8(ascii: "#"))
            } else if component.contains(where: { $0 > 255 }) {
                valid = false
            } else if let value = Self.number(component.lazy.map { UInt8($0) }) {
                slots.append(.literal(value)); hasher.add(UInt8(ascii: "#"))
            } else {
                for b in component { hasher.add(UInt8(b)) }
            }
        }
        guard valid, slots.count <= Self.maxSlots else {
            usable = false
            return nil
        }
        let id = patterns.count
        var rendered: [Rendered] = []
        var run: [UInt8] = []
        for mark in marked {
            if mark <= 0xFF { run.append(UInt8(mark)); continue }
            if !run.isEmpty { rendered.append(.bytes(run)); run = [] }
            rendered.append(mark == Self.layerMark ? .layer : .index)
        }
        if !run.isEmpty { rendered.append(.bytes(run)) }
        patterns.append(Pattern(slots: slots, rendered: rendered, hasLayer: slots.contains(.layer), hasIndex: slots.contains(.index)))
        bySkeleton[hasher.value, default: []].append(id)
        byTemplate[key] = id
        return id
    }

    /// Records that the tensor at `position` is an instance of `pattern`.
    mutating func add(pattern: Int?, layer: Int?, index: Int?, position: Int) {
        guard usable, let pattern else { usable = false; return }
        let p = patterns[pattern]
        // A placeholder without a value renders as text (`{L}`), which this index does not read back.
        if p.hasLayer && (layer ?? -1) < 0 || p.hasIndex && (index ?? -1) < 0 {
            usable = false
            return
        }
        patterns[pattern].pending.append((p.hasLayer ? layer ?? 0 : 0, p.hasIndex ? index ?? 0 : 0, position))
    }

    /// Builds each pattern's table from what `add` recorded.
    mutating func finish() {
        guard usable else { patterns = []; bySkeleton = [:]; byTemplate = [:]; return }
        byTemplate = [:]
        for id in patterns.indices {
            var p = patterns[id]
            let maxLayer = p.pending.map(\.layer).max() ?? 0
            let maxIndex = p.pending.map(\.index).max() ?? 0
            p.indexSpan = maxIndex + 1
            p.layerSpan = maxLayer + 1
            if let cells = CheckedMath.multiply(p.layerSpan, p.indexSpan), cells <= 4 * p.pending.count + 64 {
                p.dense = [Int32](repeating: -1, count: cells)
                for (l, i, position) in p.pending where p.dense[l * p.indexSpan + i] < 0 {
                    p.dense[l * p.indexSpan + i] = Int32(position)
                }
            } else {
                for (l, i, position) in p.pending {
                    // Layer and index are both below `maxTensorCount`-bounded counts of instances, but a config
                    // may number layers sparsely: key by the pair.
                    let key = l &* (p.indexSpan) &+ i
                    if CheckedMath.multiply(l, p.indexSpan) == nil { usable = false; break }
                    if p.sparse[key] == nil { p.sparse[key] = position }
                }
            }
            p.pending = []
            patterns[id] = p
        }
        if !usable { patterns = []; bySkeleton = [:] }
    }

    /// The first position whose tensor is named `name`, or nil. Only meaningful when `usable`; relies on each
    /// position's tensor being named as its pattern renders (what `ExpectedTensorList` records with `add`).
    func position(of name: String) -> Int? {
        var name = name
        return name.withUTF8 { bytes -> Int? in
            var hasher = SkeletonHasher()
            var numbers = (0, 0, 0, 0)
            var count = 0
            var start = 0
            let n = bytes.count
            // An empty buffer may have no address; any address serves for the empty components it then holds.
            let base = bytes.baseAddress ?? UnsafePointer(bitPattern: 1)!
            while start <= n {
                // The next dot by a plain loop: components are a few bytes long, shorter than a call to memchr pays for.
                var end = start
                while end < n, base[end] != UInt8(ascii: ".") { end += 1 }
                if start > 0 { hasher.add(UInt8(ascii: ".")) }
                let component = UnsafeBufferPointer(start: base + start, count: end - start)
                if let value = Self.number(component) {
                    guard count < Self.maxSlots else { return nil }
                    switch count {
                    case 0: numbers.0 = value
                    case 1: numbers.1 = value
                    case 2: numbers.2 = value
                    default: numbers.3 = value
                    }
                    count += 1
                    hasher.add(UInt8(ascii: "#"))
                } else {
                    hasher.add(component)
                }
                start = end + 1
            }
            guard let candidates = bySkeleton[hasher.value] else { return nil }
            var best: Int?
            for id in candidates {
                // Fields are read in place (a copy of the pattern retains its arrays).
                guard patterns[id].slots.count == count else { continue }
                var layer = 0, index = 0, matches = true
                for k in 0..<count {
                    let value = k == 0 ? numbers.0 : k == 1 ? numbers.1 : k == 2 ? numbers.2 : numbers.3
                    switch patterns[id].slots[k] {
                    case .literal(let l): if l != value { matches = false }
                    case .layer: layer = value
                    case .index: index = value
                    }
                }
                guard matches, let position = patterns[id].position(layer: layer, index: index) else { continue }
                if let b = best, b <= position { continue }
                if patterns[id].renders(UnsafeBufferPointer(start: base, count: n), layer: layer, index: index) { best = position }
            }
            return best
        }
    }

    /// A dot-separated component as a number, when it is one written plainly (ASCII digits, no leading zero,
    /// at most 18 of them).
    static func number<C: Collection<UInt8>>(_ component: C) -> Int? {
        guard !component.isEmpty, component.count <= 18 else { return nil }
        if component.count > 1, component.first == UInt8(ascii: "0") { return nil }
        var value = 0
        for b in component {
            guard b >= UInt8(ascii: "0"), b <= UInt8(ascii: "9") else { return nil }
            value = value * 10 + Int(b - UInt8(ascii: "0"))
        }
        return value
    }
}

extension ExpectedNameIndex.Pattern {
    /// Whether `name` is exactly this pattern's template with `layer` and `index` written in (as `NameTemplate`
    /// renders them: plain decimal numbers), compared byte for byte.
    func renders(_ name: UnsafeBufferPointer<UInt8>, layer: Int, index: Int) -> Bool {
        var i = 0
        let n = name.count
        for piece in rendered {
            switch piece {
            case .bytes(let run):
                guard n - i >= run.count else { return false }
                let same = run.withUnsafeBufferPointer { r in
                    r.isEmpty || memcmp(name.baseAddress! + i, r.baseAddress!, r.count) == 0
                }
                guard same else { return false }
                i += run.count
            case .layer, .index:
                let value: Int
                if case .layer = piece { value = layer } else { value = index }
                var end = i
                while end < n, name[end] >= UInt8(ascii: "0"), name[end] <= UInt8(ascii: "9") { end += 1 }
                guard ExpectedNameIndex.number(UnsafeBufferPointer(rebasing: name[i..<end])) == value else { return false }
                i = end
            }
        }
        return i == n
    }

    func position(layer: Int, index: Int) -> Int? {
        guard layer < layerSpan, index < indexSpan else { return nil }
        if !dense.isEmpty {
            let p = dense[layer * indexSpan + index]
            return p < 0 ? nil : Int(p)
        }
        return sparse[layer &* indexSpan &+ index]
    }
}

/// A hash of a name's skeleton bytes, fed one byte at a time: the bytes are gathered eight to a word and each
/// word is mixed in with one multiply (a byte-at-a-time FNV-1a, one multiply per byte, was a fifth of the
/// lookup). Only compared with itself: the pattern's hash is made the same way.
struct SkeletonHasher {
    private var state: UInt64 = 0xcbf2_9ce4_8422_2325
    private var word: UInt64 = 0
    private var count = 0

    mutating func add(_ byte: UInt8) {
        word |= UInt64(byte) &<< UInt64(8 * (count & 7))
        count += 1
        if count & 7 == 0 {
            mix(word)
            word = 0
        }
    }

    /// The same as adding each byte in turn: whole words are loaded eight bytes at a time (little-endian, the
    /// order `add` gathers them in) once the word being gathered is empty.
    mutating func add(_ bytes: UnsafeBufferPointer<UInt8>) {
        var i = 0
        let n = bytes.count
        while i < n, count & 7 != 0 {
            add(bytes[i])
            i += 1
        }
        if let base = bytes.baseAddress {
            while n - i >= 8 {
                mix(UnsafeRawPointer(base + i).loadUnaligned(as: UInt64.self).littleEndian)
                count += 8
                i += 8
            }
        }
        while i < n {
            add(bytes[i])
            i += 1
        }
    }

    private mutating func mix(_ w: UInt64) {
        state = (state ^ w) &* 0x9E37_79B9_7F4A_7C15
        state ^= state &>> 29
    }

    /// The hash of the bytes added so far (their count included, so trailing zero bytes are not lost).
    var value: UInt64 {
        var copy = self
        copy.mix(word ^ UInt64(count) &<< 56)
        return copy.state
    }
}
