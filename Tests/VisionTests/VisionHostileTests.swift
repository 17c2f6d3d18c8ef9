import Checkpoint
import Forward
import Foundation
import ModelConfig
import ModelStore
import Parity
import TensorCore
import TestSupport
import Testing
import Vision

/// The fixture's vision config (P 14, D 32, 2 heads, 2 blocks, 4 × 4 table, 4 frames, 2 × 2 merge).
private func fixtureConfig() throws -> VisionConfig { try VisionHarness.tower().config }

private func expectError(_ expected: String, _ body: () throws -> Void, sourceLocation: SourceLocation = #_sourceLocation) {
    do {
        try body()
        Issue.record("no error; expected \(expected)", sourceLocation: sourceLocation)
    } catch {
        #expect("\(error)".contains(expected), "\(error)", sourceLocation: sourceLocation)
    }
}

@Suite("Vision input refused before anything runs")
struct VisionInputTests {
    let values = 3 * 14 * 14

    @Test("grids that do not cover the patches, empty or zero grids, partial patches")
    func counts() throws {
        let c = try fixtureConfig()
        let four = [Float](repeating: 0.5, count: 4 * values)
        expectError("grid_thws (1, 2, 4) covers 8 patches, but pixel_values holds 4") {
            _ = try VisionInput(pixels: four, grids: [VisionGrid(t: 1, h: 2, w: 4)], config: c)
        }
        expectError("grid_thws (1, 2, 2), (1, 2, 2) covers 8 patches, but pixel_values holds 4") {
            _ = try VisionInput(pixels: four, grids: [VisionGrid(t: 1, h: 2, w: 2), VisionGrid(t: 1, h: 2, w: 2)], config: c)
        }
        expectError("grid_thws is empty") { _ = try VisionInput(pixels: four, grids: [], config: c) }
        expectError("grid_thws[0] = (1, 0, 2): t, h and w must all be at least 1") {
            _ = try VisionInput(pixels: four, grids: [VisionGrid(t: 1, h: 0, w: 2)], config: c)
        }
        expectError("pixel_values holds 100 values, not a whole number of 588-value patches (3 × 14 × 14)") {
            _ = try VisionInput(pixels: [Float](repeating: 0, count: 100), grids: [VisionGrid(t: 1, h: 2, w: 2)], config: c)
        }
        expectError("grid_thws[0] = (4, 1099511627776, 1099511627776): the grids add up to more than 67108864 patches") {
            _ = try VisionInput(pixels: four, grids: [VisionGrid(t: 4, h: 1 << 40, w: 1 << 40)], config: c)
        }
    }

    @Test("odd grid sides: the 2 × 2 merge needs even h and w")
    func oddSides() throws {
        let c = try fixtureConfig()
        expectError("grid_thws[1] = (1, 3, 2): the merge kernel 2 × 2 needs h a multiple of 2 and w a multiple of 2") {
            _ = try VisionInput(pixels: [Float](repeating: 0, count: 10 * values), grids: [VisionGrid(t: 1, h: 2, w: 2), VisionGrid(t: 1, h: 3, w: 2)], config: c)
        }
        expectError("grid_thws[0] = (1, 2, 1)") {
            _ = try VisionInput(pixels: [Float](repeating: 0, count: 2 * values), grids: [VisionGrid(t: 1, h: 2, w: 1)], config: c)
        }
    }

    @Test("more frames than the temporal table")
    func tooManyFrames() throws {
        let c = try fixtureConfig()
        expectError("grid_thws[0] = (5, 2, 2): 5 frames, more than the temporal position table holds (init_pos_emb_time 4); split the video into chunks of at most 4 frames") {
            _ = try VisionInput(pixels: [Float](repeating: 0, count: 20 * values), grids: [VisionGrid(t: 5, h: 2, w: 2)], config: c)
        }
    }

