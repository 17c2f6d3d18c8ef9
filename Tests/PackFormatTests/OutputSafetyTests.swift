import Checkpoint
import FileIO
import Foundation
import PackFormat
import Repack
import TestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The reason text of a `PackError.io`, or the whole description.
func reason(_ error: PackError) -> String {
    if case let .io(_, _, reason) = error { return reason }
    return error.description
}

/// Runs `body`, which must throw a `PackError` or (AtomicFile, OutputPaths) the `FileIOError` one is made from;
/// returns it as a `PackError` (the same case and text).
func packError(_ body: () throws -> Void, sourceLocation: SourceLocation = #_sourceLocation) -> PackError? {
    do {
        try body()
        Issue.record("no error thrown", sourceLocation: sourceLocation)
        return nil
    } catch let error as PackError {
        return error
    } catch let error as FileIOError {
        return PackError(error)
    } catch {
        Issue.record("not a PackError: \(error)", sourceLocation: sourceLocation)
        return nil
    }
}

@Suite("atomic files never follow or replace links")
struct AtomicFileTests {
    /// What an attacker (or an accident) can leave at a writer's temporary name.
    enum Planted: String, CaseIterable {
        case linkToFile, danglingLink, linkToFolder, folder, fifo, otherUsersFile

        func plant(at path: String, victim: String, victimFolder: String) throws {
            let fm = FileManager.default
            switch self {
            case .linkToFile: try fm.createSymbolicLink(atPath: path, withDestinationPath: victim)
            case .danglingLink: try fm.createSymbolicLink(atPath: path, withDestinationPath: victimFolder + "/not-yet")
            case .linkToFolder: try fm.createSymbolicLink(atPath: path, withDestinationPath: victimFolder)
            case .folder: try fm.createDirectory(atPath: path, withIntermediateDirectories: false)
            case .fifo: #expect(mkfifo(path, 0o644) == 0)
            case .otherUsersFile:
                #expect(fm.createFile(atPath: path, contents: Data("someone else's".utf8)))
                #expect(chown(path, 4242, 4242) == 0)
            }
        }

        var expected: String {
            switch self {
            case .linkToFile, .danglingLink, .linkToFolder: "something is already at this name: it is a symbolic link (to "
            case .folder: "something is already at this name: it is a folder; remove it"
            case .fifo: "something is already at this name: it is a FIFO or socket, not a regular file; remove it"
            case .otherUsersFile: "a file of another user is already at this name; remove it"
            }
        }
    }

    @Test("whatever is planted at the temporary name is refused, never followed or written", arguments: Planted.allCases)
    func plantedTemporary(_ planted: Planted) throws {
        if planted == .otherUsersFile, geteuid() != 0 { return }  // only root can give a file to another user
        let dir = TemporaryDirectory()
        let victim = dir.write("victim", Array("precious".utf8))
        let victimFolder = dir.path + "/victims"
        try FileManager.default.createDirectory(atPath: victimFolder, withIntermediateDirectories: true)
        let out = dir.path + "/out"
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        try planted.plant(at: out + "/.layer-0000.k2p.partial", victim: victim, victimFolder: victimFolder)

        let error = packError { try AtomicFile.write(Array("payload".utf8), to: out + "/layer-0000.k2p") }
        #expect(error?.description.hasPrefix(out + "/.layer-0000.k2p.partial: cannot create the temporary file: ") == true, "\(String(describing: error))")
        #expect(error.map(reason)?.contains(planted.expected) == true, "\(String(describing: error))")
        #expect(fileText(victim) == "precious")
        #expect(try FileManager.default.contentsOfDirectory(atPath: victimFolder).isEmpty)
        #expect(!FileManager.default.fileExists(atPath: out + "/layer-0000.k2p"))
        // What was planted is left as it was (not followed, not removed).
        var st = stat()
        #expect(lstat(out + "/.layer-0000.k2p.partial", &st) == 0)
    }

    @Test("a stale temporary file of ours (an interrupted run) is replaced, not appended to or followed")
    func staleTemporary() throws {
        let dir = TemporaryDirectory()
        dir.write(".x.json.partial", Array(String(repeating: "stale ", count: 100).utf8))
        try AtomicFile.write(Array("fresh".utf8), to: dir.path + "/x.json")
        #expect(fileText(dir.path + "/x.json") == "fresh")
        #expect(!FileManager.default.fileExists(atPath: dir.path + "/.x.json.partial"))
        // A bare name in the current folder's terms and a path ending in a one-character name work too.
        try AtomicFile.write(Array("y".utf8), to: dir.path + "/y")
        #expect(fileText(dir.path + "/y") == "y")
    }

