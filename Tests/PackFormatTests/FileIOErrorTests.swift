import Checkpoint
import FileIO
import PackFormat
import Testing

/// File-level failures come from FileIO; readers and writers turn them into their own errors with the same text.
@Suite("file errors as checkpoint and k2pack errors")
struct FileIOErrorTests {
    @Test("an I/O failure or a link out of the folder keeps its case and text as a CheckpointError")
    func checkpointError() {
        let io = FileIOError.io(path: "dir/a.safetensors", operation: "read", reason: "unexpected end of file at byte 8")
        #expect(CheckpointError(io) == .io(path: "dir/a.safetensors", operation: "read", reason: "unexpected end of file at byte 8"))
        #expect(CheckpointError(io).description == io.description)
        #expect(io.description == "dir/a.safetensors: cannot read: unexpected end of file at byte 8")
        let outside = FileIOError.outsideFolder(file: "config.json", target: "/etc/passwd")
        #expect(CheckpointError(outside) == .outsideFolder(file: "config.json", target: "/etc/passwd"))
        #expect(CheckpointError(outside).description == outside.description)
        #expect(outside.description.hasPrefix("config.json is a symlink to /etc/passwd, outside the checkpoint folder"))
    }

    @Test("an I/O failure or an existing output folder keeps its case and text as a PackError")
    func packError() {
        let io = FileIOError.io(path: "out/x.k2p", operation: "write it", reason: "No space left on device")
        #expect(PackError(io) == .io(path: "out/x.k2p", operation: "write it", reason: "No space left on device"))
        #expect(PackError(io).description == io.description)
        for resumable in [false, true] {
            let exists = FileIOError.outputExists(path: "out", resumable: resumable)
            #expect(PackError(exists) == .outputExists(path: "out", resumable: resumable))
            #expect(PackError(exists).description == exists.description)
        }
        #expect(FileIOError.outputExists(path: "out", resumable: true).description
            == "out: already exists and is not empty; choose a new folder (or --resume an interrupted convert)")
    }
}
