import Archive
import Forward
import Foundation
import Parity
import Testing

@Suite("C libraries")
struct CLibraryTests {
    @Test("zstd round-trips a frame and refuses garbage")
    func zstd() throws {
        let input = (0..<10_000).map { UInt8(truncatingIfNeeded: $0 % 251) }
        let frame = try input.withUnsafeBytes { try Zstd.compress($0) }
        #expect(frame.count < input.count)
        let output = try frame.withUnsafeBytes { try Zstd.decompress($0, maxSize: 1 << 20) }
        #expect(output == input)
        #expect(throws: Zstd.Failure(operation: "decompress", reason: "not a zstd frame")) {
            _ = try [UInt8](repeating: 7, count: 32).withUnsafeBytes { try Zstd.decompress($0, maxSize: 1 << 20) }
        }
        #expect(throws: Zstd.Failure(operation: "decompress", reason: "frame claims 10000 bytes, more than the 100 allowed")) {
            _ = try frame.withUnsafeBytes { try Zstd.decompress($0, maxSize: 100) }
        }
    }

    @Test("OpenBLAS computes x·wᵀ")
    func gemm() {
        // x [2, 3], w [2, 3] → y [2, 2]
        let y = Gemm.linear([1, 2, 3, 4, 5, 6], [1, 0, -1, 0.5, 0.5, 0.5], m: 2, n: 2, k: 3)
        let expected: [Float] = [-2, 3, -2, 7.5]
        let worst = zip(y, expected).map { abs($0 - $1) }.enumerated().max { $0.element < $1.element }!
        #expect(worst.element < 1e-6, "largest difference \(worst.element) at index \(worst.offset)")
        #expect(Gemm.threads >= 1)
    }

    @Test("OpenBLAS and HDF5 are opened on first use; a library that is missing or is not them is named")
    func lazyLoading() throws {
        try Gemm.load()
        #expect(HDF5File.libraryVersion.hasPrefix("1."), "\(HDF5File.libraryVersion)")
        let missing = "libk2pack-missing-library.so"
        #expect(throws: Gemm.LoadError(reason: "cannot load OpenBLAS (\(missing)): \(missing): cannot open shared object file: No such file or directory")) {
            try Gemm.probe(library: missing)
        }
        #expect(throws: HDF5File.HDF5Error(path: missing, reason: "cannot load HDF5 (\(missing)): \(missing): cannot open shared object file: No such file or directory")) {
            try HDF5File.probe(library: missing)
        }
        // A library that loads but is not the one asked for (zstd, which k2pack links).
        #expect(throws: Gemm.LoadError(reason: "cannot load OpenBLAS (libzstd.so.1): it has no cblas_sgemm")) { try Gemm.probe(library: "libzstd.so.1") }
        #expect(throws: HDF5File.HDF5Error(path: "libzstd.so.1", reason: "cannot load HDF5 (libzstd.so.1): it has no H5open")) {
            try HDF5File.probe(library: "libzstd.so.1")
        }
    }

    @Test("HDF5 writes and reads float and int datasets in nested groups")
    func hdf5() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("k2pack-\(UUID().uuidString).h5").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        do {
            let file = try HDF5File.create(path)
            try file.write("layers/0/layer_out", floats: [1.5, -2, 3, 4], shape: [1, 2, 2])
            try file.write("input_ids", int32s: [5, 6], shape: [1, 2])
        }
        let file = try HDF5File.open(path)
        let (values, shape) = try file.readFloats("layers/0/layer_out")
        #expect(shape == [1, 2, 2])
        #expect(values == [1.5, -2, 3, 4])
        #expect(try file.readFloats("input_ids").values == [5, 6])
        #expect(throws: HDF5File.HDF5Error(path: path, reason: "no dataset missing")) { _ = try file.readFloats("missing") }
        #expect(try file.readInt64s("input_ids").values == [5, 6])
        #expect(throws: HDF5File.HDF5Error(path: path, reason: "layers/0/layer_out: expected an integer dataset")) { _ = try file.readInt64s("layers/0/layer_out") }
        #expect(throws: HDF5File.HDF5Error(path: "/nonexistent.h5", reason: "cannot open: no such file")) { _ = try HDF5File.open("/nonexistent.h5") }
        // Any other reason is named as the system gives it, not called a missing file.
        #expect(throws: HDF5File.HDF5Error(path: "/etc/passwd/dump.h5", reason: "cannot open: Not a directory")) { _ = try HDF5File.open("/etc/passwd/dump.h5") }
    }
}