    @Test("NaN and infinite pixels are named by patch, channel, row and column")
    func nonFinite() throws {
        let c = try fixtureConfig()
        var pixels = [Float](repeating: 0, count: 4 * values)
        pixels[1 * values + 2 * 196 + 3 * 14 + 4] = .nan
        expectError("pixel_values[1, 2, 3, 4] is nan (pixels must be finite)") {
            _ = try VisionInput(pixels: pixels, grids: [VisionGrid(t: 1, h: 2, w: 2)], config: c)
        }
        pixels[1 * values + 2 * 196 + 3 * 14 + 4] = 0
        pixels[3 * values] = -.infinity
        expectError("pixel_values[3, 0, 0, 0] is -inf") {
            _ = try VisionInput(pixels: pixels, grids: [VisionGrid(t: 1, h: 2, w: 2)], config: c)
        }
    }

    @Test("a valid packed input counts h·w/4 tokens per entry")
    func valid() throws {
        let c = try fixtureConfig()
        let input = try VisionInput(pixels: [Float](repeating: 0, count: 36 * values), grids: [VisionGrid(t: 1, h: 2, w: 2), VisionGrid(t: 4, h: 2, w: 4)], config: c)
        #expect(input.patches == 36 && input.starts == [0, 4] && input.tokens(c) == 3)
    }
}

@Suite("Hostile vision dumps")
struct VisionDumpTests {
    /// Writes a dump under `/g` with the given datasets; returns its spec.
    func dump(_ dir: TemporaryDirectory, _ build: (HDF5File) throws -> Void) throws -> String {
        let path = dir.path + "/v.h5"
        do {
            let file = try HDF5File.create(path)
            try build(file)
        }
        return path + ":/g"
    }

    func pixels(_ n: Int, size: Int = 14) -> [Float] { (0..<(n * 3 * size * size)).map { Float($0 % 97) / 97 - 0.5 } }

    @Test("a grid that does not match the patch count names the dump and both counts")
    func gridMismatch() throws {
        let dir = TemporaryDirectory(), c = try fixtureConfig()
        let spec = try dump(dir) { f in
            try f.write("g/pixel_values", floats: pixels(4), shape: [4, 3, 14, 14])
            try f.write("g/grid_thws", int32s: [1, 2, 4], shape: [1, 3])
        }
        expectError("v.h5:/g: grid_thws (1, 2, 4) covers 8 patches, but pixel_values holds 4") { _ = try VisionDump(spec: spec, config: c) }
    }

    @Test("odd sides, too many frames and NaN pixels in a dump")
    func badInputs() throws {
        let c = try fixtureConfig()
        for (grid, n, message) in [([1, 3, 2], 6, "grid_thws[0] = (1, 3, 2): the merge kernel 2 × 2 needs h a multiple of 2"),
                                   ([6, 2, 2], 24, "grid_thws[0] = (6, 2, 2): 6 frames, more than the temporal position table holds (init_pos_emb_time 4)")] {
            let dir = TemporaryDirectory()
            let spec = try dump(dir) { f in
                try f.write("g/pixel_values", floats: pixels(n), shape: [n, 3, 14, 14])
                try f.write("g/grid_thws", int32s: grid.map(Int32.init), shape: [1, 3])
            }
            expectError(message) { _ = try VisionDump(spec: spec, config: c) }
        }
        let dir = TemporaryDirectory()
        var values = pixels(4)
        values[588 + 17] = .nan
        let spec = try dump(dir) { f in
            try f.write("g/pixel_values", floats: values, shape: [4, 3, 14, 14])
            try f.write("g/grid_thws", int32s: [1, 2, 2], shape: [1, 3])
        }
        expectError("v.h5:/g: pixel_values[1, 0, 1, 3] is nan (pixels must be finite)") { _ = try VisionDump(spec: spec, config: c) }
    }

