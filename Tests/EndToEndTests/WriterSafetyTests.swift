import Foundation
import TestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Every name under `folder` (hidden ones too, links not followed) that is a temporary file.
func temporaries(under folder: String) -> [String] {
    ((FileManager.default.enumerator(atPath: folder)?.allObjects as? [String]) ?? []).filter { $0.hasSuffix(".partial") }
}

@Suite("writers never follow planted links nor write into their input")
struct WriterSafetyTests {
    /// A scratch folder with a victim file and folder that no command may change.
    final class Scene {
        let dir = TemporaryDirectory()
        var path: String { dir.path }
        let victim: String
        let victimFolder: String

        init() throws {
            victim = dir.write("victim", Array("precious".utf8))
            victimFolder = dir.path + "/victims"
            try FileManager.default.createDirectory(atPath: victimFolder, withIntermediateDirectories: true)
        }

        func link(_ path: String, to target: String) throws {
            try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try FileManager.default.createSymbolicLink(atPath: path, withDestinationPath: target)
        }

        func expectUntouched(_ label: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
            #expect(fileText(victim) == "precious", "\(label): the victim file was written", sourceLocation: sourceLocation)
            #expect(try FileManager.default.contentsOfDirectory(atPath: victimFolder).isEmpty, "\(label): the victim folder was written", sourceLocation: sourceLocation)
        }
    }

    /// (label, set-up that plants something and returns the command, the message expected on standard error).
    static let plantedCases: [String] = [
        "convert --resume: link at a temporary name",
        "convert --compress --resume: link at a temporary name",
        "convert --resume: link at a final name",
        "convert --resume: source/ is a link",
        "convert --resume: a carried file's sub-folder is a link",
        "shard --rank 0 into a shared set: link at shards.json's temporary name",
        "shard --rank 0 into a shared set: source/ is a link",
        "convert: the output folder is a link",
        "export: the output folder is a link",
        "quantize: the output folder is a link",
        "dequantize: the output folder is a link",
        "shard: the output folder is a link",
        "shard --merge: the output folder is a link",
        "quantize --format k2pack: the output folder is a link",
        "dequantize --format k2pack: the output folder is a link",
    ]

