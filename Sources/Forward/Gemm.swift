import COpenBLAS

/// Matrix products through OpenBLAS: the only importer of COpenBLAS.
public enum Gemm {
    /// `y[m, n] = x[m, k] · w[n, k]ᵀ` (row-major; a Linear layer with weight `w`), in float32. `ldy` is y's row
    /// stride (≥ n), so a block of w's rows can fill a block of y's columns.
    public static func linear(
        _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, m: Int, n: Int, k: Int, ldy: Int? = nil
    ) {
        cblas_sgemm(
            CblasRowMajor, CblasNoTrans, CblasTrans, blasint(m), blasint(n), blasint(k), 1, x, blasint(k), w, blasint(k),
            0, y, blasint(ldy ?? n))
    }

    /// `c[m, n] = alpha · a[m, k] · b` in float32, row-major with explicit row strides: `b` is `[n, k]` used transposed
    /// (`transposeB`, as in `linear`) or `[k, n]` as it is. For operands that are strided views of larger arrays
    /// (one attention head's queries, keys or values among all heads'), so nothing is copied to multiply them.
    public static func multiply(
        _ a: UnsafePointer<Float>, lda: Int, _ b: UnsafePointer<Float>, ldb: Int, transposeB: Bool,
        _ c: UnsafeMutablePointer<Float>, ldc: Int, m: Int, n: Int, k: Int, alpha: Float = 1
    ) {
        cblas_sgemm(
            CblasRowMajor, CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans, blasint(m), blasint(n), blasint(k), alpha,
            a, blasint(lda), b, blasint(ldb), 0, c, blasint(ldc))
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
        get { Int(openblas_get_num_threads()) }
        set { openblas_set_num_threads(Int32(newValue)) }
    }

    public static var configuration: String { String(cString: openblas_get_config()) }
}
