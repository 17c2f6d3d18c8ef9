import Checkpoint
import Foundation
import Inspection
import LoadedModel
import ModelConfig
import TestSupport
import Testing

/// config.json is read once: the config inspect validates is the one convert, quantize and shard copy out.
@Suite("config.json read once")
struct ConfigReadOnceTests {
    @Test("the parsed config and expected tensors always come from the directory's config bytes, even while config.json is replaced")
    func sameBytes() throws {
        let dir = TemporaryDirectory()
        let folder = dir.copy(fixture: "k25-tiny")
        let original = try String(contentsOfFile: folder + "/config.json", encoding: .utf8)
        let fewer = original.replacingOccurrences(of: "\"num_hidden_layers\": 3", with: "\"num_hidden_layers\": 2")
        #expect(fewer != original)
        let versions = [Data(original.utf8), Data(fewer.utf8)]
        // Another process (a sync, a re-download) replaces config.json atomically, back and forth.
        let stop = Atomic(false)
        let finished = DispatchSemaphore(value: 0)
        let swapper = Thread {
            defer { finished.signal() }
            var i = 0
            while !stop.value {
                let temporary = folder + "/.config.json.swap"
                try? versions[i % 2].write(to: URL(fileURLWithPath: temporary))
                rename(temporary, folder + "/config.json")
                i += 1
            }
        }
        swapper.start()
        // The swapper stops before the folder is removed.
        defer {
            stop.value = true
            finished.wait()
        }
        for round in 0..<60 {
            let loaded = try LoadedCheckpoint(path: folder)
            let bytes = try #require(loaded.directory.configBytes, "round \(round)")
            let config = try ModelConfig.parse(bytes)
            #expect(loaded.config?.text.numLayers == config.text.numLayers, "round \(round)")
            #expect(loaded.expected?.tensors.count == (try ExpectedTensorList(config: config)).tensors.count, "round \(round)")
            #expect(!loaded.problems.contains { $0.code == "config" }, "round \(round): \(loaded.problems.map(\.message))")
        }
    }
}

/// A flag shared with the swapping thread.
private final class Atomic: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: Bool
    init(_ value: Bool) { stored = value }
    var value: Bool {
        get { lock.lock(); defer { lock.unlock() }; return stored }
        set { lock.lock(); stored = newValue; lock.unlock() }
    }
}