    @Test("a final name that is a link, folder, device or FIFO is refused, before writing and again before the rename")
    func finalName() throws {
        let dir = TemporaryDirectory()
        let fm = FileManager.default
        let victim = dir.write("victim", Array("precious".utf8))
        try fm.createSymbolicLink(atPath: dir.path + "/to-file", withDestinationPath: victim)
        try fm.createSymbolicLink(atPath: dir.path + "/dangling", withDestinationPath: dir.path + "/nowhere")
        try fm.createSymbolicLink(atPath: dir.path + "/to-folder", withDestinationPath: dir.path)
        try fm.createDirectory(atPath: dir.path + "/folder", withIntermediateDirectories: false)
        #expect(mkfifo(dir.path + "/fifo", 0o644) == 0)
        let cases: [(String, String)] = [
            (dir.path + "/to-file", "it is a symbolic link (to \(victim)); k2pack never writes through or over a link"),
            (dir.path + "/dangling", "it is a symbolic link (to \(dir.path)/nowhere); k2pack never writes through or over a link"),
            (dir.path + "/to-folder", "it is a symbolic link (to \(dir.path)); k2pack never writes through or over a link"),
            (dir.path + "/folder", "it is a folder"),
            (dir.path + "/fifo", "it is a FIFO or socket, not a regular file"),
            ("/dev/null", "it is a device, not a regular file"),
        ]
        for (path, expected) in cases {
            let error = packError { try AtomicFile.write(Array("payload".utf8), to: path) }
            #expect(error == .io(path: path, operation: "write it", reason: expected), "\(path): \(String(describing: error))")
        }
        #expect(fileText(victim) == "precious")
        #expect(try fm.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".partial") }.isEmpty)

        // Made a link while the file was being written: refused at the rename, the temporary removed.
        let file = try AtomicFile(path: dir.path + "/late")
        try file.write(Array("payload".utf8), at: 0)
        try fm.createSymbolicLink(atPath: dir.path + "/late", withDestinationPath: victim)
        let late = packError { try file.commit() }
        #expect(late == .io(path: dir.path + "/late", operation: "write it", reason: "it is a symbolic link (to \(victim)); k2pack never writes through or over a link"))
        withExtendedLifetime(file) {}
        #expect(fileText(victim) == "precious")
    }

    @Test("a regular file at the final name is replaced whole (its other hard links keep the old bytes)")
    func replacesRegular() throws {
        let dir = TemporaryDirectory()
        let path = dir.write("config.json", Array("old".utf8))
        #expect(link(path, dir.path + "/other-link") == 0)
        try AtomicFile.write(Array("new".utf8), to: path)
        #expect(fileText(path) == "new")
        #expect(fileText(dir.path + "/other-link") == "old")
    }
}

