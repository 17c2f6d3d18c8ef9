import Checkpoint
import FileIO
import Foundation
import Inspection
import PackFormat
import Repack
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The files k25-tiny holds besides its tensors, config.json and index (stand-ins for a real K2.5 repository's, but for
/// the tokenizer's two files, which are a real small Kimi tokenizer).
let k25Carried = [
    ".gitattributes", "LICENSE", "README.md", "chat_template.jinja", "configuration_deepseek.py", "configuration_kimi_k25.py",
    "docs/deploy_guidance.md", "figures/kimi-logo.png", "generation_config.json", "kimi_k25_processor.py", "kimi_k25_vision_processing.py",
    "media_utils.py", "modeling_deepseek.py", "modeling_kimi_k25.py", "preprocessor_config.json", "tiktoken.model", "tokenization_kimi.py",
    "tokenizer_config.json",
]

/// Flips one byte of a file in place.
func flipByte(_ path: String, at offset: Int = 0) throws {
    var data = try Data(contentsOf: URL(fileURLWithPath: path))
    data[offset] ^= 0x01
    try data.write(to: URL(fileURLWithPath: path))
}

@Suite("carried files: everything a checkpoint folder holds besides tensors survives every writer")
struct CarriedFilesTests {
    @Test("convert and convert --compress carry every file and sub-folder; export gives the identical tree", arguments: [false, true])
    func roundTrip(_ compress: Bool) throws {
        let dir = TemporaryDirectory()
        let packed = dir.path + "/packed", exported = dir.path + "/exported"
        _ = try Converter.convert(input: TestPaths.fixture("k25-tiny"), output: packed, options: .init(compressionLevel: compress ? 3 : nil))
        let manifest = try PackManifest.read(folder: packed)
        #expect(manifest.version == 2)
        #expect(manifest.carried.map(\.path) == k25Carried)
        for file in manifest.carried {
            let bytes = try #require(FileManager.default.contents(atPath: TestPaths.fixture("k25-tiny") + "/" + file.path))
            #expect(file.size == bytes.count)
            #expect(file.sha256 == bytes.withUnsafeBytes { SHA256Digest.hex(of: $0) })
            // The k2pack folder holds them at the same paths, so it can be tokenized and served as it is.
            #expect(FileManager.default.contents(atPath: packed + "/" + file.path) == bytes)
        }
        #expect(try PackVerifier.verify(folder: packed).passed)
        _ = try Exporter.export(input: packed, output: exported)
        try expectIdenticalFolders(TestPaths.fixture("k25-tiny"), exported)
    }

    @Test("a folder with nothing to carry keeps a version-1 record without a carried list")
    func nothingCarried() throws {
        let dir = TemporaryDirectory()
        // deepseek-v3-tiny holds only config.json and its weights (the Kimi fixtures carry their tokenizer).
        _ = try Converter.convert(input: TestPaths.fixture("deepseek-v3-tiny"), output: dir.path + "/p")
        let text = try String(contentsOfFile: dir.path + "/p/k2pack.json", encoding: .utf8)
        #expect(text.contains("\"version\" : 1") && !text.contains("carried"), "\(text)")
    }

    @Test("verify names every carried file that changed, shrank, vanished or became unreadable")
    func verifyNamesChanges() throws {
        let dir = TemporaryDirectory()
        let packed = dir.path + "/packed"
        _ = try Converter.convert(input: TestPaths.fixture("k25-tiny"), output: packed)
        let manifest = try PackManifest.read(folder: packed)
        func record(_ path: String) throws -> CarriedFile { try #require(manifest.carried.first { $0.path == path }) }
        try flipByte(packed + "/tokenizer_config.json", at: 3)
        try flipByte(packed + "/docs/deploy_guidance.md")
        try Data("IQ== 0\n".utf8).write(to: URL(fileURLWithPath: packed + "/tiktoken.model"))
        try FileManager.default.removeItem(atPath: packed + "/LICENSE")
        try FileManager.default.removeItem(atPath: packed + "/media_utils.py")
        #expect(mkfifo(packed + "/media_utils.py", 0o644) == 0)
        let report = try PackVerifier.verify(folder: packed)
        #expect(!report.passed)
        let carried = report.findings.filter { $0.code == "carried_file" }
        #expect(carried.map { $0.file ?? "" }.sorted() == ["LICENSE", "docs/deploy_guidance.md", "media_utils.py", "tiktoken.model", "tokenizer_config.json"])
        let tokenizer = try #require(carried.first { $0.file == "tokenizer_config.json" })
        let changed = FileManager.default.contents(atPath: packed + "/tokenizer_config.json").map { d in d.withUnsafeBytes { SHA256Digest.hex(of: $0) } }
        #expect(
            tokenizer.message
                == "tokenizer_config.json: carried file changed: SHA-256 \(changed ?? ""), the folder record says \(try record("tokenizer_config.json").sha256)")
        #expect(carried.first { $0.file == "tiktoken.model" }?.message == "tiktoken.model: carried file changed: 7 bytes, the folder record says \(try record("tiktoken.model").size)")
        #expect(carried.first { $0.file == "LICENSE" }?.message.hasPrefix("LICENSE: carried file cannot be read:") == true)
        #expect(carried.first { $0.file == "LICENSE" }?.message.contains("No such file") == true)
        #expect(carried.first { $0.file == "media_utils.py" }?.message.contains("not a regular file") == true)
        #expect(report.findings.count == carried.count, "\(report.findings)")
    }

    @Test("export refuses a changed carried file by name and leaves nothing behind")
    func exportRefusesChangedFile() throws {
        let dir = TemporaryDirectory()
        let packed = dir.path + "/packed"
        _ = try Converter.convert(input: TestPaths.fixture("k25-tiny"), output: packed)
        let record = try #require(try PackManifest.read(folder: packed).carried.first { $0.path == "figures/kimi-logo.png" })
        for (variant, change) in [("flipped", { try flipByte(packed + "/figures/kimi-logo.png", at: 5) }), ("grown", {
            let h = try FileHandle(forWritingTo: URL(fileURLWithPath: packed + "/figures/kimi-logo.png"))
            try h.seekToEnd()
            try h.write(contentsOf: Data("x".utf8))
            try h.close()
        })] {
            try Data(try #require(FileManager.default.contents(atPath: TestPaths.fixture("k25-tiny/figures/kimi-logo.png"))))
                .write(to: URL(fileURLWithPath: packed + "/figures/kimi-logo.png"))
            try change()
            let out = dir.path + "/out-" + variant
            do {
                _ = try Exporter.export(input: packed, output: out)
                Issue.record("\(variant): exported a changed carried file")
            } catch let error as PackError {
                let reason = variant == "grown"
                    ? "carried file changed: \(record.size + 1) bytes, the folder record says \(record.size)"
                    : "carried file changed: SHA-256 \(try ReadOnlyFile(path: packed + "/figures/kimi-logo.png").sha256Hex()), the folder record says \(record.sha256)"
                #expect(error == .io(path: packed + "/figures/kimi-logo.png", operation: "carry", reason: reason), "\(error)")
            }
            let left = try folderContents(out).keys.sorted()
            #expect(left.isEmpty, "\(variant): \(left)")
            #expect(try FileManager.default.contentsOfDirectory(atPath: out).isEmpty, "\(variant): sub-folders left behind")
        }
    }

    @Test("a carried file of a k2pack folder replaced by a symlink out of the folder is refused by export and named by verify")
    func plantedLinkInPackFolder() throws {
        let dir = TemporaryDirectory()
        let outside = TemporaryDirectory()
        let packed = dir.path + "/packed"
        _ = try Converter.convert(input: TestPaths.fixture("k25-tiny"), output: packed)
        // The outside file has the very bytes the record names: only the link rule stops it.
        let target = outside.write("LICENSE", Array(try Data(contentsOf: URL(fileURLWithPath: packed + "/LICENSE"))))
        try FileManager.default.removeItem(atPath: packed + "/LICENSE")
        try FileManager.default.createSymbolicLink(atPath: packed + "/LICENSE", withDestinationPath: target)
        let message = "LICENSE is a symlink to \(FolderLinksPath.resolved(target)), outside the checkpoint folder (links are followed only into a Hugging Face cache snapshot's own blobs/; pass --allow-outside-symlinks to accept it)"
        do {
            _ = try Exporter.export(input: packed, output: dir.path + "/out")
            Issue.record("exported a file from outside the folder")
        } catch {
            #expect("\(error)" == message)
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path + "/out").isEmpty)
        let report = try PackVerifier.verify(folder: packed)
        #expect(report.findings.map(\.message) == ["LICENSE: carried file cannot be read: " + message])
    }

    /// A copy of k25-tiny with `change` applied, then convert into `out`.
    func convertChanged(_ change: (String) throws -> Void, dir: TemporaryDirectory) throws -> (input: String, output: String) {
        let input = dir.copy(fixture: "k25-tiny")
        try change(input)
        return (input, dir.path + "/out-\(UUID().uuidString)")
    }

    @Test("special files, symlinks out of the folder and symlinks to folders are refused by name; nothing is written")
    func refusals() throws {
        let outside = TemporaryDirectory()
        let secret = outside.write("secret.txt", Array("secret\n".utf8))
        let cases: [(String, (String) throws -> Void, (String) -> String)] = [
            ("fifo", { #expect(mkfifo($0 + "/docs/pipe", 0o644) == 0) }, { "\($0)/docs/pipe: cannot carry: a FIFO, not a regular file" }),
            ("fifo at the top", { #expect(mkfifo($0 + "/notes.fifo", 0o644) == 0) }, { "\($0)/notes.fifo: cannot carry: a FIFO, not a regular file" }),
            ("link out", { try FileManager.default.createSymbolicLink(atPath: $0 + "/secret.txt", withDestinationPath: secret) },
             { _ in "secret.txt is a symlink to \(FolderLinksPath.resolved(secret)), outside the checkpoint folder (links are followed only into a Hugging Face cache snapshot's own blobs/; pass --allow-outside-symlinks to accept it)" }),
            ("nested link out", { try FileManager.default.createSymbolicLink(atPath: $0 + "/figures/up.png", withDestinationPath: secret) },
             { _ in "figures/up.png is a symlink to \(FolderLinksPath.resolved(secret)), outside the checkpoint folder (links are followed only into a Hugging Face cache snapshot's own blobs/; pass --allow-outside-symlinks to accept it)" }),
            ("relative link climbing out", { try FileManager.default.createSymbolicLink(atPath: $0 + "/docs/x.md", withDestinationPath: "../../../../../../../../../../../../etc/hostname") },
             { _ in "docs/x.md is a symlink to /etc/hostname, outside the checkpoint folder (links are followed only into a Hugging Face cache snapshot's own blobs/; pass --allow-outside-symlinks to accept it)" }),
            ("link to folder", { try FileManager.default.createSymbolicLink(atPath: $0 + "/more-docs", withDestinationPath: "docs") },
             { "\($0)/more-docs: cannot carry: a symlink to a folder; replace it with the folder itself" }),
        ]
        for (name, change, message) in cases {
            let dir = TemporaryDirectory()
            let (input, output) = try convertChanged(change, dir: dir)
            do {
                _ = try Converter.convert(input: input, output: output)
                Issue.record("\(name): converted")
            } catch {
                #expect("\(error)" == message(input), "\(name): \(error)")
            }
            #expect(!FileManager.default.fileExists(atPath: output), "\(name): wrote something")
        }
    }

    @Test("a symlink to a file inside the folder is carried as that file's bytes")
    func linkInside() throws {
        let dir = TemporaryDirectory()
        let input = dir.copy(fixture: "k25-tiny")
        try FileManager.default.createSymbolicLink(atPath: input + "/docs/LICENSE", withDestinationPath: "../LICENSE")
        _ = try Converter.convert(input: input, output: dir.path + "/p")
        _ = try Exporter.export(input: dir.path + "/p", output: dir.path + "/x")
        #expect(try folderContents(dir.path + "/x") == folderContents(input))
    }

    @Test("tool state (.git, .cache) and writers' temporary files are not carried")
    func toolState() throws {
        let dir = TemporaryDirectory()
        let input = dir.copy(fixture: "k25-tiny")
        for path in [".git/HEAD", ".cache/huggingface/download/x.metadata", ".tokenizer_config.json.partial", "docs/.guide.md.partial"] {
            try FileManager.default.createDirectory(atPath: input + "/" + (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try Data("state".utf8).write(to: URL(fileURLWithPath: input + "/" + path))
        }
        _ = try Converter.convert(input: input, output: dir.path + "/p")
        #expect(try PackManifest.read(folder: dir.path + "/p").carried.map(\.path) == k25Carried)
    }

    @Test("a carried file may not take a name the k2pack folder uses for its own records or data files")
    func reservedInputNames() throws {
        for (path, top) in [("k2pack.json", "k2pack.json"), ("source/notes.txt", "source"), ("shards.json", "shards.json"),
                            ("globals.k2p", "globals.k2p"), ("layer-0001.k2p", "layer-0001.k2p")] {
            let dir = TemporaryDirectory()
            let (input, output) = try convertChanged({ input in
                try FileManager.default.createDirectory(atPath: input + "/" + (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
                try Data("x".utf8).write(to: URL(fileURLWithPath: input + "/" + path))
            }, dir: dir)
            #expect(throws: PackError.sourceInvalid(reason: "\(input): carried file \"\(path)\" takes the name \"\(top)\", which the folder uses for its own records")) {
                _ = try Converter.convert(input: input, output: output)
            }
            #expect(!FileManager.default.fileExists(atPath: output), "\(path): wrote something")
        }
    }

    @Test("--resume rewrites carried files that are missing, changed or left as temporaries, and gives identical output")
    func resume() throws {
        let dir = TemporaryDirectory()
        let reference = dir.path + "/reference", interrupted = dir.path + "/interrupted"
        _ = try Converter.convert(input: TestPaths.fixture("k25-tiny"), output: reference)
        _ = try Converter.convert(input: TestPaths.fixture("k25-tiny"), output: interrupted)
        let fm = FileManager.default
        try fm.removeItem(atPath: interrupted + "/k2pack.json")
        try fm.removeItem(atPath: interrupted + "/docs")
        try flipByte(interrupted + "/chat_template.jinja")
        try fm.moveItem(atPath: interrupted + "/LICENSE", toPath: interrupted + "/.LICENSE.partial")
        _ = try Converter.convert(input: TestPaths.fixture("k25-tiny"), output: interrupted, options: .init(resume: true))
        let a = try folderContents(reference), b = try folderContents(interrupted).filter { !$0.key.hasSuffix(".partial") }
        #expect(Set(a.keys) == Set(b.keys), "\(Set(b.keys).symmetricDifference(a.keys))")
        for (name, data) in a { #expect(b[name] == data, "\(name)") }
        #expect(try PackVerifier.verify(folder: interrupted).passed)
    }

    @Test("the list of a folder's carried files: every file but the checkpoint's own, sorted as bytes")
    func list() throws {
        let list = try CarriedFiles.list(checkpoint: CheckpointDirectory(path: TestPaths.fixture("k25-tiny")))
        #expect(list == k25Carried)
        #expect(try CarriedFiles.list(checkpoint: CheckpointDirectory(path: TestPaths.fixture("deepseek-v3-tiny"))).isEmpty)
    }
}

/// Where a path really is (temporary folders may sit behind a symlink).
enum FolderLinksPath {
    static func resolved(_ path: String) -> String {
        guard let p = realpath(path, nil) else { return path }
        defer { free(p) }
        return String(cString: p)
    }
}