    @Test("a link planted at a temporary name, a final name, a subfolder or the output folder is refused, never followed", arguments: plantedCases)
    func plantedLinks(_ label: String) throws {
        let scene = try Scene()
        let k25 = TestPaths.fixture("k25-tiny"), bf16 = TestPaths.fixture("quantize/k2-thinking-bf16")
        let out = scene.path + "/out"
        var command: [String]
        var expected: String
        switch label {
        case "convert --resume: link at a temporary name":
            try scene.link(out + "/.layer-0000.k2p.partial", to: scene.victim)
            command = ["convert", "--quiet", "--resume", k25, out]
            expected = "\(out)/.layer-0000.k2p.partial: cannot create the temporary file: something is already at this name: it is a symbolic link (to \(scene.victim)); k2pack never writes through or over a link; remove it"
        case "convert --compress --resume: link at a temporary name":
            try scene.link(out + "/.layer-0001.k2z.partial", to: scene.victimFolder + "/new")
            command = ["convert", "--quiet", "--compress", "--resume", k25, out]
            expected = "\(out)/.layer-0001.k2z.partial: cannot create the temporary file: something is already at this name: it is a symbolic link (to \(scene.victimFolder)/new)"
        case "convert --resume: link at a final name":
            try scene.link(out + "/layer-0002.k2p", to: scene.victim)
            command = ["convert", "--quiet", "--resume", k25, out]
            expected = "\(out)/layer-0002.k2p: cannot write it: it is a symbolic link (to \(scene.victim)); k2pack never writes through or over a link"
        case "convert --resume: source/ is a link":
            try scene.link(out + "/source", to: scene.victimFolder)
            command = ["convert", "--quiet", "--resume", k25, out]
            expected = "\(out)/source: cannot write there: it is a symbolic link (to \(scene.victimFolder)); k2pack does not write through links: name the real folder"
        case "convert --resume: a carried file's sub-folder is a link":
            let input = scene.path + "/in"
            try FileManager.default.copyItem(atPath: k25, toPath: input)
            scene.dir.write("in/docs/readme.md", Array("carried".utf8))
            try scene.link(out + "/docs", to: scene.victimFolder)
            command = ["convert", "--quiet", "--resume", input, out]
            expected = "\(out)/docs: cannot write there: it is a symbolic link (to \(scene.victimFolder)); k2pack does not write through links: name the real folder"
        case "shard --rank 0 into a shared set: link at shards.json's temporary name":
            try scene.link(out + "/.shards.json.partial", to: scene.victim)
            command = ["shard", "--quiet", k25, out, "--gpus", "2", "--ep", "2", "--rank", "0"]
            expected = "\(out)/.shards.json.partial: cannot create the temporary file: something is already at this name: it is a symbolic link (to \(scene.victim))"
        case "shard --rank 0 into a shared set: source/ is a link":
            try scene.link(out + "/source", to: scene.victimFolder)
            command = ["shard", "--quiet", k25, out, "--gpus", "2", "--ep", "2", "--rank", "0"]
            expected = "\(out)/source: cannot write there: it is a symbolic link (to \(scene.victimFolder))"
        default:
            // "<writer>: the output folder is a link"
            try scene.link(out, to: scene.victimFolder)
            let packed = scene.path + "/packed", set = scene.path + "/set"
            switch label.components(separatedBy: ":")[0] {
            case "convert": command = ["convert", "--quiet", k25, out]
            case "export":
                #expect(try run(["convert", "--quiet", k25, packed]).status == 0)
                command = ["export", "--quiet", packed, out]
            case "quantize": command = ["quantize", "--quiet", bf16, out]
            case "quantize --format k2pack": command = ["quantize", "--quiet", "--format", "k2pack", bf16, out]
            case "dequantize --format k2pack": command = ["dequantize", "--quiet", "--format", "k2pack", TestPaths.fixture("k2-thinking-tiny"), out]
            case "dequantize": command = ["dequantize", "--quiet", TestPaths.fixture("k2-thinking-tiny"), out]
            case "shard": command = ["shard", "--quiet", k25, out, "--gpus", "2", "--ep", "2"]
            default:
                #expect(try run(["shard", "--quiet", k25, set, "--gpus", "2", "--ep", "2"]).status == 0)
                command = ["shard", "--merge", "--quiet", set, out]
            }
            expected = "\(out): cannot write there: it is a symbolic link (to \(scene.victimFolder)); k2pack does not write through links: name the real folder"
        }
        let r = try run(command)
        #expect(r.status == 1, "\(label): status \(r.status)\n\(r.err)")
        #expect(r.err.contains(expected), "\(label): \(r.err)")
        try scene.expectUntouched(label)
        if label.hasPrefix("convert --resume: link at a temporary name") {
            // The link is not renamed into place as layer-0000.k2p (a final name leading out of the folder).
            #expect(!somethingAt(out + "/layer-0000.k2p"))
        }
    }

    @Test("carried files with one-character names, in sub-folders too, go through convert and export")
    func shortCarriedNames() throws {
        let dir = TemporaryDirectory()
        let input = dir.path + "/in"
        try FileManager.default.copyItem(atPath: TestPaths.fixture("k25-tiny"), toPath: input)
        dir.write("in/a", Array("one".utf8))
        dir.write("in/d/b", Array("two".utf8))
        let packed = try run(["convert", "--quiet", input, dir.path + "/p"])
        #expect(packed.status == 0, "\(packed.err)")
        let exported = try run(["export", "--quiet", dir.path + "/p", dir.path + "/e"])
        #expect(exported.status == 0, "\(exported.err)")
        #expect(try folderContents(dir.path + "/e") == folderContents(input))
    }

    static let overlapCases = [
        "shard IN IN --rank 0", "shard IN PARENT --rank 0", "convert IN IN/packed", "convert IN PARENT --resume",
        "export PACK PACK/hf", "quantize IN IN/q", "dequantize IN IN", "shard --merge SET SET/merged", "convert via an alias of IN",
    ]

