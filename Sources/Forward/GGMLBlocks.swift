import CKernels

/// A matrix stored as ggml quantization blocks (a GGUF tensor) in a form the forward pass multiplies directly:
/// few-token products run the fused kernels of `Sources/CKernels/ggml_kernels.c` over the stored bytes, without
/// writing dequantized weights (`FusedKernels`). A weight source offers it through `MatrixRows.ggmlBlocks`; the
/// matrix's `decodeRows` (ggml's bit-exact dequantizer) still serves prefill and every other path.
public struct GGMLBlocks: @unchecked Sendable {
    /// The ggml block types with a fused kernel (raw values: ggml's type ids).
    public enum Format: Int32, Sendable, CaseIterable, CustomStringConvertible {
        case q4_0 = 2
        case q8_0 = 8
        case q2K = 10

        /// Weights per block.
        public var blockSize: Int { self == .q2K ? 256 : 32 }
        /// Bytes per block.
        public var typeSize: Int {
            switch self {
            case .q4_0: return 18
            case .q8_0: return 34
            case .q2K: return 84
            }
        }

        /// Bytes of a row of `cols` weights, or nil when `cols` is not a whole number of blocks.
        public func rowBytes(cols: Int) -> Int? {
            guard cols > 0, cols % blockSize == 0 else { return nil }
            return cols / blockSize * typeSize
        }

        public var description: String {
            switch self {
            case .q4_0: return "Q4_0"
            case .q8_0: return "Q8_0"
            case .q2K: return "Q2_K"
            }
        }
    }

    public let format: Format
    /// Row 0's first block; row r starts `r · rowBytes` bytes later.
    public let base: UnsafeRawPointer
    public let rowBytes: Int

    /// Rows of `cols` weights of `format` at `base`, or nil when `cols` is not a whole number of blocks.
    public init?(format: Format, base: UnsafeRawPointer, cols: Int) {
        guard let rowBytes = format.rowBytes(cols: cols) else { return nil }
        self.format = format
        self.base = base
        self.rowBytes = rowBytes
    }
}
