import FuzzSupport
import PackFormat

/// A k2pack file (.k2p) or zstd archive (.k2z): header, table, frames; then every tensor's checksum, which
/// reads (or decompresses) all of its bytes.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ input: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data = input, size > 0 else { return 0 }
    let path = ScratchFile.write(data, size)
    guard let pack = try? PackFile(path: path, name: "fuzz.k2p") else { return 0 }
    _ = pack.verifyChecksums()
    return 0
}

runFuzzer(fuzz)
