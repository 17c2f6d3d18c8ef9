import CZstd

/// zstd frames: the only importer of libzstd. Each frame records its content size, so one frame can be
/// decoded alone.
public enum Zstd {
    public struct Failure: Error, Equatable, Sendable, CustomStringConvertible {
        public var operation: String
        public var reason: String
        public init(operation: String, reason: String) {
            self.operation = operation
            self.reason = reason
        }
        public var description: String { "zstd \(operation) failed: \(reason)" }
    }

    public static var versionString: String { String(cString: ZSTD_versionString()) }

    /// Compresses `input` into one frame.
    public static func compress(_ input: UnsafeRawBufferPointer, level: Int32 = 3) throws(Failure) -> [UInt8] {
        let bound = ZSTD_compressBound(input.count)
        var output = [UInt8](repeating: 0, count: bound)
        let written = output.withUnsafeMutableBytes { out in
            ZSTD_compress(out.baseAddress, out.count, input.baseAddress, input.count, level)
        }
        if ZSTD_isError(written) != 0 { throw Failure(operation: "compress", reason: String(cString: ZSTD_getErrorName(written))) }
        output.removeSubrange(written...)
        return output
    }

    /// Decompresses one frame whose content size must be recorded and at most `maxSize` bytes.
    public static func decompress(_ frame: UnsafeRawBufferPointer, maxSize: Int) throws(Failure) -> [UInt8] {
        let size = ZSTD_getFrameContentSize(frame.baseAddress, frame.count)
        if size == ZSTD_CONTENTSIZE_ERROR { throw Failure(operation: "decompress", reason: "not a zstd frame") }
        if size == ZSTD_CONTENTSIZE_UNKNOWN { throw Failure(operation: "decompress", reason: "frame does not record its size") }
        guard size <= UInt64(maxSize) else {
            throw Failure(operation: "decompress", reason: "frame claims \(size) bytes, more than the \(maxSize) allowed")
        }
        var output = [UInt8](repeating: 0, count: Int(size))
        let written = output.withUnsafeMutableBytes { out in
            ZSTD_decompress(out.baseAddress, out.count, frame.baseAddress, frame.count)
        }
        if ZSTD_isError(written) != 0 { throw Failure(operation: "decompress", reason: String(cString: ZSTD_getErrorName(written))) }
        guard written == Int(size) else {
            throw Failure(operation: "decompress", reason: "frame decoded to \(written) bytes, header said \(size)")
        }
        return output
    }
}
