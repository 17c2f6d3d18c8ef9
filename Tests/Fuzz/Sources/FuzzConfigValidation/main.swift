import Forward
import FuzzSupport
import ModelConfig
import PackFormat
import Shard

/// config.json through every consumer of a config: the validator (`ModelConfig.parse`), the expected tensor list,
/// the forward config (YaRN frequencies, softmax scale) and the shard plan's split of every expected tensor under
/// several layouts. A config the validator accepts must be accepted by the forward config, with finite rope
/// frequencies, amplitude and scales: otherwise `verify` would pass a config that `parity` refuses or computes NaN
/// from, and that is reported as a crash.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ input: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data = input, size > 0 else { return 0 }
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let config: ModelConfig
    do throws(ConfigError) {
        config = try ModelConfig.parse(bytes)
    } catch {
        _ = error.description
        return 0
    }
    let forward: ForwardConfig
    do throws(ForwardError) {
        forward = try ForwardConfig(config.text, section: config.architecture.textConfigKey ?? "config")
    } catch {
        fatalError("the validator accepted a config the forward pass refuses: \(error)")
    }
    // What the validator accepts must compute: every frequency, the amplitude and the softmax scale finite.
    let frequencies = forward.rope.inverseFrequencies
    guard frequencies.allSatisfy(\.isFinite), forward.softmaxScale.isFinite, forward.softmaxScale > 0,
        forward.rope.amplitude.isFinite, forward.rmsNormEps > 0, forward.routing.scalingFactor.isFinite
    else {
        fatalError("the validator accepted a config whose rope or scales are not finite: \(forward.rope), \(forward.softmaxScale)")
    }
    guard let list = try? ExpectedTensorList(config: config) else { return 0 }
    let layouts = [ShardLayout(tp: 2, ep: 1), ShardLayout(tp: 2, ep: 2), ShardLayout(tp: 8, ep: 1), ShardLayout(tp: 1, ep: 8)]
    // Bounded work per input: the first tensors of every role are enough to reach every rule.
    for tensor in list.tensors.prefix(4096) {
        for layout in layouts {
            _ = try? ShardPlan.blocks(name: tensor.name, shape: tensor.shape, dtype: tensor.dtypes[0], expected: tensor, layout: layout)
        }
    }
    return 0
}

runFuzzer(fuzz)