    @Test("every writer refuses an output that is its input, inside it, or holding it (resolved paths)", arguments: overlapCases)
    func overlap(_ label: String) throws {
        let dir = TemporaryDirectory()
        let parent = dir.path + "/parent"
        try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true)
        let k25 = parent + "/k25"
        try FileManager.default.copyItem(atPath: TestPaths.fixture("k25-tiny"), toPath: k25)
        var input = k25
        let command: [String], reason: String
        switch label {
        case "shard IN IN --rank 0":
            command = ["shard", "--quiet", k25, k25, "--gpus", "2", "--ep", "2", "--rank", "0"]
            reason = "\(k25): cannot write there: it is the input \(k25) itself; choose another path"
        case "shard IN PARENT --rank 0":
            command = ["shard", "--quiet", k25, parent, "--gpus", "2", "--ep", "2", "--rank", "0"]
            reason = "\(parent): cannot write there: it holds the input \(k25) ("
        case "convert IN IN/packed":
            command = ["convert", "--quiet", k25, k25 + "/packed"]
            reason = "\(k25)/packed: cannot write there: it lies inside the input \(k25) ("
        case "convert IN PARENT --resume":
            command = ["convert", "--quiet", "--resume", k25, parent]
            reason = "\(parent): cannot write there: it holds the input \(k25) ("
        case "export PACK PACK/hf":
            input = dir.path + "/packed"
            #expect(try run(["convert", "--quiet", k25, input]).status == 0)
            command = ["export", "--quiet", input, input + "/hf"]
            reason = "\(input)/hf: cannot write there: it lies inside the input \(input) ("
        case "quantize IN IN/q":
            input = dir.path + "/bf16"
            try FileManager.default.copyItem(atPath: TestPaths.fixture("quantize/k2-thinking-bf16"), toPath: input)
            command = ["quantize", "--quiet", input, input + "/q"]
            reason = "\(input)/q: cannot write there: it lies inside the input \(input) ("
        case "dequantize IN IN":
            input = dir.path + "/int4"
            try FileManager.default.copyItem(atPath: TestPaths.fixture("k2-thinking-tiny"), toPath: input)
            command = ["dequantize", "--quiet", input, input]
            reason = "\(input): cannot write there: it is the input \(input) itself"
        case "shard --merge SET SET/merged":
            input = dir.path + "/set"
            #expect(try run(["shard", "--quiet", k25, input, "--gpus", "2", "--ep", "2"]).status == 0)
            command = ["shard", "--merge", "--quiet", input, input + "/merged"]
            reason = "\(input)/merged: cannot write there: it lies inside the input \(input) ("
        default:
            try FileManager.default.createSymbolicLink(atPath: dir.path + "/alias", withDestinationPath: parent)
            command = ["convert", "--quiet", k25, dir.path + "/alias/k25/packed"]
            reason = "\(dir.path)/alias/k25/packed: cannot write there: it lies inside the input \(k25) ("
        }
        let before = try folderContents(input)
        let r = try run(command)
        #expect(r.status == 1, "\(label): status \(r.status)\n\(r.err)")
        #expect(r.err.contains(reason), "\(label): \(r.err)")
        #expect(try folderContents(input) == before, "\(label): the input changed")
        #expect(temporaries(under: dir.path).isEmpty)
    }

    @Test("parity --plot refuses devices, folders, links, FIFOs and paths in its inputs, before running")
    func plot() throws {
        let dir = TemporaryDirectory()
        let model = dir.copy(fixture: "k25-tiny")
        let reference = dir.path + "/ref.h5"
        try FileManager.default.copyItem(atPath: TestPaths.fixture("references/k25-tiny.h5"), toPath: reference)
        let victim = dir.write("victim", Array("precious".utf8))
        try FileManager.default.createSymbolicLink(atPath: dir.path + "/link.svg", withDestinationPath: victim)
        #expect(mkfifo(dir.path + "/fifo.svg", 0o644) == 0)
        let realModel = String(decoding: Array((try #require(realpath(model, nil).map { p in defer { free(p) }; return String(cString: p) })).utf8), as: UTF8.self)
        let cases: [(String, String)] = [
            ("/dev/null", "/dev/null: cannot write there: it is a device, not a regular file"),
            (model + "/config.json", "\(model)/config.json: cannot write there: it lies inside the input \(model) (\(realModel)); choose a path outside it"),
            (model + "/plot.svg", "\(model)/plot.svg: cannot write there: it lies inside the input \(model) (\(realModel)); choose a path outside it"),
            (reference, "\(reference): cannot write there: it is the input \(reference) itself; choose another path"),
            (dir.path + "/link.svg", "\(dir.path)/link.svg: cannot write there: it is a symbolic link (to \(victim)); k2pack never writes through or over a link"),
            (dir.path + "/fifo.svg", "\(dir.path)/fifo.svg: cannot write there: it is a FIFO or socket, not a regular file"),
            (dir.path, "\(dir.path): cannot write there: it holds the input \(model)"),
        ]
        let before = try folderContents(model)
        for (plot, expected) in cases {
            let r = try run(["parity", model, "--reference", reference + ":/exact", "--plot", plot, "--quiet"])
            #expect(r.status == 1, "\(plot): status \(r.status)")
            #expect(r.err.contains(expected), "\(plot): \(r.err)")
            #expect(r.out.isEmpty, "\(plot): the run should not have started: \(r.out)")
        }
        #expect(try folderContents(model) == before)
        #expect(fileText(victim) == "precious")
        let set = dir.path + "/set"
        #expect(try run(["shard", "--quiet", model, set, "--gpus", "2", "--ep", "2"]).status == 0)
        let noDump = try run(["parity", model, "--shards", set, "--plot", dir.path + "/p.svg"])
        #expect(noDump.status != 0 && noDump.err.contains("--plot charts the error per layer against a dump: it needs --reference"), "\(noDump.err)")
    }

    @Test("shard --merge --dry-run checks the set and writes nothing; other options are refused with --merge")
    func mergeDryRun() throws {
        let dir = TemporaryDirectory()
        let set = dir.path + "/set", out = dir.path + "/merged"
        #expect(try run(["shard", "--quiet", TestPaths.fixture("deepseek-v3-tiny"), set, "--gpus", "2", "--tp", "2"]).status == 0)
        let before = try folderContents(set)
        let plan = try run(["shard", "--merge", set, out, "--dry-run"])
        #expect(plan.status == 0, "\(plan.err)")
        #expect(plan.out.contains("would merge 2 ranks into") && plan.out.contains("nothing written (--dry-run)"), "\(plan.out)")
        #expect(!somethingAt(out))
        let json = try run(["shard", "--merge", set, out, "--dry-run", "--json"])
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.out.utf8)) as? [String: Any])
        #expect(object["ranks"] as? Int == 2 && (object["files"] as? [Any])?.isEmpty == false, "\(json.out)")
        #expect(!somethingAt(out))
        let noOutput = try run(["shard", "--merge", set, "--dry-run"])
        #expect(noOutput.status == 0 && noOutput.out.contains("nothing written"), "\(noOutput.err)")
        // The checks merge makes first are made.
        dir.write("full/x", [1])
        let full = try run(["shard", "--merge", set, dir.path + "/full", "--dry-run"])
        #expect(full.status == 1 && full.err.contains("\(dir.path)/full: already exists and is not empty; choose a new folder"), "\(full.err)")
        #expect(!full.err.contains("--resume"))
        let inside = try run(["shard", "--merge", set, set + "/m", "--dry-run"])
        #expect(inside.status == 1 && inside.err.contains("\(set)/m: cannot write there: it lies inside the input \(set)"), "\(inside.err)")
        try FileManager.default.removeItem(atPath: set + "/rank-0001/k2pack.json")
        let broken = try run(["shard", "--merge", set, out, "--dry-run"])
        #expect(broken.status == 1 && broken.err.contains("rank 1 of 2 is missing or unfinished"), "\(broken.err)")
        #expect(!somethingAt(out))
        var expectedSet = before
        expectedSet["rank-0001/k2pack.json"] = nil
        #expect(try folderContents(set) == expectedSet, "the set changed")
        for option in [["--rank", "0"], ["--gpus", "2"], ["--tp", "2"], ["--ep", "1"]] {
            let r = try run(["shard", "--merge", set, out] + option)
            #expect(r.status != 0 && r.err.contains("\(option[0]) does not apply to --merge"), "\(option): \(r.err)")
        }
        #expect(!somethingAt(out))
    }

    @Test("only convert suggests --resume when the output folder is not empty")
    func resumeHint() throws {
        let dir = TemporaryDirectory()
        dir.write("full/x", [1])
        let full = dir.path + "/full", packed = dir.path + "/packed", set = dir.path + "/set"
        #expect(try run(["convert", "--quiet", TestPaths.fixture("k25-tiny"), packed]).status == 0)
        #expect(try run(["shard", "--quiet", TestPaths.fixture("k25-tiny"), set, "--gpus", "2", "--ep", "2"]).status == 0)
        let commands: [[String]] = [
            ["export", packed, full], ["quantize", TestPaths.fixture("quantize/k2-thinking-bf16"), full],
            ["dequantize", TestPaths.fixture("k2-thinking-tiny"), full], ["shard", "--merge", set, full],
            ["shard", TestPaths.fixture("k25-tiny"), full, "--gpus", "2", "--ep", "2"],
        ]
        for command in commands {
            let r = try run(command + ["--quiet"])
            #expect(r.status == 1 && r.err.contains("\(full): already exists and is not empty; choose a new folder"), "\(command): \(r.err)")
            #expect(!r.err.contains("--resume"), "\(command): \(r.err)")
        }
        let convert = try run(["convert", "--quiet", TestPaths.fixture("k25-tiny"), full])
        #expect(convert.status == 1 && convert.err.contains("\(full): already exists and is not empty; choose a new folder (or --resume an interrupted convert)"), "\(convert.err)")
    }
}

