import Checkpoint
import FuzzSupport

/// A whole safetensors file: header length, header JSON, byte ranges; then every tensor's bytes are mapped.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ input: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data = input, size > 0 else { return 0 }
    let path = ScratchFile.write(data, size)
    guard let file = try? SafetensorsFile(path: path, name: "fuzz.safetensors") else { return 0 }
    var sum = 0
    for entry in file.tensors {
        guard let bytes = try? file.bytes(of: entry) else { continue }
        if let first = bytes.first { sum &+= Int(first) }
        if let last = bytes.last { sum &+= Int(last) }
    }
    return CInt(truncatingIfNeeded: sum & 0)
}

runFuzzer(fuzz)
