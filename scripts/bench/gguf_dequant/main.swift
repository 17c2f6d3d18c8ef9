// Throughput driver for scripts/bench/gguf_dequant.py: compiled with `swiftc -O` together with the GGUF
// library's dequantizer sources (GGMLType.swift, GGUFDequantizer.swift, IQTableStore.swift, IQTables.swift), so
// it times exactly the code `GGUFDequantizer.dequantize` runs, without building the whole package in release.
//
//   gguf-dequant-bench TYPE FILE REPEATS THREADS
//
// FILE holds whole blocks of TYPE. Prints one JSON line: the best wall time of REPEATS runs and a 64-bit hash of
// the output's bits (sum of bits[i] · (2i + 1) mod 2^64, which the script compares with gguf-py's output).
import Foundation

let args = CommandLine.arguments
guard args.count == 5, let type = GGMLType.allCases.first(where: { $0.name == args[1] }), let repeats = Int(args[3]),
    let threads = Int(args[4])
else {
    FileHandle.standardError.write(Data("usage: gguf-dequant-bench TYPE FILE REPEATS THREADS\n".utf8))
    exit(64)
}
let data = try Data(contentsOf: URL(fileURLWithPath: args[2]))
let count = data.count / type.typeSize * type.blockSize
var output = [Float](repeating: 0, count: count)
var best = Double.infinity
data.withUnsafeBytes { raw in
    output.withUnsafeMutableBufferPointer { out in
        for _ in 0..<repeats {
            let start = DispatchTime.now().uptimeNanoseconds
            GGUFDequantizer.dequantize(type, blocks: raw, into: out, threads: threads)
            best = min(best, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        }
    }
}
var hash: UInt64 = 0
for (i, v) in output.enumerated() { hash &+= UInt64(v.bitPattern) &* UInt64(2 * i + 1) }
print("{\"type\": \"\(type.name)\", \"elements\": \(count), \"seconds\": \(best), \"threads\": \(threads), \"hash\": \(hash)}")
