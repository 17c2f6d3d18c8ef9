import Foundation
import TensorCore
import Vision

/// A vision reference dump (docs/REFERENCE-DUMPS.md, "Vision dumps"): a group holding `pixel_values`
/// `[N, 3, P, P]` and `grid_thws` `[n, 3]`, and optionally the activations of the tower, merger and projector.
public final class VisionDump: @unchecked Sendable {
    public let file: HDF5File
    public let group: String
    /// `file.h5:/group`, for messages.
    public let label: String
    public let input: VisionInput
    public let config: VisionConfig

    /// Largest dataset read (elements).
    public static let maxElements = 1 << 31
    /// Entries accepted in `grid_thws`.
    public static let maxEntries = 1 << 16

    /// Whether the group of `spec` (`file.h5` or `file.h5:/group`) is a vision dump: it holds `pixel_values` and
    /// `grid_thws`. False for anything unreadable (the text reader then names the problem).
    public static func isVisionDump(_ spec: String) -> Bool {
        guard let (file, group) = try? open(spec) else { return false }
        return file.exists(group + "/pixel_values") && file.exists(group + "/grid_thws")
    }

    static func open(_ spec: String) throws(HDF5File.HDF5Error) -> (HDF5File, String) {
        let path = ReferenceDump.filePath(of: spec), group = ReferenceDump.group(of: spec)
        let file = try HDF5File.open(path)
        if !group.isEmpty, !file.exists(group) { throw HDF5File.HDF5Error(path: path, reason: "no group \(displayed(group))") }
        return (file, group)
    }

    /// Opens the dump and checks its input against the tower's sizes: `pixel_values` must be `[N, 3, P, P]`,
    /// `grid_thws` `[n, 3]` integers, and the grids must cover exactly N patches, with sides the merge kernel
    /// divides, at most `init_pos_emb_time` frames per chunk and finite pixels (`VisionInput`).
    public init(spec: String, config: VisionConfig) throws(HDF5File.HDF5Error) {
        let (file, group) = try Self.open(spec)
        self.file = file
        self.group = group
        self.config = config
        let label = group.isEmpty ? file.path : "\(file.path):\(group)"
        self.label = label
        func fail(_ reason: String) -> HDF5File.HDF5Error { HDF5File.HDF5Error(path: label, reason: reason) }
        for name in ["pixel_values", "grid_thws"] where !file.exists(group + "/" + name) {
            throw fail("no \(name) dataset (a vision dump holds pixel_values and grid_thws)")
        }
        let gridShape = try Self.relabel(label, file) { () throws(HDF5File.HDF5Error) in try file.shape(group + "/grid_thws") }
        guard gridShape.count == 2, gridShape[1] == 3, gridShape[0] >= 1, gridShape[0] <= Self.maxEntries else {
            throw fail("grid_thws has shape \(gridShape), expected [entries, 3] with 1 to \(Self.maxEntries) entries")
        }
        let grid = try Self.relabel(label, file) { () throws(HDF5File.HDF5Error) in try file.readInt64s(group + "/grid_thws", expected: gridShape) }
        let limit = Int64(VisionInput.maxPatches)
        if let bad = grid.firstIndex(where: { $0 < 1 || $0 > limit }) {
            throw fail("grid_thws[\(bad / 3)] = (\(grid[bad / 3 * 3]), \(grid[bad / 3 * 3 + 1]), \(grid[bad / 3 * 3 + 2])): t, h and w must be between 1 and \(limit)")
        }
        let grids = (0..<gridShape[0]).map { VisionGrid(t: Int(grid[3 * $0]), h: Int(grid[3 * $0 + 1]), w: Int(grid[3 * $0 + 2])) }
        let p = config.patchSize
        let pixelShape = try Self.relabel(label, file) { () throws(HDF5File.HDF5Error) in try file.shape(group + "/pixel_values") }
        guard pixelShape.count == 4, pixelShape[1] == 3, pixelShape[2] == p, pixelShape[3] == p, pixelShape[0] >= 1,
            pixelShape[0] <= VisionInput.maxPatches
        else {
            throw fail("pixel_values has shape \(pixelShape), expected [patches, 3, \(p), \(p)] (patch_size \(p))")
        }
        // The grids must cover exactly the patches before a single pixel is read.
        do throws(VisionError) { _ = try VisionInput.check(grids: grids, patches: pixelShape[0], config: config) } catch { throw fail(error.description) }
        let pixels = try Self.relabel(label, file) { () throws(HDF5File.HDF5Error) in
            try file.readFloats(group + "/pixel_values", expected: pixelShape, maxElements: Self.maxElements)
        }
        do throws(VisionError) {
            input = try VisionInput(pixels: pixels, grids: grids, config: config)
        } catch {
            throw fail(error.description)
        }
    }

    public func has(_ name: String) -> Bool { file.exists(group + "/" + name) }

