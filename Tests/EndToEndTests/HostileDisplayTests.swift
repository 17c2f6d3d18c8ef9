import Foundation
import TestSupport
import Testing

/// Untrusted names reach the terminal only through `displayed(_:)`: the real binary on hostile folders built
/// here prints no raw control, bidi or format character, and a name cannot forge a report line.
@Suite("hostile names on the terminal")
struct HostileDisplayTests {
    static let forged = "OK: no problems found"

    /// Both streams are inert, and no line of either begins with the forged verdict (a passing verify prints
    /// it once, as its last line).
    static func expectSafe(_ r: (status: Int32, out: String, err: String), _ context: String, sourceLocation: SourceLocation = #_sourceLocation) {
        for (stream, text) in [("stdout", r.out), ("stderr", r.err)] {
            let raw = rawTerminalControls(text)
            #expect(raw.isEmpty, "\(context): raw \(raw) on \(stream)", sourceLocation: sourceLocation)
            let verdicts = text.components(separatedBy: "\n").filter { $0.hasPrefix(forged) }.count
            let genuine = r.status == 0 && stream == "stdout" ? 1 : 0
            #expect(verdicts <= genuine, "\(context): forged line on \(stream)", sourceLocation: sourceLocation)
        }
    }

    /// A folder with the k25-tiny config and one shard holding tensors of these names (one float each).
    static func folder(tensorNames: [String]) -> TemporaryDirectory {
        let dir = TemporaryDirectory()
        try! FileManager.default.copyItem(atPath: TestPaths.fixture("k25-tiny/config.json"), toPath: dir.path + "/config.json")
        let builder = SafetensorsBuilder(tensorNames.map { .init(jsonString($0), "F32", [1], [0, 0, 0x80, 0x3F]) })
        dir.write("model.safetensors", builder.bytes())
        return dir
    }

    /// `text` as the inside of a JSON string (the builder pastes names into the header as they are).
    static func jsonString(_ text: String) -> String {
        let data = try! JSONSerialization.data(withJSONObject: [text], options: [.fragmentsAllowed])
        let array = String(decoding: data, as: UTF8.self)  // ["…"]
        return String(array.dropFirst(2).dropLast(2))
    }

