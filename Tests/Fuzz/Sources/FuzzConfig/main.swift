import FuzzSupport
import ModelConfig
import Forward

/// config.json of every architecture: parse, expand into the expected tensor list, derive the forward config.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ input: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data = input, size > 0 else { return 0 }
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    guard let config = try? ModelConfig.parse(bytes) else { return 0 }
    _ = try? ExpectedTensorList(config: config)
    if let forward = try? ForwardConfig(config.text) {
        _ = forward.rope.inverseFrequencies
        _ = forward.softmaxScale
    }
    return 0
}

runFuzzer(fuzz)
