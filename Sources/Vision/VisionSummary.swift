import Foundation
import JSONCore
import Manifests
import ModelConfig
import TensorCore

/// What `inspect` says about a vision tower: its sizes, its parameters by role, and the tokens one image of a
/// given size becomes (the image processor's resize and padding, shared/reference/moonvit.md §7).
public struct VisionSummary: Codable, Sendable, Equatable {
    public var blocks: Int
    public var width: Int
    public var heads: Int
    public var patchSize: Int
    public var positionTable: [Int]
    public var maxFrames: Int
    public var mergeKernel: [Int]
    public var textWidth: Int
    /// Parameters per manifest role of the vision part (the tower, the projector), in manifest order.
    public var parameters: [Role]
    /// The image asked about, `[height, width]` in pixels, the patch grid the processor makes of it
    /// `[h, w]` (after shrinking and padding) and the tokens the language model receives.
    public var image: [Int]
    public var grid: [Int]
    public var tokens: Int

    public struct Role: Codable, Sendable, Equatable {
        public var role: String
        public var parameters: Int
    }

    enum CodingKeys: String, CodingKey {
        case blocks, width, heads, parameters, image, grid, tokens
        case patchSize = "patch_size", positionTable = "position_table", maxFrames = "max_frames"
        case mergeKernel = "merge_kernel", textWidth = "text_width"
    }

    /// Largest image side accepted (pixels).
    public static let maxImageSide = 1 << 20

    public init(model: ModelConfig, imageHeight: Int, imageWidth: Int) throws(VisionError) {
        try self.init(model: model, imageHeight: imageHeight, imageWidth: imageWidth, expected: nil)
    }

    /// The same, reading the parameters from `expected` when the caller already expanded `model` (inspect has:
    /// expanding the full K2.5 list again costs as much as the rest of inspect's checks); nil: expanded here.
    public init(model: ModelConfig, imageHeight: Int, imageWidth: Int, expected: ExpectedTensorList?) throws(VisionError) {
        let c = try VisionConfig(model)
        guard imageHeight >= 1, imageWidth >= 1, imageHeight <= Self.maxImageSide, imageWidth <= Self.maxImageSide else {
            throw .input("image \(imageHeight)×\(imageWidth): each side must be 1 to \(Self.maxImageSide) pixels")
        }
        blocks = c.blocks
        width = c.width
        heads = c.heads
        patchSize = c.patchSize
        positionTable = [c.tableHeight, c.tableWidth]
        maxFrames = c.maxFrames
        mergeKernel = [c.mergeHeight, c.mergeWidth]
        textWidth = c.textWidth
        var byRole: [Role] = []
        do throws(ConfigError) {
            let list: ExpectedTensorList
            if let expected { list = expected } else { list = try ExpectedTensorList(config: model) }
            // Read in place: the list's `tensors` (208,550 of them in a K2.5) need not be built.
            for p in 0..<list.count where list.isVision(at: p) {
                let role = list.role(at: p)
                let n = list.shape(at: p).reduce(1, *)
                if let i = byRole.firstIndex(where: { $0.role == role }) { byRole[i].parameters += n } else { byRole.append(Role(role: role, parameters: n)) }
            }
        } catch {
            throw .config(error.description)
        }
        parameters = byRole
        image = [imageHeight, imageWidth]
        let limits = try Self.processorLimits(manifest: model.visionPart?.specs ?? "")
        grid = Self.processorGrid(height: imageHeight, width: imageWidth, config: c, maxPatches: limits.maxPatches, maxSide: limits.maxSide)
        tokens = (grid[0] / c.mergeHeight) * (grid[1] / c.mergeWidth)
    }

    /// The image processor's patch grid for an RGB image of `height × width` pixels: shrink (never enlarge) to at
    /// most `maxPatches` patches and `maxSide` patches a side, truncate, then pad each side up to a multiple of
    /// the merge kernel's pixels (`navit_resize`).
    public static func processorGrid(height: Int, width: Int, config c: VisionConfig, maxPatches: Int, maxSide: Int) -> [Int] {
        let p = Double(c.patchSize), hi = Double(height), wi = Double(width)
        let ph = max(1, height / c.patchSize), pw = max(1, width / c.patchSize)
        let scale = min(1, (Double(maxPatches) / Double(ph * pw)).squareRoot(), Double(maxSide) * p / hi, Double(maxSide) * p / wi)
        let cap = maxSide * c.patchSize
        let nh = min(cap, max(1, Int(hi * scale))), nw = min(cap, max(1, Int(wi * scale)))
        let blockH = c.mergeHeight * c.patchSize, blockW = c.mergeWidth * c.patchSize
        let paddedH = (nh + blockH - 1) / blockH * blockH, paddedW = (nw + blockW - 1) / blockW * blockW
        return [paddedH / c.patchSize, paddedW / c.patchSize]
    }

    /// The manifest's `processor` object: `max_patches`, `max_side_patches`.
    static func processorLimits(manifest name: String) throws(VisionError) -> (maxPatches: Int, maxSide: Int) {
        guard let data = ManifestResources.data(named: name) else { throw .config("manifest \(name): not found among the shipped manifests") }
        let root: JSONValue
        do throws(JSONError) { root = try JSONDocument.parse(Array(data)) } catch { throw .config("manifest \(name): not valid JSON: \(error)") }
        guard let patches = root["processor"]?["max_patches"]?.intValue, let side = root["processor"]?["max_side_patches"]?.intValue,
            patches >= 1, side >= 1
        else { throw .config("manifest \(name): processor.max_patches and processor.max_side_patches must be positive integers") }
        return (patches, side)
    }

    public func renderText() -> String {
        var lines = ["vision tower: \(blocks) blocks × \(width) wide, \(heads) heads, patch \(patchSize)×\(patchSize) pixels, position table \(positionTable[0])×\(positionTable[1]), up to \(maxFrames) frames per video chunk, \(mergeKernel[0])×\(mergeKernel[1]) merge into \(textWidth)-wide tokens"]
        lines.append("  parameters: " + parameters.map { "\($0.role) \($0.parameters)" }.joined(separator: ", "))
        lines.append("  a \(image[0])×\(image[1]) image: \(grid[0])×\(grid[1]) patches (after the processor's resize and padding), \(tokens) tokens")
        return lines.joined(separator: "\n") + "\n"
    }
}
