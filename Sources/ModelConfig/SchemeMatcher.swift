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
