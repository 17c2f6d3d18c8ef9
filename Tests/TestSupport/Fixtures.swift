import Foundation

/// The fixture generator's own record of a good fixture (`Fixtures/<name>.expected.json`).
public struct FixtureRecord: Decodable, Sendable {
    public var architecture: String
    public var tensorCount: Int
    public var shardCount: Int
    public var totalBytes: Int
    public var totalParams: Int
    public var numLayers: Int
    public var numDenseLayers: Int
    public var numMoeLayers: Int
    public var numRoutedExperts: Int
    public var quantizedModules: Int
    public var paramsByRole: [String: Int]
    public var bytesByRole: [String: Int]

    public static func load(_ name: String) throws -> FixtureRecord {
        let data = try Data(contentsOf: TestPaths.fixtures.appendingPathComponent("\(name).expected.json"))
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return try decoder.decode(FixtureRecord.self, from: data)
    }
}

extension FixtureRecord {
    /// The text model's `vocab_size` in a fixture's config.json (its `text_config` for K2.5), so tests follow the
    /// fixture generator instead of hard-coding it.
    public static func vocabularySize(_ name: String) throws -> Int {
        let data = try Data(contentsOf: TestPaths.fixtures.appendingPathComponent("\(name)/config.json"))
        let root = try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
        let text = root["text_config"] as? [String: Any] ?? root
        guard let vocab = text["vocab_size"] as? Int else {
            throw CocoaError(.fileReadCorruptFile, userInfo: [NSFilePathErrorKey: "\(name)/config.json: no vocab_size"])
        }
        return vocab
    }
}

/// One case of the malformed corpus (`Fixtures/malformed/cases.json`).
public struct MalformedCase: Decodable, Sendable {
    public var `case`: String
    public var description: String
    public var culpritFile: String?
    public var culpritTensor: String?

    public var path: String { TestPaths.fixture("malformed/\(self.case)") }

    public static func all() -> [MalformedCase] {
        guard let data = try? Data(contentsOf: TestPaths.fixtures.appendingPathComponent("malformed/cases.json")) else { return [] }
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return (try? decoder.decode([MalformedCase].self, from: data)) ?? []
    }
}


/// The good fixtures, by folder name.
public let goodFixtures = ["k25-tiny", "k2-thinking-tiny", "deepseek-v3-tiny", "malformed/base"]
