import ArgumentParser
import Checkpoint
import FileIO
import Foundation
import TensorCore

#if canImport(Glibc)
import Glibc
#endif

/// `--json` and `--quiet`: the one output option group, used by every command.
struct ReportOptions: ParsableArguments {
    @Flag(help: "Print the result as JSON.")
    var json = false

    @Flag(help: "No progress bar.")
    var quiet = false

    /// A progress bar labelled `label` (bytes, or a count of `unit`), unless quiet or printing JSON, and the
    /// callback that feeds it.
    func progress(_ label: String, unit: String? = nil) -> (bar: ProgressBar?, callback: ProgressCallback?) {
        guard !quiet, !json else { return (nil, nil) }
        let bar = ProgressBar(label: label, unit: unit)
        return (bar, { done, total in bar.update(done, of: total) })
    }
}

/// A command whose output options are the one `ReportOptions` group (every command).
protocol Reports {
    var reporting: ReportOptions { get }
}

/// How the checkpoint folder's symlinks are treated (shared by every command that reads one).
struct FolderOptions: ParsableArguments {
    @Flag(help: "Follow symlinks that lead outside the checkpoint folder (by default only a Hugging Face cache snapshot's links into its own blobs/ are followed).")
    var allowOutsideSymlinks = false
}

/// A command that reads input folders. Its `--allow-outside-symlinks` is applied once by `runCommand`, after
/// parsing and before `run()`; commands themselves set no process-wide state.
protocol ReadsFolders {
    var folders: FolderOptions { get }
}

/// Prints a value as pretty, key-sorted JSON on standard output.
func printJSON<T: Encodable>(_ value: T) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    encoder.keyEncodingStrategy = .convertToSnakeCase
    encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
    let data = try encoder.encode(value)
    FileHandle.standardOutput.write(data)
    FileHandle.standardOutput.write(Data("\n".utf8))
}

/// A text report or message made safe for the terminal line by line: every line goes through `displayed(_:)`
/// unshortened, so only the text's own line breaks remain. Names are displayed (and shortened) where they are
/// interpolated; this is the net for anything that was not.
func terminalText(_ text: String) -> String {
    var lines: [String] = []
    var line = String.UnicodeScalarView()
    for scalar in text.unicodeScalars {
        if scalar == "\n" {
            lines.append(displayed(String(line), limit: nil))
            line = String.UnicodeScalarView()
        } else {
            line.append(scalar)
        }
    }
    lines.append(displayed(String(line), limit: nil))
    return lines.joined(separator: "\n")
}

/// What `ParsableCommand.main()` does, with every message (ours, a library's, or the argument parser's, which
/// repeats the command line) passed through `terminalText` first: no error reaches the terminal raw.
func runCommand<Command: ParsableCommand>(_: Command.Type, arguments: [String]? = nil) -> Never {
    do {
        var command = try Command.parseAsRoot(arguments)
        if let reader = command as? any ReadsFolders { FolderLinks.allowOutside = reader.folders.allowOutsideSymlinks }
        try command.run()
        exit(0)
    } catch {
        let code = Command.exitCode(for: error)
        let message = terminalText(Command.fullMessage(for: error))
        if !message.isEmpty {
            if code == .success {
                print(message)
            } else {
                FileHandle.standardError.write(Data((message + "\n").utf8))
            }
        }
        exit(code.rawValue)
    }
}

/// A one-line progress bar on standard error, drawn only when standard error is a terminal.
final class ProgressBar: Sendable {
    private let label: String
    /// nil: bytes (GB, GB/s); else a count of these units.
    private let unit: String?
    private let enabled = isatty(STDERR_FILENO) != 0
    private let start = Date()
    /// When the bar was last drawn; held while drawing, so lines from several threads never interleave.
    private let lastDraw = Locked(Date.distantPast)

    init(label: String, unit: String? = nil) {
        self.label = label
        self.unit = unit
    }

    func update(_ done: Int, of total: Int) {
        guard enabled else { return }
        lastDraw.withLock { lastDraw in draw(done, of: total, lastDraw: &lastDraw) }
    }

    private func draw(_ done: Int, of total: Int, lastDraw: inout Date) {
        let now = Date()
        guard now.timeIntervalSince(lastDraw) > 0.1 || done == total else { return }
        lastDraw = now
        let fraction = total > 0 ? min(1, Double(done) / Double(total)) : 1
        let width = 30
        let filled = Int(fraction * Double(width))
        let elapsed = now.timeIntervalSince(start)
        let rate = elapsed > 0 ? Double(done) / elapsed : 0
        let eta = rate > 0 ? Double(total - done) / rate : 0
        let bar = String(repeating: "█", count: filled) + String(repeating: "░", count: width - filled)
        let line = unit.map { String(format: "\r%@ %@ %5.1f%%  %d/%d %@  ETA %.0fs ", label, bar, fraction * 100, done, total, $0, eta) }
            ?? String(
                format: "\r%@ %@ %5.1f%%  %.2f/%.2f GB  %.2f GB/s  ETA %.0fs ", label, bar, fraction * 100,
                Double(done) / 1e9, Double(total) / 1e9, rate / 1e9, eta)
        FileHandle.standardError.write(Data(line.utf8))
    }

    func finish() {
        guard enabled else { return }
        FileHandle.standardError.write(Data("\r\u{1B}[K".utf8))
    }
}

/// Keeps a large structure alive until the process exits: freeing a real checkpoint's 208,550 header entries
/// one by one costs a fifth of a second that the user would wait for after the report is printed.
func keepUntilExit<T>(_ value: T) {
    _ = Unmanaged.passRetained(KeptValue(value))
}

private final class KeptValue<V> {
    let value: V
    init(_ value: V) { self.value = value }
}
