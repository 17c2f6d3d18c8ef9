import Checkpoint
import LoadedModel
import TestSupport
import Testing

/// `LoadedCheckpoint(path:)` plans the config (parse + expected tensor list) while the directory opens; what it
/// finds must be exactly what opening the directory first and planning afterwards finds.
@Suite("config planned while the directory opens")
struct ConfigPlanAheadTests {
    static let folders = goodFixtures + MalformedCase.all().map { "malformed/\($0.case)" }

    @Test("opening by path finds what opening the directory first finds", arguments: folders)
    func samePlan(folder: String) throws {
        let path = TestPaths.fixture(folder)
        let ahead: LoadedCheckpoint
        do { ahead = try LoadedCheckpoint(path: path) } catch {
            // A folder that is not a checkpoint fails the same way both ways.
            #expect(throws: error) { try CheckpointDirectory(path: path) }
            return
        }
        let after = LoadedCheckpoint(directory: try CheckpointDirectory(path: path))
        #expect(ahead.problems.map(\.message) == after.problems.map(\.message))
        #expect(ahead.positions == after.positions)
        #expect(ahead.expected?.tensors.map(\.name) == after.expected?.tensors.map(\.name))
        #expect(ahead.config?.architecture.name == after.config?.architecture.name)
    }
}