@Suite("an input file that changes while it is read")
struct InputChangeTests {
    /// Runs the binary with `K2PACK_TEST_WHEN_MAPPED=<action>:<name>`: the moment the named file is mapped, it is
    /// truncated to half (`shrink`: the next access past that raises SIGBUS) or grown by a byte (`grow`).
    func runChanging(_ arguments: [String], _ action: String, _ name: String) throws -> (status: Int32, signalled: Bool, err: String) {
        let executable = try #require(TestPaths.executable, "k2pack is not built (swift build)")
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        process.environment = launcherFree(["K2PACK_TEST_WHEN_MAPPED": "\(action):\(name)"])
        let err = Pipe()
        process.standardOutput = FileHandle.nullDevice
        process.standardError = err
        try process.run()
        let data = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, process.terminationReason == .uncaughtSignal, String(decoding: data, as: UTF8.self))
    }

    static let shard2 = "model-00002-of-000006.safetensors"

    /// (command before input and output, fixture, file to change, exit status expected).
    static let shrinkCases: [([String], String, String, Int32)] = [
        (["verify"], "k25-tiny", shard2, 74),
        (["convert", "--quiet"], "k25-tiny", shard2, 74),
        (["convert", "--compress", "--quiet"], "k25-tiny", shard2, 74),
        (["convert", "--to", "gguf", "--no-tokenizer", "--quiet"], "k25-tiny", shard2, 74),
        (["shard", "--quiet", "--gpus", "2", "--ep", "2"], "k25-tiny", shard2, 74),
        (["quantize", "--quiet"], "quantize/k2-thinking-bf16", "model-00001-of-000003.safetensors", 1),
        (["dequantize", "--quiet"], "k2-thinking-tiny", "model-00001-of-000003.safetensors", 1),
    ]

    @Test("a shard truncated while mapped: named, never a crash, no temporary file left", arguments: shrinkCases)
    func shrink(_ command: [String], _ fixture: String, _ file: String, _ status: Int32) throws {
        let dir = TemporaryDirectory()
        let input = dir.path + "/in", out = dir.path + "/out"
        try FileManager.default.copyItem(atPath: TestPaths.fixture(fixture), toPath: input)
        let length = try #require(try FileManager.default.attributesOfItem(atPath: input + "/" + file)[.size] as? Int)
        let arguments = command + [input] + (command == ["verify"] ? [] : [out])
        let r = try runChanging(arguments, "shrink", file)
        #expect(!r.signalled, "\(command): died of a signal: \(r.err)")
        #expect(r.status == status, "\(command): status \(r.status): \(r.err)")
        #expect(r.err.contains("\(input)/\(file): "), "\(command): the file is not named: \(r.err)")
        #expect(r.err.contains("the file changed while being read") || r.err.contains("an input file changed (shrank) while being read"), "\(command): \(r.err)")
        if status == 74 {
            #expect(r.err.contains("it was \(length) bytes when opened, it is now \(length / 2)"), "\(command): \(r.err)")
        }
        #expect(temporaries(under: dir.path).isEmpty, "\(command): left \(temporaries(under: dir.path))")
        // Nothing that looks finished was written.
        #expect(!somethingAt(out + "/k2pack.json") && !somethingAt(out + "/config.json") && !somethingAt(out + "/shards.json"), "\(command)")
    }

    @Test("a k2pack file truncated while export or merge copies from it: named, never a crash, no temporary file left",
          arguments: [false, true])
    func shrinkPacked(_ merging: Bool) throws {
        let dir = TemporaryDirectory()
        let input = dir.path + "/in", out = dir.path + "/out"
        let make = merging
            ? ["shard", "--quiet", "--gpus", "2", "--ep", "2", TestPaths.fixture("k25-tiny"), input]
            : ["convert", "--quiet", TestPaths.fixture("k25-tiny"), input]
        #expect(try run(make).status == 0)
        let file = merging ? "rank-0000/layer-0001.k2p" : "layer-0001.k2p"
        let length = try #require(try FileManager.default.attributesOfItem(atPath: input + "/" + file)[.size] as? Int)
        let r = try runChanging((merging ? ["shard", "--merge", "--quiet"] : ["export", "--quiet"]) + [input, out], "shrink", "layer-0001.k2p")
        #expect(!r.signalled, "died of a signal: \(r.err)")
        // Both read every stored tensor whole first (its checksum): the fault is caught by the handler.
        #expect(r.status == 74, "status \(r.status): \(r.err)")
        let expected = "k2pack: error: \(input)/\(file): the file changed while being read (it was \(length) bytes when opened, it is now \(length / 2)"
        #expect(r.err.contains(expected), "\(r.err)")
        #expect(temporaries(under: dir.path).isEmpty, "left \(temporaries(under: dir.path))")
        #expect(!somethingAt(out + "/config.json") && !somethingAt(out + "/model.safetensors.index.json"))
    }

    @Test("a SIGBUS that no fault caused (kill -BUS) ends the process as SIGBUS does; it never carries on with its temporaries gone",
          arguments: [["convert", "--quiet"], ["shard", "--quiet", "--gpus", "2", "--ep", "2"]])
    func signalled(_ command: [String]) throws {
        let dir = TemporaryDirectory()
        let input = dir.path + "/in", out = dir.path + "/out"
        try FileManager.default.copyItem(atPath: TestPaths.fixture("k25-tiny"), toPath: input)
        // The child inherits this: no core file from the signal it dies of.
        var noCore = rlimit(rlim_cur: 0, rlim_max: 0)
        _ = getrlimit(Int32(RLIMIT_CORE.rawValue), &noCore)
        noCore.rlim_cur = 0
        _ = setrlimit(Int32(RLIMIT_CORE.rawValue), &noCore)
        let r = try runChanging(command + [input, out], "signal", Self.shard2)
        #expect(r.signalled && r.status == SIGBUS, "\(command): status \(r.status), signalled \(r.signalled): \(r.err)")
        #expect(r.err.contains("k2pack: bus error (SIGBUS) outside any mapped input file"), "\(command): \(r.err)")
        #expect(temporaries(under: dir.path).isEmpty, "\(command): left \(temporaries(under: dir.path))")
        #expect(!somethingAt(out + "/k2pack.json") && !somethingAt(out + "/shards.json"), "\(command)")
    }

    static let growCases: [([String], String, String)] = [
        (["convert", "--quiet"], "k25-tiny", shard2),
        (["convert", "--compress", "--quiet"], "k25-tiny", shard2),
        (["convert", "--to", "gguf", "--no-tokenizer", "--quiet"], "k25-tiny", shard2),
        (["shard", "--quiet", "--gpus", "2", "--ep", "2"], "k25-tiny", shard2),
        (["quantize", "--quiet"], "quantize/k2-thinking-bf16", "model-00001-of-000003.safetensors"),
        (["dequantize", "--quiet"], "k2-thinking-tiny", "model-00001-of-000003.safetensors"),
    ]

    @Test("a shard rewritten while read (no fault): refused by its length and time before any output is kept", arguments: growCases)
    func grow(_ command: [String], _ fixture: String, _ file: String) throws {
        let dir = TemporaryDirectory()
        let input = dir.path + "/in", out = dir.path + "/out"
        try FileManager.default.copyItem(atPath: TestPaths.fixture(fixture), toPath: input)
        let length = try #require(try FileManager.default.attributesOfItem(atPath: input + "/" + file)[.size] as? Int)
        let r = try runChanging(command + [input, out], "grow", file)
        #expect(!r.signalled && r.status == 1, "\(command): status \(r.status): \(r.err)")
        #expect(r.err.contains("\(input)/\(file): cannot use it: the file changed while being read (it was \(length) bytes when opened, it is now \(length + 1)); read it again once it is complete"), "\(command): \(r.err)")
        #expect(temporaries(under: dir.path).isEmpty, "\(command): left \(temporaries(under: dir.path))")
        #expect(!somethingAt(out + "/k2pack.json") && !somethingAt(out + "/config.json") && !somethingAt(out + "/shards.json"), "\(command)")
    }

    @Test("a low soft limit on open files is raised to the hard limit at start-up")
    func openFileLimit() throws {
        var limit = rlimit()
        #expect(getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0)
        guard limit.rlim_max >= 64 else { return }  // nothing to raise here
        let executable = try #require(TestPaths.executable)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", "ulimit -S -n 9 && exec \"$0\" verify --headers-only \"$1\"", executable.path, TestPaths.fixture("k25-tiny")]
        let out = Pipe()
        process.standardOutput = out
        process.standardError = out
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "\(String(decoding: data, as: UTF8.self))")
    }
}
