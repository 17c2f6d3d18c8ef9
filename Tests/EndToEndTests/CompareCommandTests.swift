import Foundation
import Parity
import TestSupport
import Testing

/// `compare` and `parity` on degenerate input: every case exits 1 with a message naming the dump and the
/// position, never 0 with a meaningless statistic; bad options are refused before anything runs.
@Suite("compare and parity refuse degenerate input")
struct CompareCommandTests {
    let exact = TestPaths.fixtures.appendingPathComponent("references/k25-tiny.h5").path + ":/exact"

    /// Writes a dump with `ids` of `shape` and `logits` of `[shape…, vocab]`.
    func write(_ path: String, ids: [Int32], shape: [Int], logits: [Float], vocab: Int) throws {
        let file = try HDF5File.create(path)
        try file.write("input_ids", int32s: ids, shape: shape)
        try file.write("logits", floats: logits, shape: shape + [vocab])
    }

    /// The fixture's input_ids [2, 8], logits [2, 8, V] and its vocabulary V.
    func fixture() throws -> (ids: [Int32], logits: [Float], vocab: Int) {
        let ref = try ReferenceDump(spec: exact)
        let logits = try #require(try ref.logits())
        return (ref.inputIDs, logits.values, logits.vocab)
    }

    @Test("NaN or infinite logits in either dump exit 1 naming dump, dataset and position")
    func nonFinite() throws {
        let temp = TemporaryDirectory()
        let (ids, logits, vocab) = try fixture()
        for (index, value, name) in [(1 * 8 * vocab + 3 * vocab + 17, Float.nan, "nan"), (0, Float.infinity, "inf"), (4095, -Float.infinity, "-inf")] {
            var bad = logits
            bad[index] = value
            let path = temp.path + "/bad-\(name).h5"
            try write(path, ids: ids, shape: [2, 8], logits: bad, vocab: vocab)
            let position = "[\(index / (8 * vocab))][\(index / vocab % 8)][\(index % vocab)]"
            let r = try run(["compare", exact, path])
            #expect(r.status == 1, "\(name): \(r.out)\(r.err)")
            #expect(r.err.contains("\(path) logits\(position) is \(name): logits must be finite"), "\(r.err)")
            let reversed = try run(["compare", "--json", path, exact])
            #expect(reversed.status == 1 && reversed.out.isEmpty, "\(name): \(reversed.out)\(reversed.err)")
            #expect(reversed.err.contains("\(path) logits\(position) is \(name)"), "\(reversed.err)")
        }
    }

    @Test("a vocabulary of 0, input_ids of another shape with the same values, and logits of another shape are refused")
    func shapes() throws {
        let temp = TemporaryDirectory()
        let (ids, logits, vocab) = try fixture()
        let empty = temp.path + "/empty.h5"
        try write(empty, ids: ids, shape: [2, 8], logits: [], vocab: 0)
        let e = try run(["compare", empty, empty])
        #expect(e.status == 1 && e.err.contains("logits has shape [2, 8, 0]: a vocabulary of 0"), "\(e.err)")
        let flat = temp.path + "/flat.h5"
        try write(flat, ids: ids, shape: [1, 16], logits: logits, vocab: vocab)
        let f = try run(["compare", exact, flat])
        #expect(f.status == 1 && f.err.contains("\(flat) has input_ids of shape [1, 16]"), "\(f.err)")
        let f2 = try run(["compare", flat, exact])
        #expect(f2.status == 1 && f2.err.contains("has input_ids of shape [2, 8]"), "\(f2.err)")
        let narrow = temp.path + "/narrow.h5"
        try write(narrow, ids: ids, shape: [2, 8], logits: Array(logits.prefix(2 * 8 * 128)), vocab: 128)
        let n = try run(["compare", exact, narrow])
        #expect(n.status == 1 && n.err.contains("has no logits dataset of shape [2, 8, \(vocab)]"), "\(n.err)")
        let m = try run(["compare", narrow, TestPaths.fixture("k25-tiny")])
        #expect(m.status == 1 && m.err.contains("has a vocabulary of \(vocab), the reference logits 128"), "\(m.err)")
    }

