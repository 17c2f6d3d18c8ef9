import Foundation
import FuzzSupport
import Inspection
import PackFormat
import Repack

/// The first byte of the input picks what the rest is.
/// - 0: a k2pack file (.k2p) or zstd archive (.k2z) alone: header, table, frames; then every tensor's checksum,
///   which reads (or decompresses) all of its bytes.
/// - otherwise: one file of a k2pack folder converted from k25-tiny (version-2 folder record with carried files),
///   plain or compressed (`folderFiles`): its folder record, a carried file, a kept source header or index, a
///   data file. Then `verify` of the folder (checksums, coverage, every carried file's SHA-256) and `export`
///   (xxHash64 checked while copying, carried files checked against the record).
/// The two folders are converted once per process, from `$K2PACK_FIXTURES/k25-tiny`.
let base: String = {
    let dir = ScratchFile.folder("pack")
    let fixture = (ProcessInfo.processInfo.environment["K2PACK_FIXTURES"] ?? "../../Fixtures") + "/k25-tiny"
    do {
        _ = try Converter.convert(input: fixture, output: dir + "/plain")
        _ = try Converter.convert(input: fixture, output: dir + "/zstd", options: Converter.Options(compressionLevel: 3))
    } catch {
        fatalError("cannot convert \(fixture) into the base folders: \(error)")
    }
    return dir
}()
let exported = ScratchFile.folder("pack-exported")

let folderFiles = [
    "plain/k2pack.json", "plain/tokenizer_config.json", "plain/docs/deploy_guidance.md",
    "plain/source/model-00001-of-000006.safetensors.header", "plain/source/model.safetensors.index.json", "plain/layer-0000.k2p",
    "zstd/k2pack.json", "zstd/layer-0000.k2z",
]

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ input: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data = input, size > 1 else { return 0 }
    let pick = Int(data[0]) % (folderFiles.count + 1)
    guard pick > 0 else {
        let path = ScratchFile.write(data + 1, size - 1)
        guard let pack = try? PackFile(path: path, name: "fuzz.k2p") else { return 0 }
        _ = pack.verifyChecksums()
        return 0
    }
    let file = folderFiles[pick - 1]
    let target = base + "/" + file
    guard let original = FileManager.default.contents(atPath: target) else { return 0 }
    defer { try? original.write(to: URL(fileURLWithPath: target)) }
    guard (try? Data(bytes: data + 1, count: size - 1).write(to: URL(fileURLWithPath: target))) != nil else { return 0 }
    let folder = base + "/" + file.prefix { $0 != "/" }
    _ = try? PackVerifier.verify(folder: folder, threads: 1)
    _ = try? Exporter.export(input: folder, output: exported)
    try? FileManager.default.removeItem(atPath: exported)
    return 0
}

runFuzzer(fuzz)