    @Test("datasets of the wrong shape or missing are refused before anything is read")
    func shapes() throws {
        let c = try fixtureConfig()
        let cases: [(String, (HDF5File) throws -> Void)] = [
            ("pixel_values has shape [4, 3, 16, 16], expected [patches, 3, 14, 14] (patch_size 14)", { f in
                try f.write("g/pixel_values", floats: self.pixels(4, size: 16), shape: [4, 3, 16, 16])
                try f.write("g/grid_thws", int32s: [1, 2, 2], shape: [1, 3])
            }),
            ("grid_thws has shape [1, 2], expected [entries, 3]", { f in
                try f.write("g/pixel_values", floats: self.pixels(4), shape: [4, 3, 14, 14])
                try f.write("g/grid_thws", int32s: [2, 2], shape: [1, 2])
            }),
            ("grid_thws[0] = (1, -2, 2): t, h and w must be between 1 and 67108864", { f in
                try f.write("g/pixel_values", floats: self.pixels(4), shape: [4, 3, 14, 14])
                try f.write("g/grid_thws", int32s: [1, -2, 2], shape: [1, 3])
            }),
            ("v.h5:/g: /g/grid_thws: expected an integer dataset", { f in
                try f.write("g/pixel_values", floats: self.pixels(4), shape: [4, 3, 14, 14])
                try f.write("g/grid_thws", floats: [1, 2, 2], shape: [1, 3])
            }),
            ("no grid_thws dataset (a vision dump holds pixel_values and grid_thws)", { f in
                try f.write("g/pixel_values", floats: self.pixels(4), shape: [4, 3, 14, 14])
            }),
        ]
        for (message, build) in cases {
            let dir = TemporaryDirectory()
            let spec = try dump(dir, build)
            expectError(message) { _ = try VisionDump(spec: spec, config: c) }
        }
    }

    @Test("a compared point of the wrong shape stops the run, naming the point and both shapes")
    func pointShape() throws {
        let dir = TemporaryDirectory()
        let spec = try dump(dir) { f in
            try f.write("g/pixel_values", floats: self.pixels(4), shape: [4, 3, 14, 14])
            try f.write("g/grid_thws", int32s: [1, 2, 2], shape: [1, 3])
            try f.write("g/layers/0/attn_out", floats: [Float](repeating: 0, count: 3 * 32), shape: [3, 32])
        }
        let tower = try VisionHarness.tower()
        let dump = try VisionDump(spec: spec, config: tower.config)
        expectError("v.h5:/g: layers/0/attn_out has shape [3, 32], expected [4, 32] (grid_thws covers 4 patches, 1 merged tokens)") {
            _ = try VisionParity.run(tower: tower, dump: dump)
        }
    }

    @Test("a dump with only the inputs runs the tower and compares nothing; a text dump is not a vision dump")
    func detection() throws {
        let dir = TemporaryDirectory()
        let spec = try dump(dir) { f in
            try f.write("g/pixel_values", floats: self.pixels(4), shape: [4, 3, 14, 14])
            try f.write("g/grid_thws", int32s: [1, 2, 2], shape: [1, 3])
        }
        #expect(VisionDump.isVisionDump(spec))
        #expect(VisionDump.isVisionDump(VisionHarness.reference("/video")))
        #expect(!VisionDump.isVisionDump(TestPaths.fixtures.appendingPathComponent("references/k25-tiny.h5").path + ":/exact"))
        #expect(!VisionDump.isVisionDump(dir.path + "/absent.h5"))
        let tower = try VisionHarness.tower()
        let report = try VisionParity.run(tower: tower, dump: try VisionDump(spec: spec, config: tower.config))
        #expect(report.points.isEmpty && report.pass && report.tokens == 1)
    }
}

@Suite("Vision config and weights refused by name")
struct VisionModelTests {
    /// k25-tiny's config.json with its vision section edited.
    func config(_ edit: (inout [String: Any]) -> Void) throws -> ModelConfig {
        let data = try Data(contentsOf: TestPaths.fixtures.appendingPathComponent("k25-tiny/config.json"))
        var root = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        var vision = root["vision_config"] as! [String: Any]
        edit(&vision)
        root["vision_config"] = vision
        return try ModelConfig.parse(Array(try JSONSerialization.data(withJSONObject: root)))
    }

