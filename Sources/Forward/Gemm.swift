import COpenBLAS

/// Matrix products through OpenBLAS: the only importer of COpenBLAS. OpenBLAS is loaded on the first call
/// (COpenBLAS opens it with dlopen), so a command that multiplies no matrices never loads it or starts its threads;
/// if it cannot be loaded then, the call prints the reason and ends the process (status 70). `load()` reports the
/// same reason as an error instead.
public enum Gemm {
    /// OpenBLAS could not be loaded: `reason` names the library file and the loader's message.
    public struct LoadError: Error, Equatable, Sendable, CustomStringConvertible {
        public var reason: String
        public init(reason: String) { self.reason = reason }
        public var description: String { reason }
    }

    /// Loads OpenBLAS now (once per process), or says why it cannot be.
    public static func load() throws(LoadError) {
        var error = [CChar](repeating: 0, count: 1024)
        guard copenblas_load(&error, error.count) == 0 else { throw LoadError(reason: string(error)) }
    }

    /// Opens `library` and resolves the entry points k2pack uses, without keeping it: the error path of `load()`.
    public static func probe(library: String) throws(LoadError) {
        var error = [CChar](repeating: 0, count: 1024)
        guard copenblas_probe(library, &error, error.count) == 0 else { throw LoadError(reason: string(error)) }
    }

    private static func string(_ buffer: [CChar]) -> String {
        String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// `y[m, n] = x[m, k] · w[n, k]ᵀ` (row-major; a Linear layer with weight `w`), in float32. `ldy` is y's row
    /// stride (≥ n), so a block of w's rows can fill a block of y's columns.
    public static func linear(
        _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, m: Int, n: Int, k: Int, ldy: Int? = nil
    ) {
        copenblas_sgemm(1, Int32(m), Int32(n), Int32(k), 1, x, Int32(k), w, Int32(k), 0, y, Int32(ldy ?? n))
    }

    /// `c[m, n] = alpha · a[m, k] · b` in float32, row-major with explicit row strides: `b` is `[n, k]` used transposed
    /// (`transposeB`, as in `linear`) or `[k, n]` as it is. For operands that are strided views of larger arrays
    /// (one attention head's queries, keys or values among all heads'), so nothing is copied to multiply them.
    public static func multiply(
        _ a: UnsafePointer<Float>, lda: Int, _ b: UnsafePointer<Float>, ldb: Int, transposeB: Bool,
        _ c: UnsafeMutablePointer<Float>, ldc: Int, m: Int, n: Int, k: Int, alpha: Float = 1
    ) {
        copenblas_sgemm(transposeB ? 1 : 0, Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), 0, c, Int32(ldc))
    }

    /// Array convenience for small products and tests.
    public static func linear(_ x: [Float], _ w: [Float], m: Int, n: Int, k: Int) -> [Float] {
        precondition(x.count == m * k && w.count == n * k, "Gemm.linear: operand sizes do not match m, n, k")
        var y = [Float](repeating: 0, count: m * n)
        x.withUnsafeBufferPointer { xp in
            w.withUnsafeBufferPointer { wp in
                y.withUnsafeMutableBufferPointer { yp in linear(xp.baseAddress!, wp.baseAddress!, yp.baseAddress!, m: m, n: n, k: k) }
            }
        }
        return y
    }

    public static var threads: Int {
        get { Int(copenblas_get_num_threads()) }
        set { copenblas_set_num_threads(Int32(newValue)) }
    }

    public static var configuration: String { String(cString: copenblas_get_config()) }
}