    /// A compared point of shape `shape`, or nil when the dump does not have it (a dataset of another shape is
    /// refused before anything is read).
    public func point(_ name: String, shape: [Int]) throws(HDF5File.HDF5Error) -> [Float]? {
        guard has(name) else { return nil }
        return try Self.relabel(label, file) { () throws(HDF5File.HDF5Error) in
            try file.readFloats(group + "/" + name, expected: shape, maxElements: Self.maxElements) { found in
                "\(displayed(name)) has shape \(found), expected \(shape) (grid_thws covers \(self.input.patches) patches, \(self.input.tokens(self.config)) merged tokens)"
            }
        }
    }

    static func relabel<T>(_ label: String, _ file: HDF5File, _ body: () throws(HDF5File.HDF5Error) -> T) throws(HDF5File.HDF5Error) -> T {
        do { return try body() } catch { throw HDF5File.HDF5Error(path: error.path == file.path ? label : error.path, reason: error.reason) }
    }
}

/// One compared point of the vision path.
public struct VisionPointReport: Codable, Sendable {
    /// The dump's name: `patch_embed_out`, `layers/3/attn_out`, `merger_out`, ….
    public var point: String
    /// Our own chain from the pixels.
    public var chained: Comparison
    /// This step alone, fed the reference's own input (absent when the dump lacks the step's input).
    public var isolated: Comparison?
    public var pass: Bool
}

/// A vision parity run.
public struct VisionParityReport: Codable, Sendable {
    public var model: String
    public var reference: String
    public var grids: [[Int]]
    public var patches: Int
    public var tokens: Int
    public var tolerance: Tolerance
    public var points: [VisionPointReport]
    /// The first point that fails (chained or isolated), in forward order.
    public var firstFailure: String?
    /// The largest max-abs over every comparison, and where.
    public var largest: Double
    public var largestAt: String
    public var pass: Bool

    enum CodingKeys: String, CodingKey {
        case model, reference, grids, patches, tokens, tolerance, points, pass, largest
        case firstFailure = "first_failure", largestAt = "largest_at"
    }
}

/// Runs the vision tower on a dump's pixels and compares every point present: chained (our own pass from the
/// pixels) and isolated (each step fed the dump's own input: block i gets `layers/{i−1}/layer_out`, or
/// `patch_embed_out` for block 0; the final norm gets the last block's output; the merger the final norm's; the
/// projector the merger's), so a mistake shows at the step where it lives.
public enum VisionParity {
    public static func run(
        tower: VisionTower, dump: VisionDump, tolerance: Tolerance = Tolerance(), model: String = ""
    ) throws(VisionParityError) -> VisionParityReport {
        let c = tower.config, input = dump.input, N = input.patches, D = c.width, M = input.tokens(c)
        var points: [VisionPointReport] = []
        func compare(_ name: String, ours: [Float], isolated: [Float]?, rows: Int, width: Int) throws(VisionParityError) {
            guard let reference = try wrap({ () throws(HDF5File.HDF5Error) in try dump.point(name, shape: Self.shape(of: name, c, rows: rows, width: width)) }) else { return }
            let chained = Comparison(ours: ours, reference: reference, tokens: rows, width: width)
            let alone = isolated.map { Comparison(ours: $0, reference: reference, tokens: rows, width: width) }
            points.append(VisionPointReport(point: name, chained: chained, isolated: alone, pass: chained.passes(tolerance) && (alone?.passes(tolerance) ?? true)))
        }
        func reference(_ name: String, rows: Int, width: Int) throws(VisionParityError) -> [Float]? {
            try wrap({ () throws(HDF5File.HDF5Error) in try dump.point(name, shape: Self.shape(of: name, c, rows: rows, width: width)) })
        }

        var h = try vision { () throws(VisionError) in try tower.embed(input) }
        try compare("patch_embed_out", ours: h, isolated: nil, rows: N, width: D)
        for b in 0..<c.blocks {
            let prefix = "layers/\(b)/"
            let chained = try vision { () throws(VisionError) in try tower.block(b, input: h, of: input) }
            let given = try reference(b == 0 ? "patch_embed_out" : "layers/\(b - 1)/layer_out", rows: N, width: D)
            let alone = try given.map { g throws(VisionParityError) in try vision { () throws(VisionError) in try tower.block(b, input: g, of: input) } }
            try compare(prefix + "attn_out", ours: chained.attentionOut, isolated: alone?.attentionOut, rows: N, width: D)
            try compare(prefix + "mlp_out", ours: chained.mlpOut, isolated: alone?.mlpOut, rows: N, width: D)
            try compare(prefix + "layer_out", ours: chained.output, isolated: alone?.output, rows: N, width: D)
            h = chained.output
        }
        let z = try vision { () throws(VisionError) in try tower.finalNorm(h) }
        let lastOut = try reference("layers/\(c.blocks - 1)/layer_out", rows: N, width: D)
        try compare("final_layernorm_out", ours: z, isolated: try lastOut.map { g throws(VisionParityError) in try vision { () throws(VisionError) in try tower.finalNorm(g) } }, rows: N, width: D)
        let merged = try vision { () throws(VisionError) in try tower.merge(z, of: input) }
        let refZ = try reference("final_layernorm_out", rows: N, width: D)
        try compare("merger_out", ours: merged, isolated: try refZ.map { g throws(VisionParityError) in try vision { () throws(VisionError) in try tower.merge(g, of: input) } }, rows: M, width: c.mergeSlots * D)
        let projected = try vision { () throws(VisionError) in try tower.project(merged) }
        let refMerged = try reference("merger_out", rows: M, width: c.mergeSlots * D)
        try compare("projector_out", ours: projected, isolated: try refMerged.map { g throws(VisionParityError) in try vision { () throws(VisionError) in try tower.project(g) } }, rows: M, width: c.textWidth)

        var largest = 0.0, largestAt = ""
        for p in points {
            for (run, cmp) in [("chained", p.chained), ("isolated", p.isolated)] {
                if let cmp, cmp.maxAbs > largest || largestAt.isEmpty {
                    largest = cmp.maxAbs
                    largestAt = "\(p.point) (\(run)) at row \(cmp.worstAt[1]), column \(cmp.worstAt[2])"
                }
            }
        }
        return VisionParityReport(
            model: model, reference: dump.label, grids: input.grids.map { [$0.t, $0.h, $0.w] }, patches: N, tokens: M,
            tolerance: tolerance, points: points, firstFailure: points.first { !$0.pass }?.point, largest: largest,
            largestAt: largestAt, pass: points.allSatisfy(\.pass))
    }

