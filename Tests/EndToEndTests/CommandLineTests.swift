import Foundation
import TestSupport
import Testing

/// Runs the built `k2pack` and returns exit status, standard output and standard error. A launcher's rank
/// variables are removed from the environment (they change what `shard` writes) unless given in `environment`.
func run(_ arguments: [String], environment: [String: String] = [:]) throws -> (status: Int32, out: String, err: String) {
    let executable = try #require(TestPaths.executable, "k2pack is not built (swift build)")
    let process = Process()
    process.executableURL = executable
    process.arguments = arguments
    process.environment = launcherFree(environment)
    let out = Pipe()
    let err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    let errData = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: outData, as: UTF8.self), String(decoding: errData, as: UTF8.self))
}

/// This process's environment without RANK/WORLD_SIZE/SLURM_PROCID/SLURM_NTASKS, plus `extra`.
func launcherFree(_ extra: [String: String]) -> [String: String] {
    var env = ProcessInfo.processInfo.environment
    for key in ["RANK", "WORLD_SIZE", "SLURM_PROCID", "SLURM_NTASKS"] { env[key] = nil }
    return env.merging(extra) { $1 }
}

@Suite("the k2pack command line")
struct CommandLineTests {
    @Test("verify exits 0 on a good fixture and prints OK")
    func verifyGood() throws {
        let r = try run(["verify", TestPaths.fixture("k25-tiny")])
        #expect(r.status == 0, "\(r.out)\(r.err)")
        #expect(r.out.contains("OK: no problems found"))
        #expect(r.out.contains("48 modules"))
    }

