import TensorCore

/// One tensor as a safetensors header describes it.
public struct TensorEntry: Sendable, Equatable {
    public var name: String
    public var dtype: DType
    public var shape: [Int]
    /// `data_offsets`, relative to the start of the data buffer.
    public var dataBegin: Int
    public var dataEnd: Int
    /// Where the data buffer starts in the file (8 + header length).
    public var dataStartInFile: Int

    public var byteCount: Int { dataEnd - dataBegin }
    /// Elements (validated not to overflow when the header was read).
    public var elementCount: Int { shape.reduce(1, *) }
    /// The tensor's bytes as a range of the file.
    public var rangeInFile: Range<Int> { (dataStartInFile + dataBegin)..<(dataStartInFile + dataEnd) }

    public init(name: String, dtype: DType, shape: [Int], dataBegin: Int, dataEnd: Int, dataStartInFile: Int) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.dataBegin = dataBegin
        self.dataEnd = dataEnd
        self.dataStartInFile = dataStartInFile
    }
}
