import Foundation
import PackFormat
import Repack
import TestSupport
import Testing

/// Issue 14, item 2: one map from a source tensor to its stored slices, for export, merge, verify and ModelStore.
@Suite("PackSliceIndex: source tensor → stored slices")
struct PackSliceIndexTests {
    @Test("every source of a converted folder is found once, where its stored tensor puts it; a stack's experts back to back")
    func convertedFolder() throws {
        let dir = TemporaryDirectory()
        _ = try Converter.convert(input: TestPaths.fixture("k2-thinking-tiny"), output: dir.path + "/p")
        let manifest = try PackManifest.read(folder: dir.path + "/p")
        let files = try manifest.files.map { try PackFile(folder: dir.path + "/p", name: $0) }
        let index = PackSliceIndex(files)
        #expect(index.firstDuplicate == nil)
        let sources = files.flatMap { $0.table.tensors.flatMap(\.sources) }
        #expect(index.slices.count == sources.count)
        for (f, file) in files.enumerated() {
            for t in file.table.tensors {
                var at = t.offset
                for (i, s) in t.sources.enumerated() {
                    let found = index[s.name]
                    #expect(found.count == 1 && found[0].file == f && found[0].index == i && found[0].tensor.name == t.name)
                    #expect(found[0].range == at..<(at + s.length))
                    #expect(found[0].isWholeTensor == (t.sources.count == 1 && s.name == t.name))
                    at += s.length
                }
            }
        }
        let stacked = try #require(files.flatMap(\.table.tensors).first { $0.sources.count > 1 })
        #expect(!index[stacked.sources[1].name][0].isWholeTensor)
        #expect(index["no such tensor"].isEmpty)
    }

    @Test("a source stored twice is recorded as the first duplicate, both slices kept in order; remove takes a name out")
    func duplicates() throws {
        let dir = TemporaryDirectory()
        _ = try Converter.convert(input: TestPaths.fixture("k2-thinking-tiny"), output: dir.path + "/p")
        let file = try PackFile(folder: dir.path + "/p", name: "globals.k2p")
        var index = PackSliceIndex()
        for t in file.table.tensors { index.add(t, file: 0) }
        let first = try #require(file.table.tensors.first)
        index.add(first, file: 1)
        let twice = try #require(index.firstDuplicate)
        #expect(twice.name == first.sources[0].name && twice.first.file == 0 && twice.second.file == 1)
        #expect(index[first.sources[0].name].map(\.file) == [0, 1])
        #expect(index.remove(first.sources[0].name).count == 2)
        #expect(index[first.sources[0].name].isEmpty)
    }
}