    @Test("tensor names with escape sequences, newlines, bidi controls and 5,000 characters")
    func tensorNames() throws {
        let long = "model.layers.0." + String(repeating: "w", count: 5_000) + ".weight"
        let names = ["evil\u{1B}[2J", "x\n\(Self.forged)", "y\r\(Self.forged)", "z\u{202E}thgir", "zero\u{200B}width\u{FEFF}", "nel\u{85}\(Self.forged)", long]
        let dir = Self.folder(tensorNames: names)
        for command in [["verify"], ["verify", "--headers-only"], ["inspect"]] {
            let r = try run(command + [dir.path])
            #expect(r.status == 1, "\(command): \(r.out)\(r.err)")
            Self.expectSafe(r, "\(command)")
        }
        let r = try run(["verify", "--quiet", dir.path])
        #expect(r.out.contains("FAILED"))
        #expect(r.out.contains("'evil\\x1B[2J'"), "\(r.out)")
        #expect(r.out.contains("'x\\n\(Self.forged)'"), "\(r.out)")
        #expect(r.out.contains("'y\\r\(Self.forged)'"), "\(r.out)")
        #expect(r.out.contains("'z\\u{202E}thgir'"), "\(r.out)")
        #expect(r.out.contains("'zero\\u{200B}width\\u{FEFF}'"), "\(r.out)")
        #expect(r.out.contains("'nel\\u{0085}\(Self.forged)'"), "\(r.out)")
        #expect(r.out.contains("characters left out]…"), "the 5,000-character name is shortened")
        #expect(!r.out.contains(String(repeating: "w", count: 1_000)))

        // --json stays exact: the names come back byte for byte, unshortened.
        let j = try run(["verify", "--json", dir.path])
        #expect(j.status == 1)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(j.out.utf8)) as? [String: Any])
        let findings = try #require(object["findings"] as? [[String: Any]])
        let tensors = Set(findings.compactMap { $0["tensor"] as? String })
        for name in names { #expect(tensors.contains(name), "\(name.debugDescription) missing from --json") }
    }

    @Test("index shard names with a bidi override, an OSC title sequence and a newline")
    func indexShardNames() throws {
        let hostile = [
            "model-00006\u{202E}srotnesfas.safetensors", "model\u{1B}]0;pwned\u{7}.safetensors", "m\n\(Self.forged).safetensors",
            "m\u{2028}\u{2066}x.safetensors",
        ]
        for name in hostile {
            let dir = TemporaryDirectory()
            let folder = dir.copy(fixture: "k25-tiny")
            let indexPath = folder + "/model.safetensors.index.json"
            let index = try String(contentsOfFile: indexPath, encoding: .utf8)
            let edited = index.replacingOccurrences(of: "\"model-00006-of-000006.safetensors\"", with: "\"\(Self.jsonString(name))\"")
            #expect(edited != index)
            try edited.write(toFile: indexPath, atomically: true, encoding: .utf8)
            for command in ["verify", "inspect"] {
                let r = try run([command, folder])
                #expect(r.status == 1, "\(command) \(name.debugDescription): \(r.out)\(r.err)")
                Self.expectSafe(r, "\(command) \(name.debugDescription)")
            }
            let r = try run(["verify", "--quiet", folder])
            #expect(r.out.contains("missing: the index maps"), "\(r.out)")
        }
        let dir = TemporaryDirectory()
        let folder = dir.copy(fixture: "k25-tiny")
        let indexPath = folder + "/model.safetensors.index.json"
        let index = try String(contentsOfFile: indexPath, encoding: .utf8)
        try index.replacingOccurrences(of: "\"model-00006-of-000006.safetensors\"", with: "\"\(Self.jsonString(hostile[0]))\"")
            .write(toFile: indexPath, atomically: true, encoding: .utf8)
        let r = try run(["verify", "--quiet", folder])
        #expect(r.out.contains("model-00006\\u{202E}srotnesfas.safetensors: missing"), "\(r.out)")
    }

    @Test("config.json string values with control characters")
    func configValues() throws {
        let edits: [(String, String)] = [
            ("\"model_type\": \"kimi_k25\"", "\"model_type\": \"kimi\u{1B}[31m\r\n\(Self.forged)\""),
            ("\"torch_dtype\": \"bfloat16\"", "\"torch_dtype\": \"bf16\u{85}\(Self.forged)\u{2029}\u{202E}\""),
            ("\"torch_dtype\": \"bfloat16\"", "\"torch_dtype\": \"\u{1B}[2J\u{1B}[H\(Self.forged)\u{7}\""),
        ]
        for (old, new) in edits {
            let dir = TemporaryDirectory()
            let folder = dir.copy(fixture: "k25-tiny")
            let config = try String(contentsOfFile: folder + "/config.json", encoding: .utf8)
            // JSON text: the control characters go in as \u escapes.
            let escapedNew = new.unicodeScalars.map { $0.value < 0x20 || (0x7F...0x9F).contains($0.value) || $0.value >= 0x2000 ? String(format: "\\u%04x", $0.value) : String($0) }.joined()
            let edited = config.replacingOccurrences(of: old, with: escapedNew)
            #expect(edited != config)
            try edited.write(toFile: folder + "/config.json", atomically: true, encoding: .utf8)
            let commands = [
                ["verify", folder], ["inspect", folder], ["convert", "--quiet", folder, dir.path + "/out"],
                ["parity", folder, "--reference", TestPaths.fixture("references/k25-tiny.h5") + ":/exact"],
            ]
            for args in commands {
                let r = try run(args)
                #expect(r.status != 0, "\(args): \(r.out)\(r.err)")
                Self.expectSafe(r, "\(args) \(new.debugDescription)")
            }
        }
    }

    @Test("SHA-256 lists naming hostile files, and a hostile digest")
    func checksumLists() throws {
        let dir = TemporaryDirectory()
        let digest = String(repeating: "0", count: 64)
        let list = dir.write(
            "SUMS",
            Array("\(digest)  \u{1B}[2Jevil.safetensors\n\(digest)  \u{202E}x.safetensors\n\(digest)  n\u{85}\(Self.forged)\n".utf8))
        let r = try run(["verify", "--quiet", "--sha256", list, TestPaths.fixture("deepseek-v3-tiny")])
        Self.expectSafe(r, "list of hostile names")
        #expect(r.out.contains("\\x1B[2Jevil.safetensors: listed in the SHA-256 list"), "\(r.out)")
        #expect(r.out.contains("\\u{202E}x.safetensors: listed in the SHA-256 list"), "\(r.out)")

        let bad = dir.write("BAD", Array("\u{1B}[2J\u{1B}]0;t\u{7}  model.safetensors\n".utf8))
        let b = try run(["verify", "--sha256", bad, TestPaths.fixture("deepseek-v3-tiny")])
        #expect(b.status != 0)
        Self.expectSafe(b, "hostile digest")
        #expect(b.err.contains("BAD:1: '\\x1B[2J\\x1B]0;t\\x07' is not a 64-digit SHA-256"), "\(b.err)")
    }

    @Test(".k2p file names with escapes and a newline, in inspect and a failing verify")
    func packFileNames() throws {
        let dir = TemporaryDirectory()
        let packed = dir.path + "/p"
        #expect(try run(["convert", "--quiet", TestPaths.fixture("k25-tiny"), packed]).status == 0)
        let name = "layer\u{1B}[2J\n\(Self.forged)\u{202E}.k2p"
        try FileManager.default.moveItem(atPath: packed + "/layer-0000.k2p", toPath: packed + "/" + name)
        let manifestPath = packed + "/k2pack.json"
        let manifest = try String(contentsOfFile: manifestPath, encoding: .utf8)
        try manifest.replacingOccurrences(of: "\"layer-0000.k2p\"", with: "\"\(Self.jsonString(name))\"")
            .write(toFile: manifestPath, atomically: true, encoding: .utf8)

        let i = try run(["inspect", packed])
        #expect(i.status == 0, "\(i.out)\(i.err)")
        Self.expectSafe(i, "inspect")
        #expect(i.out.contains("layer\\x1B[2J\\n\(Self.forged)\\u{202E}.k2p"), "\(i.out)")
        let j = try run(["inspect", "--json", packed])
        let object = try #require(try JSONSerialization.jsonObject(with: Data(j.out.utf8)) as? [String: Any])
        let files = (object["files"] as? [[String: Any]])?.compactMap { $0["name"] as? String } ?? []
        #expect(files.contains(name), "--json keeps the exact name: \(j.out)")

        // Truncated: verify fails naming the file, and the name cannot print the verdict for it.
        let handle = try #require(FileHandle(forUpdatingAtPath: packed + "/" + name))
        try handle.truncate(atOffset: 5000)
        try handle.close()
        for command in ["verify", "inspect", "export"] {
            let args = command == "export" ? [command, packed, dir.path + "/e"] : [command, packed]
            let r = try run(args)
            #expect(r.status != 0, "\(command): \(r.out)\(r.err)")
            Self.expectSafe(r, command)
        }
    }

    @Test("HDF5 group names and paths in parity and compare errors")
    func referenceNames() throws {
        let reference = TestPaths.fixture("references/k25-tiny.h5")
        for group in ["/x\u{1B}[2J\n\(Self.forged)", "/\u{202E}\u{200F}", "/a\u{9B}31m"] {
            let c = try run(["compare", reference + ":" + group, reference])
            #expect(c.status != 0)
            Self.expectSafe(c, "compare \(group.debugDescription)")
            let p = try run(["parity", TestPaths.fixture("k25-tiny"), "--reference", reference + ":" + group])
            #expect(p.status != 0)
            Self.expectSafe(p, "parity \(group.debugDescription)")
        }
        let missing = try run(["compare", "/tmp/none\u{1B}[2J\n\(Self.forged).h5", reference])
        #expect(missing.status != 0)
        Self.expectSafe(missing, "missing dump")
    }

    @Test("paths and option values echoed in errors, ours and the argument parser's")
    func arguments() throws {
        let cases: [[String]] = [
            ["verify", "/nonexistent/a\u{1B}[2J\n\(Self.forged)"],
            ["inspect", "--gpus", "\u{1B}[2J", TestPaths.fixture("k25-tiny")],
            ["inspect", "--no-such-option\u{1B}[31m", TestPaths.fixture("k25-tiny")],
            ["parity", TestPaths.fixture("k25-tiny"), "--reference", TestPaths.fixture("references/k25-tiny.h5") + ":/exact", "--layers", "\u{1B}[2J\n\(Self.forged)"],
            ["export", "/nonexistent/\u{202E}p", "/tmp/k2pack-never-written"],
        ]
        for args in cases {
            let r = try run(args)
            #expect(r.status != 0, "\(args)")
            Self.expectSafe(r, "\(args)")
            #expect(r.err.contains("\\x1B") || r.err.contains("\\u{202E}"), "\(args): the escape is shown: \(r.err)")
        }
    }
}
