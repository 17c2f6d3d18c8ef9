import ArgumentParser
import Checkpoint
import FileIO
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The `k2pack` command line. The executable (Sources/k2pack) only calls `K2Pack.main()`; tests parse
/// commands in-process with `K2Pack.parseAsRoot(_:)`.
public struct K2Pack: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "k2pack",
        abstract: "Inspect, verify, convert, shard and check Kimi K2.5-class MoE checkpoints.",
        version: "0.1.0",
        subcommands: [InspectCommand.self, VerifyCommand.self, ConvertCommand.self, ExportCommand.self, ParityCommand.self, CompareCommand.self, QuantizeCommand.self, DequantizeCommand.self, ShardCommand.self, TokenizeCommand.self, LogitsCommand.self]
    )

    /// Start-up (every message then goes through `terminalText`, Output.swift, on its way to the terminal): the SIGBUS handler (an input shrinking under its mapping is reported by name, unfinished
    /// output removed, exit 74) and the open-file limit raised to the hard limit (every shard is held open).
    public init() {}

    public static func main() {
        FatalSignals.install()
        OpenFileLimit.raiseToHardLimit()
        #if DEBUG
        installTestHooks()
        #endif
        runCommand(Self.self)
    }

    /// `K2PACK_TEST_WHEN_MAPPED=shrink:NAME` or `grow:NAME`: the moment a file whose name is NAME is mapped,
    /// truncate it to half its length (the next access past that raises SIGBUS) or append a byte to it (no
    /// fault; the change is seen when the file is checked), or `signal:NAME` sends the process a SIGBUS that no
    /// fault caused (as `kill -BUS` would). Tests use it to change an input at an exact point
    /// of a real run, with no timing. Unset, this changes nothing. Debug builds only (`swift test` builds debug):
    /// a release binary never truncates a file on an environment variable's say-so.
    #if DEBUG
    static func installTestHooks() {
        guard let spec = ProcessInfo.processInfo.environment["K2PACK_TEST_WHEN_MAPPED"] else { return }
        let parts = spec.split(separator: ":", maxSplits: 1).map(String.init)
        guard parts.count == 2 else { return }
        let (action, name) = (parts[0], parts[1])
        FatalSignals.afterMapping = { path in
            guard path.split(separator: "/").last.map(String.init) == name, let size = try? ReadOnlyFile(path: path).byteCount else { return }
            if action == "shrink" {
                _ = truncate(path, off_t(size / 2))
            } else if action == "grow" {
                _ = truncate(path, off_t(size + 1))
            } else if action == "signal" {
                _ = raise(SIGBUS)
            }
        }
    }
    #endif
}