    @Test("verify exits 1 on every malformed case, naming the culprit, and never crashes")
    func verifyMalformed() throws {
        let cases = MalformedCase.all()
        #expect(cases.count > 20)
        for c in cases {
            let r = try run(["verify", "--quiet", c.path])
            #expect(r.status == 1, "\(c.case): status \(r.status)\n\(r.out)\(r.err)")
            if let file = c.culpritFile { #expect(r.out.contains(file), "\(c.case): \(r.out)") }
            if let tensor = c.culpritTensor { #expect(r.out.contains(tensor), "\(c.case): \(r.out)") }
            #expect(r.out.contains("FAILED"), "\(c.case)")
        }
    }

    @Test("inspect --json is valid JSON with the generator's counts")
    func inspectJSON() throws {
        let r = try run(["inspect", "--json", TestPaths.fixture("k25-tiny")])
        #expect(r.status == 0, "\(r.err)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [String: Any])
        let record = try FixtureRecord.load("k25-tiny")
        #expect(object["tensor_count"] as? Int == record.tensorCount)
        #expect(object["total_parameters"] as? Int == record.totalParams)
        #expect(object["architecture"] as? String == "kimi_k25")
        let memory = try #require(object["memory"] as? [String: Any])
        #expect(memory["gpus"] as? Int == 8)
    }

    @Test("verify --json reports findings with file and tensor")
    func verifyJSON() throws {
        let r = try run(["verify", "--json", TestPaths.fixture("malformed/nan_scale")])
        #expect(r.status == 1)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [String: Any])
        let findings = try #require(object["findings"] as? [[String: Any]])
        #expect(findings.count == 1)
        #expect(findings.first?["code"] as? String == "scale_not_finite")
        #expect(findings.first?["tensor"] as? String == "model.layers.1.mlp.experts.1.gate_proj.weight_scale")
        #expect(findings.first?["file"] as? String == "model-00002-of-00002.safetensors")
    }

    @Test("a missing folder is a clear error, not a crash")
    func missingFolder() throws {
        let r = try run(["verify", "/nonexistent/k2pack-folder"])
        #expect(r.status != 0)
        #expect(r.err.contains("/nonexistent/k2pack-folder: cannot open: no such file or directory"), "\(r.err)")
    }

    @Test("a malformed SHA-256 list is refused with its line number")
    func badList() throws {
        let dir = TemporaryDirectory()
        let list = dir.write("SHA256SUMS", Array("not-a-digest  model.safetensors\n".utf8))
        let r = try run(["verify", "--sha256", list, TestPaths.fixture("deepseek-v3-tiny")])
        #expect(r.status != 0)
        #expect(r.err.contains("SHA256SUMS:1: 'not-a-digest' is not a 64-digit SHA-256"), "\(r.err)")
    }

    @Test("--gpus must be positive")
    func badGPUs() throws {
        let r = try run(["inspect", "--gpus", "0", TestPaths.fixture("k25-tiny")])
        #expect(r.status != 0)
        #expect(r.err.contains("--gpus 0: expected 1 to 4096"), "\(r.err)")
    }
}

@Suite("convert and export from the command line")
struct RepackCommandLineTests {
    @Test("convert then export restores the fixture; a second convert into the same folder is refused")
    func roundTrip() throws {
        let dir = TemporaryDirectory()
        let packed = dir.path + "/packed"
        let c = try run(["convert", "--quiet", TestPaths.fixture("k2-thinking-tiny"), packed])
        #expect(c.status == 0, "\(c.err)")
        #expect(c.out.contains("expert stacks"))
        let again = try run(["convert", "--quiet", TestPaths.fixture("k2-thinking-tiny"), packed])
        #expect(again.status != 0)
        #expect(again.err.contains("already exists and is not empty"), "\(again.err)")
        let e = try run(["export", "--json", packed, dir.path + "/exported"])
        #expect(e.status == 0, "\(e.err)")
        for name in try FileManager.default.contentsOfDirectory(atPath: TestPaths.fixture("k2-thinking-tiny")) {
            let a = FileManager.default.contents(atPath: TestPaths.fixture("k2-thinking-tiny") + "/" + name)
            let b = FileManager.default.contents(atPath: dir.path + "/exported/" + name)
            #expect(a == b, "\(name)")
        }
    }

    @Test("inspect and verify accept a k2pack folder")
    func inspectPack() throws {
        let dir = TemporaryDirectory()
        #expect(try run(["convert", "--quiet", TestPaths.fixture("k25-tiny"), dir.path + "/p"]).status == 0)
        let i = try run(["inspect", "--json", dir.path + "/p"])
        #expect(i.status == 0, "\(i.err)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(i.out.utf8)) as? [String: Any])
        #expect(object["format"] as? String == "k2pack")
        #expect(object["stack_count"] as? Int == 18)
        #expect(object["tensor_count"] as? Int == 96)
        let v = try run(["verify", dir.path + "/p"])
        #expect(v.status == 0, "\(v.out)")
        #expect(v.out.contains("96 in 4 files"), "\(v.out)")
    }

    @Test("export of a folder that is not a finished conversion is a clear error")
    func notPack() throws {
        let r = try run(["export", TestPaths.fixture("k25-tiny"), TemporaryDirectory().path + "/x"])
        #expect(r.status != 0)
        #expect(r.err.contains("no k2pack.json: not a k2pack folder, or its conversion did not finish"), "\(r.err)")
    }
}

@Suite("crash safety of every writer")
struct ConvertCrashTests {
    /// Runs the binary with an environment addition; returns the exit status and whether a signal ended it.
    func runKilled(_ arguments: [String], killAfter: Int) throws -> (status: Int32, signalled: Bool) {
        let executable = try #require(TestPaths.executable, "k2pack is not built (swift build)")
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        process.environment = launcherFree(["K2PACK_TEST_KILL_AFTER_BYTES": String(killAfter)])
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        return (process.terminationStatus, process.terminationReason == .uncaughtSignal)
    }

    @Test("kill -9 at several byte counts: no partial file under a final name, input untouched, --resume gives identical output",
          arguments: [1, 60_000, 200_000, 330_000])
    func killAndResume(_ killAfter: Int) throws {
        let dir = TemporaryDirectory()
        let input = TestPaths.fixture("k25-tiny")
        let reference = dir.path + "/reference"
        let target = dir.path + "/target"
        #expect(try run(["convert", "--quiet", input, reference]).status == 0)
        let inputBefore = try folderContents(input)

        let killed = try runKilled(["convert", "--quiet", input, target], killAfter: killAfter)
        #expect(killed.signalled && killed.status == SIGKILL, "status \(killed.status)")
        let fm = FileManager.default
        #expect(!fm.fileExists(atPath: target + "/k2pack.json"), "the manifest is written last")
        // Whatever carries a final name is complete: identical to the finished file.
        for name in try fm.contentsOfDirectory(atPath: target) where name.hasSuffix(".k2p") && !name.hasPrefix(".") {
            #expect(fm.contents(atPath: target + "/" + name) == fm.contents(atPath: reference + "/" + name), "\(name) under its final name is partial")
        }
        #expect(try folderContents(input) == inputBefore, "the input changed")

        let resumed = try run(["convert", "--quiet", "--resume", input, target])
        #expect(resumed.status == 0, "\(resumed.err)")
        let a = try folderContents(reference)
        let b = try folderContents(target)
        #expect(Set(a.keys) == Set(b.keys), "left over: \(Set(b.keys).symmetricDifference(a.keys))")
        for (name, data) in a { #expect(b[name] == data, "\(name)") }
    }

    /// `shard` and `shard --merge`, killed mid-way: no file under a final name anywhere in the output is partial,
    /// no rank looks finished, and a rerun gives the reference output.
    @Test("kill -9 of shard and shard --merge", arguments: [(false, 1), (false, 250_000), (true, 1), (true, 200_000)])
    func killShard(_ merging: Bool, _ killAfter: Int) throws {
        let dir = TemporaryDirectory()
        let fixture = TestPaths.fixture("k25-tiny")
        var input = fixture
        var command = ["shard", "--gpus", "4", "--tp", "2", "--quiet"]
        if merging {
            input = dir.path + "/set"
            #expect(try run(command + [fixture, input]).status == 0)
            command = ["shard", "--merge", "--quiet"]
        }
        let reference = dir.path + "/reference", target = dir.path + "/target", again = dir.path + "/again"
        #expect(try run(command + [input, reference]).status == 0)
        let inputBefore = try folderContents(input)
        let killed = try runKilled(command + [input, target], killAfter: killAfter)
        #expect(killed.signalled && killed.status == SIGKILL, "\(command): status \(killed.status)")
        let expected = try folderContents(reference)
        for (name, data) in try folderContents(target) where !(name as NSString).lastPathComponent.hasPrefix(".") {
            #expect(data == expected[name], "\(command): \(name) under its final name is partial")
            #expect(!name.hasSuffix("k2pack.json") && name != "shards.json", "\(command): \(name) marks a rank finished")
        }
        #expect(try folderContents(input) == inputBefore, "\(command): the input changed")
        #expect(try run(command + [input, again]).status == 0)
        #expect(try folderContents(again) == expected, "\(command): a rerun differs")
    }

    /// The other writers, killed mid-way: nothing partial under a final name, the input untouched, and a rerun
    /// gives the reference output byte for byte.
    @Test("kill -9 of export, convert --compress, quantize and dequantize", arguments: [
        (["convert", "--compress"], "k25-tiny", 150_000), (["quantize"], "quantize/k2-thinking-bf16", 120_000),
        (["dequantize"], "k2-thinking-tiny", 100_000), (["export"], "k25-tiny", 150_000),
    ])
    func killOthers(_ command: [String], _ fixture: String, _ killAfter: Int) throws {
        let dir = TemporaryDirectory()
        var input = TestPaths.fixture(fixture)
        if command == ["export"] {
            input = dir.path + "/packed"
            #expect(try run(["convert", "--quiet", TestPaths.fixture(fixture), input]).status == 0)
        }
        let reference = dir.path + "/reference", target = dir.path + "/target", again = dir.path + "/again"
        #expect(try run(command + ["--quiet", input, reference]).status == 0)
        let inputBefore = try folderContents(input)
        let killed = try runKilled(command + ["--quiet", input, target], killAfter: killAfter)
        #expect(killed.signalled && killed.status == SIGKILL, "\(command): status \(killed.status)")
        let fm = FileManager.default
        for name in (try? fm.contentsOfDirectory(atPath: target)) ?? [] where !name.hasPrefix(".") {
            var isDirectory: ObjCBool = false
            guard fm.fileExists(atPath: target + "/" + name, isDirectory: &isDirectory), !isDirectory.boolValue else { continue }
            #expect(fm.contents(atPath: target + "/" + name) == fm.contents(atPath: reference + "/" + name), "\(command): \(name) under its final name is partial")
        }
        #expect(try folderContents(input) == inputBefore, "\(command): the input changed")
        #expect(try run(command + ["--quiet", input, again]).status == 0)
        #expect(try folderContents(again) == folderContents(reference), "\(command): a rerun differs")
    }
}
