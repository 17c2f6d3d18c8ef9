import JSONCore

extension ModelConfig {
    /// The architecture part read from the vision config (the vision tower's spec manifest and name prefix), or
    /// nil for a text-only architecture.
    public var visionPart: ArchitecturePart? { architecture.parts.first { $0.config == .vision } }

    /// The vision config checked against its manifest's `config_keys` (defaults filled in). Only the vision
    /// tower's own runs ask for this: a config whose vision section the reference vision pass cannot run is
    /// still readable by every other command. Throws when the architecture has no vision tower.
    public func resolvedVisionSettings() throws(ConfigError) -> [String: JSONValue] {
        guard let part = visionPart, let key = architecture.visionConfigKey, let vision else {
            throw .invalidValue(
                file: ModelConfig.fileName, section: "config", key: "model_type",
                reason: "\(architecture.displayName) has no vision tower")
        }
        let rules = try ManifestLibrary.configRules(named: part.specs)
        return try ConfigRuleChecker(file: ModelConfig.fileName, section: key).resolve(vision, rules: rules)
    }
}
