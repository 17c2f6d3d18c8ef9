import Foundation

/// The architecture manifests shipped with k2pack: JSON files under `Manifests/json/`.
public enum ManifestResources {
    /// The bytes of `json/<name>.json`, or nil when no such manifest ships.
    public static func data(named name: String) -> Data? {
        guard let url = Bundle.module.url(forResource: name, withExtension: "json", subdirectory: "json") else {
            return nil
        }
        return try? Data(contentsOf: url)
    }
}