    @Test("logits near the float32 limit give a finite, non-negative KL divergence")
    func hugeLogits() throws {
        let temp = TemporaryDirectory()
        let (ids, logits, vocab) = try fixture()
        let big = temp.path + "/big.h5"
        // Scaled so the largest logit of each row is near 3e38: every distribution becomes (nearly) one-hot.
        let scale = 3e38 / Double(logits.map(abs).max() ?? 1)
        try write(big, ids: ids, shape: [2, 8], logits: logits.map { Float(Double($0) * scale) }, vocab: vocab)
        for pair in [[exact, big], [big, exact], [big, big]] {
            let r = try run(["compare", "--json"] + pair)
            #expect(r.status == 0, "\(r.err)")
            let object = try #require(try JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [String: Any])
            let kld = try #require(object["kld"] as? [String: Any])
            let low = try #require(kld["min"] as? Double), high = try #require(kld["max"] as? Double)
            #expect(low >= 0 && high.isFinite, "KLD \(low)...\(high) for \(pair)")
        }
    }

    @Test("a dump whose logits live in a FIFO, /dev/zero or another file is refused at once")
    func externalLogits() throws {
        let temp = TemporaryDirectory()
        let fifo = temp.path + "/fifo"
        #expect(mkfifo(fifo, 0o600) == 0)
        let (ids, _, vocab) = try fixture()
        for target in [fifo, "/dev/zero"] {
            let path = temp.path + "/external.h5"
            do {
                let file = try HDF5File.create(path)
                try file.write("input_ids", int32s: ids, shape: [2, 8])
                try file.create("logits", shape: [2, 8, vocab], layout: .externalStorage(file: target))
            }
            let r = try run(["compare", exact, path])
            #expect(r.status == 1 && r.err.contains("/logits keeps its data in external files"), "\(target): \(r.err)")
            let p = try run(["parity", TestPaths.fixture("k25-tiny"), "--reference", path])
            #expect(p.status == 1 && p.err.contains("/logits keeps its data in external files"), "\(target): \(p.err)")
        }
    }

    @Test("bad numeric options are refused before anything runs")
    func badOptions() throws {
        let model = TestPaths.fixture("k25-tiny")
        let cases: [([String], String)] = [
            (["parity", model, "--reference", exact, "--threads", "0"], "--threads 0: expected 1 to 4096"),
            (["parity", model, "--reference", exact, "--threads", "1000000"], "--threads 1000000: expected 1 to 4096"),
            (["compare", exact, model, "--threads=-3"], "--threads -3: expected 1 to 4096"),
            (["parity", model, "--reference", exact, "--atol", "nan"], "--atol nan: expected a finite number ≥ 0"),
            (["parity", model, "--reference", exact, "--rtol=-1"], "--rtol -1.0: expected a finite number ≥ 0"),
            (["parity", model, "--reference", exact, "--routing-margin", "inf"], "--routing-margin inf: expected a finite number ≥ 0"),
            (["inspect", "--gpus", "9223372036854775807", model], "--gpus 9223372036854775807: expected 1 to 4096"),
            (["verify", "--threads", "0", model], "--threads 0: expected 1 to 4096"),
        ]
        for (arguments, expected) in cases {
            let r = try run(arguments)
            #expect(r.status != 0 && r.status < 128, "\(arguments): status \(r.status)")
            #expect(r.err.contains(expected), "\(arguments): \(r.err)")
        }
    }

    @Test("a dump with many tokens prints the projected work before the forward pass runs")
    func longDumpWarns() throws {
        let temp = TemporaryDirectory()
        // Many tokens per sequence, and many sequences of few tokens: each over its threshold. A layer_in of the
        // wrong width stops parity right after the warning (the long pass itself is not run here).
        for (sequences, tokens) in [(1, 4097), (3, 3000)] {
            let path = temp.path + "/long-\(sequences).h5"
            do {
                let file = try HDF5File.create(path)
                try file.write("input_ids", int32s: (0..<(sequences * tokens)).map { Int32($0 % 256) }, shape: [sequences, tokens])
                try file.write("layers/0/layer_in", floats: [0], shape: [1, 1, 1])
            }
            let r = try run(["parity", TestPaths.fixture("k25-tiny"), "--reference", path])
            #expect(r.status == 1, "\(r.err)")
            #expect(r.err.contains("warning: \(path): input_ids holds \(sequences * tokens) tokens (\(sequences) × \(tokens))"), "\(r.err)")
            #expect(r.err.contains("layers/0/layer_in has shape [1, 1, 1]"), "\(r.err)")
        }
        let short = try run(["compare", exact, TestPaths.fixture("k25-tiny")])
        #expect(short.status == 0 && !short.err.contains("warning"), "\(short.err)")
        let quiet = temp.path + "/long-1.h5"
        #expect(!(try run(["parity", "--quiet", TestPaths.fixture("k25-tiny"), "--reference", quiet])).err.contains("warning"))
    }
}
