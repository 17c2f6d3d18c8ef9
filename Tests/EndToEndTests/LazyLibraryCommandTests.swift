import Foundation
import TestSupport
import Testing

/// OpenBLAS and HDF5 are opened on first use (dlopen), not linked: commands that use neither never load them, and
/// one that needs a missing library says which and why.
@Suite("OpenBLAS and HDF5 loaded on first use")
struct LazyLibraryCommandTests {
    let ref = TestPaths.fixtures.appendingPathComponent("references").path
    static let missingBLAS = "/nonexistent/libopenblas.so.0"
    static let missingHDF5 = "/nonexistent/libhdf5.so"
    static let missing = ["K2PACK_OPENBLAS_LIBRARY": missingBLAS, "K2PACK_HDF5_LIBRARY": missingHDF5]

    @Test("inspect and verify print the same reports with neither library loadable")
    func reportsNeedNeither() throws {
        for arguments in [
            ["inspect", TestPaths.fixture("k25-tiny")], ["inspect", "--json", TestPaths.fixture("k25-tiny")],
            ["verify", "--headers-only", TestPaths.fixture("k2-thinking-tiny")], ["verify", TestPaths.fixture("deepseek-v3-tiny")],
        ] {
            let normal = try run(arguments)
            let without = try run(arguments, environment: Self.missing)
            #expect(normal.status == 0, "\(arguments): \(normal.err)")
            // verify's "scanned … in … s" line carries a time.
            func timeless(_ text: String) -> [Substring] { text.split(separator: "\n").filter { !$0.hasPrefix("scanned") } }
            #expect(without.status == normal.status, "\(arguments): \(without.err)")
            #expect(timeless(without.out) == timeless(normal.out) && without.err == normal.err, "\(arguments): \(without.out)\(without.err)")
        }
    }

    @Test("a command that needs HDF5 names the library it could not load")
    func hdf5Missing() throws {
        let r = try run(["compare", "--json", ref + "/k25-tiny.h5:/exact", ref + "/k25-tiny.h5:/bf16"], environment: Self.missing)
        #expect(r.status != 0)
        #expect(
            (r.out + r.err).contains("cannot load HDF5 (\(Self.missingHDF5)): \(Self.missingHDF5): cannot open shared object file: No such file or directory"),
            "\(r.out)\(r.err)")
    }

    @Test("a command that needs OpenBLAS names the library it could not load and exits 70")
    func blasMissing() throws {
        let r = try run(
            ["parity", TestPaths.fixture("k25-tiny"), "--reference", ref + "/k25-tiny.h5:/exact", "--quiet"],
            environment: ["K2PACK_OPENBLAS_LIBRARY": Self.missingBLAS])
        #expect(r.status == 70, "\(r.out)\(r.err)")
        #expect(
            r.err.contains("k2pack: cannot load OpenBLAS (\(Self.missingBLAS)): \(Self.missingBLAS): cannot open shared object file: No such file or directory"),
            "\(r.err)")
    }
}
