import Foundation
import ModelStore
import TestSupport
import Testing
import Vision

@Suite("What inspect says about the vision tower")
struct VisionSummaryTests {
    @Test("the fixture's sizes and parameters by role, read from config.json and the manifest")
    func fixture() throws {
        let model = try ModelStore.open(VisionHarness.model).config
        let s = try VisionSummary(model: model, imageHeight: 448, imageWidth: 448)
        #expect(s.blocks == 2 && s.width == 32 && s.heads == 2 && s.patchSize == 14 && s.positionTable == [4, 4])
        #expect(s.maxFrames == 4 && s.mergeKernel == [2, 2] && s.textWidth == 64)
        // The same counts as k25-tiny.expected.json's params_by_role.
        #expect(s.parameters.map(\.role) == ["vision_tower", "projector"] && s.parameters.map(\.parameters) == [36_512, 24_832])
        #expect(s.grid == [32, 32] && s.tokens == 256)
        #expect(s.renderText().contains("a 448×448 image: 32×32 patches (after the processor's resize and padding), 256 tokens"))
    }

    /// Grids and token counts from transformers 5.23's `navit_resize` (max_patches 16384, 512 patches a side).
    @Test("tokens per image follow the image processor's resize and padding", arguments: [
        (448, 448, [32, 32], 256), (1000, 300, [72, 22], 396), (5000, 7000, [110, 152], 4180), (13, 13, [2, 2], 1),
        (100, 150, [8, 12], 24), (20000, 30, [512, 2], 256),
    ])
    func processorGrid(height: Int, width: Int, grid: [Int], tokens: Int) throws {
        let model = try ModelStore.open(VisionHarness.model).config
        let s = try VisionSummary(model: model, imageHeight: height, imageWidth: width)
        #expect(s.grid == grid && s.tokens == tokens)
    }

    @Test("an image side out of range is refused")
    func badImage() throws {
        let model = try ModelStore.open(VisionHarness.model).config
        #expect(throws: VisionError.input("image 0×448: each side must be 1 to 1048576 pixels")) {
            _ = try VisionSummary(model: model, imageHeight: 0, imageWidth: 448)
        }
    }
}