    @Test("sizes the tower cannot use", arguments: [
        ("vt_num_attention_heads", "3", "config.json: vision_config key \"vt_num_attention_heads\": 3 heads do not divide vt_hidden_size 32"),
        ("vt_num_attention_heads", "16", "head dim 32 / 16 = 2 is not a multiple of 4"),
        ("mm_hidden_size", "64", "vision_config key \"mm_hidden_size\": 64 differs from vt_hidden_size 32"),
        ("merge_kernel_size", "[2]", "vision_config key \"merge_kernel_size\": must be a pair of integers between 1 and 64, found [2]"),
        ("merge_kernel_size", #""2x2""#, "found a string"),
        ("projector_hidden_act", #""gelu_new""#, "config.json: vision_config key \"projector_hidden_act\": found \"gelu_new\", expected \"gelu\""),
        ("hidden_act", #""quick_gelu""#, "expected \"gelu_pytorch_tanh\""),
        ("merge_type", #""sd2""#, "vision_config key \"merge_type\": found \"sd2\", expected \"sd2_tpool\""),
        ("vt_hidden_size", "33", "must be a multiple of 2, found 33"),
    ] as [(String, String, String)])
    func badSizes(key: String, json: String, message: String) throws {
        let value = try JSONSerialization.jsonObject(with: Data(json.utf8), options: .fragmentsAllowed)
        let model = try config { $0[key] = value }
        expectError(message) { _ = try VisionConfig(model) }
    }

    @Test("a missing vision key and a model without a vision tower")
    func missing() throws {
        let model = try config { $0.removeValue(forKey: "patch_size") }
        expectError("config.json: vision_config is missing required key \"patch_size\"") { _ = try VisionConfig(model) }
        let text = try ModelConfig.parse(Array(try Data(contentsOf: TestPaths.fixtures.appendingPathComponent("k2-thinking-tiny/config.json"))))
        expectError("Kimi K2 / K2-Thinking has no vision tower") { _ = try VisionConfig(text) }
    }

    @Test("the config's sizes come from config.json: the fixture's")
    func sizes() throws {
        let c = try fixtureConfig()
        #expect(c.patchSize == 14 && c.width == 32 && c.heads == 2 && c.headDim == 16 && c.intermediate == 64 && c.blocks == 2)
        #expect(c.tableHeight == 4 && c.tableWidth == 4 && c.maxFrames == 4 && c.mergeHeight == 2 && c.mergeWidth == 2)
        #expect(c.textWidth == 64 && c.projectorEps == 1e-5 && c.encoderEps == 1e-5 && c.ropeTheta == 10000 && c.temporalTheta == 10000)
    }

    @Test("a missing tensor, a wrong shape, a wrong dtype and a short tensor are named")
    func weights() throws {
        let opened = try ModelStore.open(VisionHarness.model)
        let input = try VisionDump(spec: VisionHarness.reference("/images"), config: try fixtureConfig()).input
        func run(_ edit: (EditedStore) throws -> Void) throws {
            let store = EditedStore(opened.store)
            try edit(store)
            _ = try VisionTower(model: opened.config, store: store, threads: 1).run(input)
        }
        expectError("tensor vision_tower.encoder.blocks.1.mlp.fc0.weight: missing from the checkpoint") {
            try run { $0.remove("vision_tower.encoder.blocks.1.mlp.fc0.weight") }
        }
        expectError("tensor vision_tower.patch_embed.pos_emb.weight: shape [4, 4, 16], expected [4, 4, 32]") {
            try run { $0.replace("vision_tower.patch_embed.pos_emb.weight", dtype: .bf16, shape: [4, 4, 16], bytes: [UInt8](repeating: 0, count: 512)) }
        }
        expectError("tensor mm_projector.proj.2.bias: dtype I32, expected BF16") {
            try run { $0.replace("mm_projector.proj.2.bias", dtype: .i32, shape: [64], bytes: [UInt8](repeating: 0, count: 256)) }
        }
        expectError("tensor vision_tower.encoder.final_layernorm.bias: 10 bytes do not match its shape [32]") {
            try run { $0.replace("vision_tower.encoder.final_layernorm.bias", dtype: .bf16, shape: [32], bytes: [UInt8](repeating: 0, count: 10)) }
        }
    }
}

@Suite("The tower's steps refuse activations of the wrong size")
struct VisionStepInputTests {
    @Test("block, final norm, merger and projector name the step and the sizes")
    func sizes() throws {
        let tower = try VisionHarness.tower()
        let input = try VisionDump(spec: VisionHarness.reference("/video"), config: tower.config).input
        #expect(throws: VisionError.input("block 0's input holds 3 values, expected [32, 32] = 1024")) { _ = try tower.block(0, input: [1, 2, 3], of: input) }
        #expect(throws: VisionError.input("the final norm's input holds 33 values, not rows of 32")) { _ = try tower.finalNorm([Float](repeating: 0, count: 33)) }
        #expect(throws: VisionError.input("the merger's input holds 64 values, expected [32, 32] = 1024")) { _ = try tower.merge([Float](repeating: 0, count: 64), of: input) }
        #expect(throws: VisionError.input("the projector's input holds 64 values, not tokens of 4 × 32")) { _ = try tower.project([Float](repeating: 0, count: 64)) }
        let wrongMerge = try VisionHarness.tower(steps: VisionSteps(temporalMerge: { _ in [0] }))
        #expect(throws: VisionError.input("the temporal merge of entry 0 holds 1 values, expected [8, 32] = 256")) {
            _ = try wrongMerge.merge([Float](repeating: 0, count: 1024), of: input)
        }
    }

    @Test("a tall, narrow grid resamples the position table row by row (no [h, table width, D] intermediate)")
    func tallGrid() throws {
        let c = try VisionHarness.tower().config
        let table = (0..<(c.tableHeight * c.tableWidth * c.width)).map { Float($0 % 13) / 13 }
        // Every output row of a grid whose width equals the table's is the table's rows mixed by A_h alone.
        let out = PositionTerms.bicubicAxis(6, c.tableHeight)
        let grid = try VisionHarness.tower().positionTerm(table: table, h: 6, w: c.tableWidth)
        for r in 0..<6 {
            for j in 0..<(c.tableWidth * c.width) {
                var want: Float = 0
                for a in 0..<c.tableHeight { want += out[r * c.tableHeight + a] * table[a * c.tableWidth * c.width + j] }
                #expect(abs(grid[r * c.tableWidth * c.width + j] - want) < 1e-6)
            }
        }
    }
}

@Suite("A tower whose sizes disagree with its weights")
struct VisionOverrideTests {
    @Test("a position table of another size than the tower's config is named, not indexed past")
    func tableSize() throws {
        var config = try fixtureConfig()
        config.tableHeight = 8
        let tower = try VisionHarness.tower(config: config)
        let input = try VisionDump(spec: VisionHarness.reference("/video"), config: config).input
        #expect(throws: VisionError.tensor(name: "vision_tower.patch_embed.pos_emb.weight", reason: "holds 512 values, expected [8, 4, 32]")) {
            _ = try tower.embed(input)
        }
    }
}

extension VisionOverrideTests {
    @Test("a tower width other than the weights' is named at the first tensor that disagrees")
    func width() throws {
        var config = try fixtureConfig()
        config.width = 64
        config.headDim = 32
        config.projectorWidth = 64
        let tower = try VisionHarness.tower(config: config)
        #expect(throws: VisionError.tensor(name: "vision_tower.encoder.blocks.0.norm0.weight", reason: "holds 32 values, expected 64")) {
            _ = try tower.block(0, input: [Float](repeating: 0, count: 4 * 64), of: try VisionInput(pixels: [Float](repeating: 0, count: 4 * 588), grids: [VisionGrid(t: 1, h: 2, w: 2)], config: config))
        }
        #expect(throws: VisionError.tensor(name: "vision_tower.encoder.final_layernorm.weight", reason: "holds 32 values, expected 64")) {
            _ = try tower.finalNorm([Float](repeating: 0, count: 64))
        }
        config.headDim = 16
        #expect(throws: VisionError.config("a tower of 2 heads × 16 for width 64 and a 2 × 2 merge is not consistent")) { _ = try VisionHarness.tower(config: config) }
    }
}
