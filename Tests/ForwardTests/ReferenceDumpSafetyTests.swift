import Forward
import Foundation
import Parity
import TestSupport
import Testing

/// Reference dumps are untrusted: their data must lie in the file itself (no external storage, virtual datasets,
/// soft or external links), their shapes are checked against the model before anything is allocated, logits are
/// read in row blocks, and the logit statistics refuse what they cannot compute.
@Suite("reference dumps: storage, links, sizes; logit statistics on degenerate input")
struct ReferenceDumpSafetyTests {
    func message(_ body: () throws -> Void) -> String {
        do { try body(); return "no error" } catch { return "\(error)" }
    }

    /// A dump with input_ids [1, 2] plus whatever `extra` adds; the writer is closed before it is read.
    func dump(_ temp: TemporaryDirectory, name: String = "ref.h5", _ extra: (HDF5File) throws -> Void) throws -> String {
        let path = temp.path + "/" + name
        do {
            let file = try HDF5File.create(path)
            try file.write("input_ids", int32s: [3, 4], shape: [1, 2])
            try extra(file)
        }
        return path
    }

    @Test("external raw storage is refused before any byte is read: /dev/zero, a FIFO, /etc/passwd, a plain file")
    func externalStorage() throws {
        let temp = TemporaryDirectory()
        let fifo = temp.path + "/fifo"
        #expect(mkfifo(fifo, 0o600) == 0)
        temp.write("plain.bin", [UInt8](repeating: 0, count: 64))
        for target in ["/dev/zero", fifo, "/etc/passwd", temp.path + "/plain.bin"] {
            let path = try dump(temp) { try $0.create("layers/0/layer_out", shape: [1, 2, 4], layout: .externalStorage(file: target)) }
            let ref = try ReferenceDump(spec: path)
            #expect(message { _ = try ref.activation("layers/0/layer_out", width: 4) }
                == "\(path): /layers/0/layer_out keeps its data in external files; a reference dump must hold its data itself", "\(target)")
            let logits = try dump(temp, name: "logits.h5") { try $0.create("logits", shape: [1, 2, 4], layout: .externalStorage(file: target)) }
            #expect(message { _ = try ReferenceDump(spec: logits).logitsVocabulary() }.contains("/logits keeps its data in external files"), "\(target)")
        }
    }

    @Test("virtual datasets (mapped from other files) are refused")
    func virtual() throws {
        let temp = TemporaryDirectory()
        let source = try dump(temp, name: "source.h5") { try $0.write("data", floats: [1, 2, 3, 4, 5, 6, 7, 8], shape: [1, 2, 4]) }
        let path = try dump(temp) { try $0.create("logits", shape: [1, 2, 4], layout: .virtual(file: source, dataset: "/data")) }
        #expect(message { _ = try ReferenceDump(spec: path).logitsVocabulary() }
            == "\(path): /logits is a virtual dataset (mapped from other datasets or files); a reference dump must hold its data itself")
        let activation = try dump(temp, name: "act.h5") { try $0.create("final_norm_out", shape: [1, 2, 4], layout: .virtual(file: source, dataset: "/data")) }
        #expect(message { _ = try ReferenceDump(spec: activation).activation("final_norm_out", width: 4) }.contains("is a virtual dataset"))
    }

    @Test("soft and external links are never followed: as a dataset, as the group, as input_ids")
    func links() throws {
        let temp = TemporaryDirectory()
        let other = try dump(temp, name: "other.h5") { try $0.write("logits", floats: [1, 2, 3, 4], shape: [1, 2, 2]) }
        let external = try dump(temp) { try $0.linkExternal("logits", file: other, object: "/logits") }
        #expect(message { _ = try ReferenceDump(spec: external).logitsVocabulary() }
            == "\(external): /logits is an external link to another file; a reference dump must hold its datasets itself (links are not followed)")
        let soft = try dump(temp, name: "soft.h5") { file in
            try file.write("real", floats: [1, 2, 3, 4], shape: [1, 2, 2])
            try file.linkSoft("logits", to: "/real")
        }
        #expect(message { _ = try ReferenceDump(spec: soft).logitsVocabulary() }.contains("/logits is a soft link"))
        // The group itself an external link to another dump: refused at the group, nothing in the other file is read.
        let group = try dump(temp, name: "group.h5") { try $0.linkExternal("exact", file: other, object: "/") }
        #expect(message { _ = try ReferenceDump(spec: group + ":/exact") }.contains("/exact is an external link to another file"))
        // input_ids a soft link.
        let ids = temp.path + "/ids.h5"
        do {
            let file = try HDF5File.create(ids)
            try file.write("g/real_ids", int32s: [1, 2], shape: [1, 2])
            try file.linkSoft("g/input_ids", to: "/g/real_ids")
        }
        #expect(message { _ = try ReferenceDump(spec: ids + ":/g") }.contains("/g/input_ids is a soft link"))
        // An external link to /etc/passwd (not HDF5) as an activation.
        let passwd = try dump(temp, name: "passwd.h5") { try $0.linkExternal("layers/0/layer_in", file: "/etc/passwd", object: "/x") }
        #expect(message { _ = try ReferenceDump(spec: passwd).activation("layers/0/layer_in", width: 4) }.contains("is an external link"))
    }

    @Test("a dump that is a FIFO or a folder is refused without blocking")
    func notRegular() throws {
        let temp = TemporaryDirectory()
        let fifo = temp.path + "/ref.h5"
        #expect(mkfifo(fifo, 0o600) == 0)
        #expect(message { _ = try ReferenceDump(spec: fifo) }
            == "\(fifo): not a regular file (a FIFO, device or folder); a reference dump is an HDF5 file")
        #expect(message { _ = try ReferenceDump(spec: temp.path) }.contains("not a regular file"))
        #expect(message { _ = try ReferenceDump(spec: "/dev/null") }.contains("not a regular file"))
    }

    @Test("huge compressed datasets in a small file are refused by shape before anything is allocated")
    func hugeCompressed() throws {
        let temp = TemporaryDirectory()
        let path = try dump(temp) { file in
            try file.create("layers/0/layer_out", shape: [1, 2, 1 << 29], layout: .compressed(chunk: [1, 1, 1 << 20]))
            try file.create("logits", shape: [1, 2, 1 << 30], layout: .compressed(chunk: [1, 1, 1 << 20]))
        }
        let size = try #require(try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int)
        #expect(size < 1 << 20, "the dump is \(size) bytes")
        let ref = try ReferenceDump(spec: path)
        #expect(message { _ = try ref.activation("layers/0/layer_out", width: 64) }
            == "\(path): layers/0/layer_out has shape [1, 2, 536870912], expected [1, 2, 64] (input_ids is [1, 2])")
        #expect(message { _ = try ref.logitsVocabulary() } == "\(path): logits has a vocabulary of 1073741824, more than k2pack accepts (16777216)")
        #expect(message { _ = try ref.logits() }.contains("more than k2pack accepts"))
        let wrongShape = try dump(temp, name: "shape.h5") { try $0.write("logits", floats: [1, 2, 3, 4], shape: [2, 1, 2]) }
        #expect(message { _ = try ReferenceDump(spec: wrongShape).logitsVocabulary() }
            == "\(wrongShape): logits has shape [2, 1, 2], expected [1, 2, vocab] (input_ids is [1, 2])")
        let empty = try dump(temp, name: "empty.h5") { try $0.write("logits", floats: [], shape: [1, 2, 0]) }
        #expect(message { _ = try ReferenceDump(spec: empty).logitsVocabulary() } == "\(empty): logits has shape [1, 2, 0]: a vocabulary of 0")
        // A block read is bounded too.
        #expect(message { _ = try HDF5File.open(path).readFloatBlock("logits", start: [0, 0, 0], count: [1, 2, 1 << 30]) }
            .contains("exceeds 268435456 elements"))
        #expect(message { _ = try HDF5File.open(path).readFloatBlock("logits", start: [0, 1, 0], count: [1, 2, 4]) }.contains("is outside its shape"))
    }

    @Test("logits are read in row blocks: any block size gives the statistics of the whole read")
    func rowBlocks() throws {
        let ref = try ReferenceDump(spec: ParityHarness.reference("k25-tiny", "/exact"))
        let test = try ReferenceDump(spec: ParityHarness.reference("k25-tiny", "/bf16"))
        let vocab = try #require(try ref.logitsVocabulary())
        let (a, _) = try #require(try ref.logits()), (b, _) = try #require(try test.logits())
        let whole = try LogitStatistics(ids: ref.inputIDs, sequences: 2, tokens: 8, reference: a, test: b, vocab: vocab)
        for rows in [1, 3, 7, 16] {
            let blocks = try LogitStatistics(
                ids: ref.inputIDs, sequences: 2, tokens: 8, vocab: vocab, reference: ref.logitSource(vocab: vocab),
                test: test.logitSource(vocab: vocab), blockElements: rows * vocab)
            #expect(blocks.kld == whole.kld && blocks.deltaP == whole.deltaP && blocks.sameTop1 == whole.sameTop1, "\(rows) rows per block")
        }
    }

    @Test("non-finite logits are refused naming the source and the position")
    func nonFinite() {
        let good: [Float] = [0, 1, 2, 3, 4, 5]
        for (position, value) in [(0, Float.nan), (4, Float.infinity), (5, -Float.infinity)] {
            var bad = good
            bad[position] = value
            let expected = LogitStatistics.LogitError.nonFinite(source: "test logits", sequence: 0, token: position / 3, index: position % 3, value: value)
            #expect(message { _ = try LogitStatistics(ids: [1, 2], sequences: 1, tokens: 2, reference: good, test: bad, vocab: 3) } == expected.description)
        }
        var nan = good
        nan[1] = .nan
        #expect(message { _ = try LogitStatistics(ids: [1, 2], sequences: 1, tokens: 2, reference: nan, test: good, vocab: 3) }
            == "reference logits[0][0][1] is nan: logits must be finite for KL divergence and perplexity")
        #expect(message { _ = try LogitStatistics(ids: [1, 2], sequences: 1, tokens: 2, reference: [], test: [], vocab: 0) }
            == "reference logits has a vocabulary of 0 (its last dimension is empty): nothing to compare")
    }

    @Test("huge logits give exact, non-negative divergences ((x − m) − log Σ)")
    func hugeLogits() throws {
        // Both rows are [½, ½, 0]: the divergence is 0 (subtracting log Σ after a 3e38 maximum lost ln 2 before: −0.693).
        let stats = try LogitStatistics(ids: [0], sequences: 1, tokens: 1, reference: [0, 0, -1e30], test: [3e38, 3e38, 0], vocab: 3)
        #expect(abs(stats.kld.max) < 1e-12 && abs(stats.kld.min) < 1e-12, "KLD \(stats.kld.min)...\(stats.kld.max)")
        let reverse = try LogitStatistics(ids: [0], sequences: 1, tokens: 1, reference: [3e38, 3e38, 0], test: [1, 1, -5], vocab: 3)
        #expect(reverse.kld.min >= 0, "KLD \(reverse.kld.min)")
        let extreme = try LogitStatistics(
            ids: [0, 1], sequences: 1, tokens: 2, reference: [3.4e38, -3.4e38, 0, 0], test: [-3.4e38, 3.4e38, 0, 0], vocab: 2)
        #expect(extreme.kld.max.isFinite && extreme.kld.max > 0 && extreme.kld.min >= 0, "KLD \(extreme.kld.min)...\(extreme.kld.max)")
    }
}
