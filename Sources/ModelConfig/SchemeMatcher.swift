import JSONCore

extension QuantizationScheme {
    /// The one implementation of compressed-tensors' group choice; `QuantizationScheme.group(for:className:)`
    /// builds one of these. Targets are resolved once, here (each `re:` pattern compiled or looked up once, each
    /// target mapped to its owning group), so choosing groups for many modules against one scheme (69,120 expert
    /// modules in a real K2.5) does no per-module lookups.
    ///
    /// The rule: a module matched by `ignore` is left alone; otherwise, of the targets that match it, an exact
    /// module name ranks first, then a `re:` pattern, then a class name, and at equal rank the target listed first
    /// wins. Targets map to groups as a Python dict built group by group: a target named by several groups belongs
    /// to the last of them (keeping the place where it was first listed). Names are compared as bytes.
    public struct Matcher: Sendable {
        enum Target: Sendable {
            case pattern(PythonPattern)
            case name(ByteName)

            init(_ text: String) {
                self = text.hasPrefix("re:") ? .pattern(PatternCache.shared.pattern(String(text.dropFirst(3)))) : .name(ByteName(text))
            }

            /// 0 for an exact module name, 1 for a matching `re:` pattern, 2 for the class name; nil when it does
            /// not match.
            func rank(_ module: ByteName, className: ByteName) -> Int? {
                switch self {
                case .pattern(let pattern): return pattern.matches(module.string) ? 1 : nil
                case .name(let name):
                    if name == module { return 0 }
                    if name == className { return 2 }
                    return nil
                }
            }
        }

        private let ignore: [Target]
        /// Every target in first-listed order, with the index of the group it belongs to.
        private let targets: [(target: Target, group: Int)]
        private let groups: [Group]

        public init(_ scheme: QuantizationScheme) {
            ignore = scheme.ignore.map(Target.init)
            groups = scheme.groups
            var order: [ByteName] = []
            var owner: [ByteName: Int] = [:]
            for (g, group) in scheme.groups.enumerated() {
                for target in group.targets {
                    let key = ByteName(target)
                    if owner.updateValue(g, forKey: key) == nil { order.append(key) }
                }
            }
            targets = order.map { (Target($0.string), owner[$0]!) }
        }

        /// Whether every module name that differs from `sample` only in its runs of ASCII digits (each run
        /// replaced by another non-empty run of digits: the other layers and experts of a name template) gets the
        /// group `sample` gets, whatever the class name: true when no `ignore` or target entry can tell such names
        /// apart. `re:` entries must be substring or prefix tests of digit-free literals (`ignoresDigitRuns`); an
        /// exact name must have other digit-free runs than `sample` (it then equals none of those names: equal
        /// names have equal runs), its class-name comparison not depending on the module. False otherwise (a
        /// regular expression may pick out one layer or expert), and the caller asks name by name.
        public func decidesAlike(namesLike sample: String) -> Bool {
            let shape = Self.digitRunShape(sample)
            func alike(_ target: Target) -> Bool {
                switch target {
                case .pattern(let pattern): return pattern.ignoresDigitRuns
                case .name(let name): return Self.digitRunShape(name.string) != shape
                }
            }
            return ignore.allSatisfy(alike) && targets.allSatisfy { alike($0.target) }
        }

        /// A name's bytes with each maximal run of ASCII digits replaced by one mark outside the byte range: equal
        /// for exactly the names that differ only in their digit runs.
        static func digitRunShape(_ name: String) -> [UInt16] {
            var shape: [UInt16] = []
            var inRun = false
            for b in name.utf8 {
                let digit = b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9")
                if digit, inRun { continue }
                inRun = digit
                shape.append(digit ? 0x100 : UInt16(b))
            }
            return shape
        }

        public func group(for module: String, className: String) -> Group? {
            let module = ByteName(module), className = ByteName(className)
            if ignore.contains(where: { $0.rank(module, className: className) != nil }) { return nil }
            var best: (rank: Int, group: Int)?
            for (target, group) in targets {
                guard let rank = target.rank(module, className: className) else { continue }
                if best == nil || rank < best!.rank { best = (rank, group) }
                if rank == 0 { break }
            }
            return best.map { groups[$0.group] }
        }
    }
}
