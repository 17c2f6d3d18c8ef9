import TensorCore

/// One entry of a packed batch: an image (t = 1) or a video chunk of t frames, h × w patches each.
public struct VisionGrid: Sendable, Equatable, CustomStringConvertible {
    public var t: Int
    public var h: Int
    public var w: Int
    public init(t: Int, h: Int, w: Int) {
        self.t = t
        self.h = h
        self.w = w
    }

    /// Patches per frame and in all: h·w and t·h·w.
    public var framePatches: Int { h * w }
    public var patches: Int { t * h * w }
    public var description: String { "(\(t), \(h), \(w))" }
}

/// The tower's input, checked before anything runs: `pixel_values [N, 3, P, P]` (normalized patches, entry by
/// entry, frame-major, row-major) and `grid_thws [n, 3]`.
public struct VisionInput: Sendable {
    /// `[N, 3·P·P]`.
    public let pixels: [Float]
    public let grids: [VisionGrid]
    /// N = Σ t·h·w.
    public let patches: Int
    /// First patch of each entry.
    public let starts: [Int]

    /// Largest packed batch accepted (patches): 64 Mi patches of the real 588 values is far past any image
    /// the processor makes (its default cap is 16,384 patches per image).
    public static let maxPatches = 1 << 26

    /// `pixels` holds `patchCount` patches of `config.patchValues` values. Refuses, naming the entry: grids
    /// that are not positive, overflow, or do not add up to the patch count; sides that the merge kernel does
    /// not divide; chunks of more frames than the temporal table; non-finite pixels.
    public init(pixels: [Float], grids: [VisionGrid], config: VisionConfig) throws(VisionError) {
        let values = config.patchValues
        guard pixels.count % values == 0 else {
            throw .input("pixel_values holds \(pixels.count) values, not a whole number of \(values)-value patches (3 × \(config.patchSize) × \(config.patchSize))")
        }
        starts = try Self.check(grids: grids, patches: pixels.count / values, config: config)
        if let bad = pixels.firstIndex(where: { !$0.isFinite }) {
            let p = config.patchSize, n = bad / values, r = bad % values
            throw .input("pixel_values[\(n), \(r / (p * p)), \(r / p % p), \(r % p)] is \(pixels[bad]) (pixels must be finite)")
        }
        self.pixels = pixels
        self.grids = grids
        self.patches = pixels.count / values
    }

    /// Checks the grids against a patch count (before any pixel is read) and returns each entry's first patch.
    public static func check(grids: [VisionGrid], patches count: Int, config: VisionConfig) throws(VisionError) -> [Int] {
        guard !grids.isEmpty else { throw .input("grid_thws is empty: at least one image or video chunk is needed") }
        var total = 0
        var starts: [Int] = []
        for (i, g) in grids.enumerated() {
            let label = "grid_thws[\(i)] = \(g)"
            guard g.t >= 1, g.h >= 1, g.w >= 1 else { throw .input("\(label): t, h and w must all be at least 1") }
            guard g.t <= config.maxFrames else {
                throw .input("\(label): \(g.t) frames, more than the temporal position table holds (init_pos_emb_time \(config.maxFrames)); split the video into chunks of at most \(config.maxFrames) frames")
            }
            guard g.h % config.mergeHeight == 0, g.w % config.mergeWidth == 0 else {
                throw .input("\(label): the merge kernel \(config.mergeHeight) × \(config.mergeWidth) needs h a multiple of \(config.mergeHeight) and w a multiple of \(config.mergeWidth) (the image processor pads to guarantee it)")
            }
            guard let n = CheckedMath.product([g.t, g.h, g.w]), let next = CheckedMath.add(total, n), next <= Self.maxPatches else {
                throw .input("\(label): the grids add up to more than \(Self.maxPatches) patches")
            }
            starts.append(total)
            total = next
        }
        guard total == count else {
            throw .input("grid_thws \(grids.map(\.description).joined(separator: ", ")) covers \(total) patches, but pixel_values holds \(count)")
        }
        return starts
    }

    /// Merged tokens the language model receives: Σ (h/kh)·(w/kw) (a chunk's frames are averaged into one).
    public func tokens(_ config: VisionConfig) -> Int {
        grids.reduce(0) { $0 + ($1.h / config.mergeHeight) * ($1.w / config.mergeWidth) }
    }
}