@Suite("outputs never overlap inputs and output folders are never links")
struct OutputPathsTests {
    @Test("an output that is an input, inside one, or holding one is refused, through aliases too")
    func overlap() throws {
        let dir = TemporaryDirectory()
        let fm = FileManager.default
        let input = dir.path + "/model"
        try fm.createDirectory(atPath: input + "/sub", withIntermediateDirectories: true)
        try fm.createSymbolicLink(atPath: dir.path + "/alias", withDestinationPath: input)
        let real = String(decoding: try #require(OutputPaths.resolved(input)), as: UTF8.self)
        let cases: [(output: String, reason: String)] = [
            (input, "it is the input \(input) itself; choose another path"),
            (input + "/", "it is the input \(input) itself; choose another path"),
            (dir.path + "/alias", "it is the input \(input) itself; choose another path"),
            (input + "/sub", "it lies inside the input \(input) (\(real)); choose a path outside it"),
            (input + "/new/deeper", "it lies inside the input \(input) (\(real)); choose a path outside it"),
            (dir.path + "/alias/out", "it lies inside the input \(input) (\(real)); choose a path outside it"),
            (dir.path + "/elsewhere/../model/out", "it lies inside the input \(input) (\(real)); choose a path outside it"),
            (dir.path, "it holds the input \(input) (\(real)); choose a path that does not contain it"),
            (dir.path + "/model/..", "it holds the input \(input) (\(real)); choose a path that does not contain it"),
        ]
        for (output, expected) in cases {
            let error = packError { try OutputPaths.refuseOverlap(output: output, inputs: [input]) }
            #expect(error == .io(path: output, operation: "write there", reason: expected), "\(output): \(String(describing: error))")
        }
        // Neighbours are not inside: a shared prefix, a sibling, and a name equal only under Unicode normalization.
        try OutputPaths.refuseOverlap(output: dir.path + "/model2", inputs: [input])
        try OutputPaths.refuseOverlap(output: dir.path + "/mod", inputs: [input])
        let nfc = dir.path + "/caf\u{E9}", nfd = dir.path + "/cafe\u{301}"
        try fm.createDirectory(atPath: nfc, withIntermediateDirectories: true)
        #expect(nfc == nfd, "Swift String equality equates them; paths must not")
        try OutputPaths.refuseOverlap(output: nfd + "/out", inputs: [nfc])
        #expect(packError { try OutputPaths.refuseOverlap(output: nfc + "/out", inputs: [nfc]) } != nil)
    }

    @Test("an output folder that is a link, a file or a non-empty folder is refused; a new one is made")
    func folders() throws {
        let dir = TemporaryDirectory()
        let fm = FileManager.default
        let input = dir.path + "/in"
        try fm.createDirectory(atPath: input, withIntermediateDirectories: true)
        let empty = dir.path + "/empty"
        try fm.createDirectory(atPath: empty, withIntermediateDirectories: true)
        try fm.createSymbolicLink(atPath: dir.path + "/link", withDestinationPath: empty)
        dir.write("file", [1])
        dir.write("full/x", [1])
        let cases: [(String, PackError)] = [
            (dir.path + "/link", .io(path: dir.path + "/link", operation: "write there", reason: "it is a symbolic link (to \(empty)); k2pack does not write through links: name the real folder")),
            (dir.path + "/link/", .io(path: dir.path + "/link", operation: "write there", reason: "it is a symbolic link (to \(empty)); k2pack does not write through links: name the real folder")),
            (dir.path + "/file", .io(path: dir.path + "/file", operation: "write there", reason: "it exists and is not a folder")),
            (dir.path + "/full", .outputExists(path: dir.path + "/full")),
        ]
        for (output, expected) in cases {
            let error = packError { try OutputPaths.prepareFolder(output, inputs: [input], existing: .empty) }
            #expect(error == expected, "\(output): \(String(describing: error))")
            #expect(error?.description.contains("--resume") == false, "only convert has --resume")
        }
        #expect(try fm.contentsOfDirectory(atPath: empty).isEmpty)
        try OutputPaths.prepareFolder(dir.path + "/full", inputs: [input], existing: .shared)
        try OutputPaths.prepareFolder(dir.path + "/a/b/c", inputs: [input], existing: .empty)
        var isDirectory: ObjCBool = false
        #expect(fm.fileExists(atPath: dir.path + "/a/b/c", isDirectory: &isDirectory) && isDirectory.boolValue)
        // convert alone mentions --resume.
        let convert = packError { try PackFolderWriter.prepare(output: dir.path + "/full", input: input, resume: false) }
        #expect(convert?.description == "\(dir.path)/full: already exists and is not empty; choose a new folder (or --resume an interrupted convert)")

        // Folders made inside an output (source/): a real folder is accepted, a link is refused.
        try OutputPaths.makeFolder(dir.path + "/a/source")
        try OutputPaths.makeFolder(dir.path + "/a/source")
        try fm.createSymbolicLink(atPath: dir.path + "/a/planted", withDestinationPath: empty)
        #expect(packError { try OutputPaths.makeFolder(dir.path + "/a/planted") }
            == .io(path: dir.path + "/a/planted", operation: "write there", reason: "it is a symbolic link (to \(empty)); k2pack does not write through links: name the real folder"))
        #expect(packError { try OutputPaths.makeFolder(dir.path + "/file") }
            == .io(path: dir.path + "/file", operation: "write there", reason: "it exists and is not a folder"))
    }

    @Test("a single output file (--plot) is never a device, folder, link or FIFO, nor inside an input")
    func singleFile() throws {
        let dir = TemporaryDirectory()
        let fm = FileManager.default
        let model = dir.path + "/model"
        try fm.createDirectory(atPath: model, withIntermediateDirectories: true)
        let config = dir.write("model/config.json", Array("{}".utf8))
        let reference = dir.write("ref.h5", [0])
        let victim = dir.write("victim", [1])
        try fm.createSymbolicLink(atPath: dir.path + "/link.svg", withDestinationPath: victim)
        #expect(mkfifo(dir.path + "/fifo.svg", 0o644) == 0)
        let inputs = [model, reference]
        let cases: [(String, String)] = [
            ("/dev/null", "it is a device, not a regular file"),
            (dir.path + "/link.svg", "it is a symbolic link (to \(victim)); k2pack never writes through or over a link"),
            (dir.path + "/fifo.svg", "it is a FIFO or socket, not a regular file"),
            (model, "it is the input \(model) itself; choose another path"),
            (config, "it lies inside the input \(model) (\(String(decoding: OutputPaths.resolved(model)!, as: UTF8.self))); choose a path outside it"),
            (model + "/plot.svg", "it lies inside the input \(model) (\(String(decoding: OutputPaths.resolved(model)!, as: UTF8.self))); choose a path outside it"),
            (reference, "it is the input \(reference) itself; choose another path"),
        ]
        for (path, expected) in cases {
            let error = packError { try OutputPaths.checkFile(path, inputs: inputs) }
            #expect(error == .io(path: path, operation: "write there", reason: expected), "\(path): \(String(describing: error))")
        }
        try OutputPaths.checkFile(dir.path + "/plot.svg", inputs: inputs)
        try OutputPaths.checkFile(victim, inputs: inputs)
    }
}
