import Foundation

/// The position terms added after the patch embedding (shared/reference/moonvit.md §4.2–4.4).
public enum PositionTerms {
    /// Keys' cubic convolution kernel at a = −0.75 (PyTorch's bicubic).
    static func cubic(_ d: Float) -> Float {
        let a: Float = -0.75
        let x = abs(d)
        if x <= 1 { return ((a + 2) * x - (a + 3)) * x * x + 1 }
        if x < 2 { return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a }
        return 0
    }

    /// The `[n, source]` matrix that resamples one axis of the position table from `source` rows to `n`:
    /// bicubic, align_corners = False, no antialiasing (not even when shrinking), border taps clamped (the
    /// edge row takes their weight). The identity when `n == source`.
    @Sendable public static func bicubicAxis(_ n: Int, _ source: Int) -> [Float] {
        var a = [Float](repeating: 0, count: n * source)
        let scale = Float(source) / Float(n)
        for i in 0..<n {
            // Not clamped at 0: bicubic keeps the negative source coordinate (unlike bilinear).
            let src = scale * (Float(i) + 0.5) - 0.5
            let f = src.rounded(.down)
            let t = src - f
            let weights = [cubic(t + 1), cubic(t), cubic(1 - t), cubic(2 - t)]
            for k in 0..<4 {
                let tap = min(max(Int(f) - 1 + k, 0), source - 1)
                a[i * source + tap] += weights[k]
            }
        }
        return a
    }

    /// The learned table `[S_h, S_w, D]` resampled to the grid `[h, w, D]` separably:
    /// `E'[r, c] = Σ_a Σ_b A_h[r, a] · A_w[c, b] · E[a, b]`, one output row at a time (memory: the output and
    /// one row of the table's width, whatever the grid's shape).
    static func resample(
        table: [Float], tableHeight: Int, tableWidth: Int, width: Int, to h: Int, _ w: Int,
        axis: @Sendable (Int, Int) -> [Float]
    ) -> [Float] {
        let ah = axis(h, tableHeight), aw = axis(w, tableWidth)
        precondition(ah.count == h * tableHeight && aw.count == w * tableWidth, "resample: the axis matrices have the wrong size")
        let plane = tableWidth * width
        var row = [Float](repeating: 0, count: plane)  // [S_w, D]: table rows mixed for output row r
        var out = [Float](repeating: 0, count: h * w * width)
        for r in 0..<h {
            for j in 0..<plane { row[j] = 0 }
            for a in 0..<tableHeight {
                let weight = ah[r * tableHeight + a]
                if weight == 0 { continue }
                for j in 0..<plane { row[j] += weight * table[a * plane + j] }
            }
            for c in 0..<w {
                let dst = (r * w + c) * width
                for b in 0..<tableWidth {
                    let weight = aw[c * tableWidth + b]
                    if weight == 0 { continue }
                    for d in 0..<width { out[dst + d] += weight * row[b * width + d] }
                }
            }
        }
        return out
    }

    /// The fixed temporal term of frame `frame` (only for chunks of more than one frame):
    /// `[sin(f·ω_j) for j < D/2] ++ [cos(f·ω_j) for j < D/2]`, `ω_j = θ^(−2j/D)`. Frame 0 is `[0…0, 1…1]`.
    public static func temporal(frame: Int, width: Int, theta: Double) -> [Float] {
        let half = width / 2
        var out = [Float](repeating: 0, count: width)
        for j in 0..<half {
            let omega = Foundation.pow(theta, -2 * Double(j) / Double(width))
            let angle = Double(frame) * omega
            out[j] = Float(Foundation.sin(angle))
            out[half + j] = Float(Foundation.cos(angle))
        }
        return out
    }

    /// The 2-D RoPE frequencies `ω_i = θ^(−4i/hd)`, i < hd/4.
    public static func ropeFrequencies(headDim: Int, theta: Double) -> [Float] {
        (0..<(headDim / 4)).map { Float(1 / Foundation.pow(theta, Double(4 * $0) / Double(headDim))) }
    }

