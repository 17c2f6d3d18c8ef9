import JSONCore

/// One stored slice of a source tensor: which file (of those the index was built from), which stored tensor,
/// which of its sources.
public struct StoredSlice: Sendable {
    public var file: Int
    public var tensor: PackTensor
    public var index: Int

    public init(file: Int, tensor: PackTensor, index: Int) {
        self.file = file
        self.tensor = tensor
        self.index = index
    }

    public var source: PackSource { tensor.sources[index] }
    /// Where its bytes lie in an uncompressed file: a tensor's sources are stored back to back.
    public var range: Range<Int> { PackFile.storedRange(tensor, index) }
    /// Whether this is the stored tensor's only source, under the source's own name (not one expert of a stack).
    public var isWholeTensor: Bool { tensor.sources.count == 1 && ByteName(tensor.sources[0].name) == ByteName(tensor.name) }
}

/// The one map from a source tensor to the slices of it a k2pack folder (or a shard set's ranks) stores: what
/// export, merge, verify and the forward pass look source tensors up in. Names are compared as bytes (NFC and
/// NFD spellings are different tensors). Slices are kept in the order they were added (file, tensor, source).
public struct PackSliceIndex: Sendable {
    public private(set) var slices: [ByteName: [StoredSlice]] = [:]
    /// The first source tensor met a second time, with its first two slices (a folder must store each once;
    /// a shard set may hold blocks of one tensor on several ranks).
    public private(set) var firstDuplicate: (name: String, first: StoredSlice, second: StoredSlice)?

    public init() {}

    /// Every source of every tensor of `files`, file `i` numbered `i`.
    public init(_ files: [PackFile]) {
        for (f, file) in files.enumerated() {
            for tensor in file.table.tensors { add(tensor, file: f) }
        }
    }

    public mutating func add(_ tensor: PackTensor, file: Int) {
        for i in tensor.sources.indices {
            let slice = StoredSlice(file: file, tensor: tensor, index: i)
            let key = ByteName(tensor.sources[i].name)
            if firstDuplicate == nil, let first = slices[key]?.first {
                firstDuplicate = (tensor.sources[i].name, first, slice)
            }
            slices[key, default: []].append(slice)
        }
    }

    /// The slices stored of source tensor `name`, in the order added.
    public subscript(name: String) -> [StoredSlice] { slices[ByteName(name)] ?? [] }

    /// Takes the slices of `name` out of the index (what is left afterwards was claimed by nothing).
    public mutating func remove(_ name: String) -> [StoredSlice] { slices.removeValue(forKey: ByteName(name)) ?? [] }
}
