extension QuantizationScheme {
    /// `group(for:className:)` for many modules against one scheme: each `re:` pattern is looked up once, here,
    /// rather than once per module and pattern (69,120 expert modules in a real K2.5). Same rules, same answers.
    public struct Matcher: Sendable {
        private enum Target: Sendable {
            case pattern(PythonPattern)
            case name(String)
        }

        private let ignore: [Target]
        private let groups: [(group: Group, targets: [Target])]

        public init(_ scheme: QuantizationScheme) {
            func target(_ text: String) -> Target {
                text.hasPrefix("re:") ? .pattern(PatternCache.shared.pattern(String(text.dropFirst(3)))) : .name(text)
            }
            ignore = scheme.ignore.map(target)
            groups = scheme.groups.map { ($0, $0.targets.map(target)) }
        }

        public func group(for module: String, className: String) -> Group? {
            if ignore.contains(where: { Self.matches(module, className: className, target: $0) }) { return nil }
            return groups.first { g in g.targets.contains { Self.matches(module, className: className, target: $0) } }?.group
        }

        private static func matches(_ module: String, className: String, target: Target) -> Bool {
            switch target {
            case .pattern(let pattern): pattern.matches(module)
            case .name(let name): name == module || name == className
            }
        }
    }
}