    /// The angle of each complex pair m of a head (hd/2 of them) for a patch at (row, col): width first,
    /// `φ_m = col·ω_{m/2}` for even m and `row·ω_{(m−1)/2}` for odd m (the layout the weights were trained with).
    @Sendable public static func ropeAngles(row: Int, col: Int, frequencies: [Float], into out: UnsafeMutablePointer<Float>) {
        for i in 0..<frequencies.count {
            out[2 * i] = Float(col) * frequencies[i]
            out[2 * i + 1] = Float(row) * frequencies[i]
        }
    }

    /// Rotates one head in place, pair m = dims (2m, 2m+1) of the stored layout:
    /// `x'₂ₘ = x₂ₘ·cos − x₂ₘ₊₁·sin`, `x'₂ₘ₊₁ = x₂ₘ·sin + x₂ₘ₊₁·cos`.
    @Sendable public static func rotatePairs(_ x: UnsafeMutablePointer<Float>, cos: UnsafePointer<Float>, sin: UnsafePointer<Float>, pairs: Int) {
        for m in 0..<pairs {
            let a = x[2 * m], b = x[2 * m + 1]
            x[2 * m] = a * cos[m] - b * sin[m]
            x[2 * m + 1] = a * sin[m] + b * cos[m]
        }
    }
}

extension PositionTerms {
    /// The mean over a chunk's frames, summed in frame order.
    @Sendable public static func temporalMean(_ frames: [ArraySlice<Float>]) -> [Float] {
        guard let first = frames.first else { return [] }
        var sum = Array(first)
        for frame in frames.dropFirst() {
            for (j, v) in frame.enumerated() { sum[j] += v }
        }
        let n = Float(frames.count)
        return sum.map { $0 / n }
    }
}

/// The steps of the vision pass that engines are known to get wrong, as values: the reference pass uses
/// `VisionSteps.reference`; tests build a tower with one step replaced to prove that parity catches the
/// mistake at the right point (the wrong steps themselves live in the tests).
public struct VisionSteps: Sendable {
    /// The `[n, source]` resampling matrix of one axis of the position table.
    public var axisWeights: @Sendable (_ n: Int, _ source: Int) -> [Float]
    /// The RoPE angle of each pair of a head for a patch at (row, col).
    public var ropeAngles: @Sendable (_ row: Int, _ col: Int, _ frequencies: [Float], _ into: UnsafeMutablePointer<Float>) -> Void
    /// Applies the rotation to one head given the cos and sin of each pair's angle.
    public var rotate: @Sendable (_ x: UnsafeMutablePointer<Float>, _ cos: UnsafePointer<Float>, _ sin: UnsafePointer<Float>, _ pairs: Int) -> Void
    /// The encoder MLP's activation and the projector's.
    public var encoderActivation: @Sendable (Float) -> Float
    public var projectorActivation: @Sendable (Float) -> Float
    /// Merges one chunk's frames (each `[h·w·D]`, after the final norm) into one `[h·w·D]`.
    public var temporalMerge: @Sendable (_ frames: [ArraySlice<Float>]) -> [Float]

    public init(
        axisWeights: @escaping @Sendable (Int, Int) -> [Float] = PositionTerms.bicubicAxis,
        ropeAngles: @escaping @Sendable (Int, Int, [Float], UnsafeMutablePointer<Float>) -> Void = { PositionTerms.ropeAngles(row: $0, col: $1, frequencies: $2, into: $3) },
        rotate: @escaping @Sendable (UnsafeMutablePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>, Int) -> Void = { PositionTerms.rotatePairs($0, cos: $1, sin: $2, pairs: $3) },
        encoderActivation: @escaping @Sendable (Float) -> Float = VisionMath.geluTanh,
        projectorActivation: @escaping @Sendable (Float) -> Float = VisionMath.geluErf,
        temporalMerge: @escaping @Sendable ([ArraySlice<Float>]) -> [Float] = PositionTerms.temporalMean
    ) {
        self.axisWeights = axisWeights
        self.ropeAngles = ropeAngles
        self.rotate = rotate
        self.encoderActivation = encoderActivation
        self.projectorActivation = projectorActivation
        self.temporalMerge = temporalMerge
    }

    public static let reference = VisionSteps()
}
