/// How far one tensor is from its reference.
public struct Comparison: Codable, Sendable, Equatable {
    public var maxAbs: Double
    public var meanAbs: Double
    /// `1 − 2⟨x,y⟩/(‖x‖²+‖y‖²)`: 0 for identical tensors, scale-free.
    public var relativeDifference: Double
    public var cosine: Double
    /// Largest magnitude in the reference (what `rtol` is relative to).
    public var referenceMaxAbs: Double
    /// Where the largest difference is: [batch, token, channel] for activations.
    public var worstAt: [Int]
    public var ours: Double
    public var reference: Double
    public var nonFinite: Int

    enum CodingKeys: String, CodingKey {
        case maxAbs = "max_abs", meanAbs = "mean_abs", relativeDifference = "relative_difference", cosine
        case referenceMaxAbs = "reference_max_abs", worstAt = "worst_at", ours, reference
        case nonFinite = "non_finite"
    }

    /// Compares `ours` with `reference`, both of shape `[count / width / tokens, tokens, width]`.
    public init(ours: [Float], reference: [Float], tokens: Int, width: Int) {
        precondition(ours.count == reference.count && width > 0 && tokens > 0, "Comparison: sizes differ")
        var maxAbs = 0.0, sumAbs = 0.0, dot = 0.0, xx = 0.0, yy = 0.0, refMax = 0.0
        var worst = 0, nonFinite = 0
        for i in 0..<ours.count {
            let x = Double(ours[i]), y = Double(reference[i])
            guard x.isFinite, y.isFinite else {
                nonFinite += 1
                if maxAbs.isFinite { maxAbs = .infinity; worst = i }
                continue
            }
            let d = abs(x - y)
            if d > maxAbs { maxAbs = d; worst = i }
            sumAbs += d
            dot += x * y
            xx += x * x
            yy += y * y
            refMax = max(refMax, abs(y))
        }
        self.maxAbs = maxAbs
        meanAbs = ours.isEmpty ? 0 : sumAbs / Double(ours.count)
        relativeDifference = xx + yy == 0 ? 0 : 1 - 2 * dot / (xx + yy)
        cosine = xx == 0 || yy == 0 ? (xx == yy ? 1 : 0) : dot / (xx.squareRoot() * yy.squareRoot())
        referenceMaxAbs = refMax
        worstAt = [worst / (tokens * width), worst / width % tokens, worst % width]
        self.ours = ours.isEmpty ? 0 : Double(ours[worst])
        self.reference = reference.isEmpty ? 0 : Double(reference[worst])
        self.nonFinite = nonFinite
    }

    /// Passes when the largest difference is within `atol` and within `rtol` of the reference's magnitude.
    public func passes(_ tolerance: Tolerance) -> Bool {
        nonFinite == 0 && maxAbs <= tolerance.atol && maxAbs <= tolerance.rtol * max(referenceMaxAbs, .leastNormalMagnitude)
    }
}

/// Parity tolerances: both must hold.
public struct Tolerance: Codable, Sendable, Equatable {
    /// Largest absolute difference allowed.
    public var atol: Double
    /// Largest difference allowed relative to the reference tensor's largest magnitude.
    public var rtol: Double
    /// Expert sets may differ only where our k-th / (k+1)-th selection scores are within this (a near tie).
    public var routingMargin: Double

    public init(atol: Double = 1e-4, rtol: Double = 1e-5, routingMargin: Double = 1e-5) {
        self.atol = atol
        self.rtol = rtol
        self.routingMargin = routingMargin
    }
}