    /// The dataset shape of a point: `merger_out` is `[M, kh·kw, D]`, the others `[rows, width]`.
    static func shape(of name: String, _ c: VisionConfig, rows: Int, width: Int) -> [Int] {
        name == "merger_out" ? [rows, c.mergeSlots, c.width] : [rows, width]
    }

    static func wrap<T>(_ body: () throws(HDF5File.HDF5Error) -> T) throws(VisionParityError) -> T {
        do { return try body() } catch { throw .dump(error) }
    }

    static func vision<T>(_ body: () throws(VisionError) -> T) throws(VisionParityError) -> T {
        do { return try body() } catch { throw .vision(error) }
    }
}

/// Why a vision parity run could not complete.
public enum VisionParityError: Error, Equatable, Sendable, CustomStringConvertible {
    case dump(HDF5File.HDF5Error)
    case vision(VisionError)

    public var description: String {
        switch self {
        case .dump(let e): e.description
        case .vision(let e): e.description
        }
    }
}

extension VisionParity {
    /// Opens the dump for `tower` and runs it: the CLI's one call.
    public static func run(
        tower: VisionTower, reference spec: String, tolerance: Tolerance = Tolerance(), model: String = ""
    ) throws(VisionParityError) -> VisionParityReport {
        let dump = try wrap { () throws(HDF5File.HDF5Error) in try VisionDump(spec: spec, config: tower.config) }
        return try run(tower: tower, dump: dump, tolerance: tolerance, model: model)
    }
}

extension VisionParityReport {
    /// A table of every compared point, chained and isolated, and the first failure.
    public func renderText() -> String {
        func e(_ x: Double) -> String { x.isFinite ? String(format: "%.2e", x) : "\(x)" }
        var lines: [String] = []
        lines.append("vision parity \(displayed(model)) vs \(displayed(reference))")
        let entries = grids.map { "(\($0.map(String.init).joined(separator: ", ")))" }.joined(separator: ", ")
        lines.append("  grids \(entries): \(patches) patches, \(tokens) merged tokens; tolerance max-abs ≤ \(e(tolerance.atol)) and ≤ \(e(tolerance.rtol)) × reference max")
        lines.append("")
        lines.append("point                    max-abs   mean-abs  rel-diff  cosine       isolated max-abs")
        for p in points {
            let c = p.chained
            let alone = p.isolated.map { "\(e($0.maxAbs))\($0.passes(tolerance) ? "" : "  FAIL")" } ?? "-"
            lines.append(
                "\(p.point.padding(toLength: 24, withPad: " ", startingAt: 0)) \(e(c.maxAbs))  \(e(c.meanAbs))  \(e(c.relativeDifference))  "
                    + String(format: "%.9f", c.cosine) + "  \(alone)\(c.passes(tolerance) ? "" : "  FAIL (chained)")")
        }
        lines.append("")
        if points.isEmpty { lines.append("the dump holds no compared point: the tower ran, nothing was compared") }
        lines.append("largest max-abs \(e(largest)) at \(largestAt.isEmpty ? "-" : largestAt)")
        lines.append(firstFailure.map { "FAIL: first failing point \($0)" } ?? "PASS: every point within tolerance")
        return lines.joined(separator: "\n")
    }
}
