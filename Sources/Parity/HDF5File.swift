import CHDF5
#if canImport(Glibc)
import Glibc
#endif
import TensorCore

/// Reading and writing float32 / int datasets in HDF5 files: the only importer of libhdf5.
/// HDF5's own error printing is silenced; failures come back as `HDF5Error` naming file and dataset.
public final class HDF5File {
    public struct HDF5Error: Error, Equatable, Sendable, CustomStringConvertible {
        public var path: String
        public var reason: String
        public init(path: String, reason: String) {
            self.path = path
            self.reason = reason
        }
        public var description: String { "\(displayed(path)): \(displayed(reason, limit: nil))" }
    }

    public let path: String
    private let id: hid_t

    /// Loads libhdf5 (once per process; it is opened with dlopen on first use, not linked, so commands without
    /// reference dumps never load it) and silences its own error printing.
    private static func load(_ path: String) throws(HDF5Error) {
        var error = [CChar](repeating: 0, count: 1024)
        guard chdf5_load(&error, error.count) == 0 else { throw HDF5Error(path: path, reason: string(error)) }
    }

    /// Opens the HDF5 library file `library` and resolves every entry point k2pack uses, without keeping it: the
    /// error path of loading (the message names the library and what is missing).
    public static func probe(library: String) throws(HDF5Error) {
        var error = [CChar](repeating: 0, count: 1024)
        guard chdf5_probe(library, &error, error.count) == 0 else { throw HDF5Error(path: library, reason: string(error)) }
    }

    private static func string(_ buffer: [CChar]) -> String {
        String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    private init(path: String, id: hid_t) {
        self.path = path
        self.id = id
    }

    deinit { chdf5_Fclose(id) }

    /// Opens a regular file read-only (a FIFO, a device or a folder is refused before libhdf5 reads a byte: a
    /// FIFO would block the reader forever).
    public static func open(_ path: String) throws(HDF5Error) -> HDF5File {
        var status = stat()
        guard stat(path, &status) == 0 else {
            throw HDF5Error(path: path, reason: errno == ENOENT ? "cannot open: no such file" : "cannot open: \(String(cString: strerror(errno)))")
        }
        guard status.st_mode & S_IFMT == S_IFREG else {
            throw HDF5Error(path: path, reason: "not a regular file (a FIFO, device or folder); a reference dump is an HDF5 file")
        }
        try load(path)
        let id = chdf5_Fopen(path, chdf5_acc_rdonly(), chdf5_p_default())
        guard id >= 0 else { throw HDF5Error(path: path, reason: "cannot open as HDF5") }
        return HDF5File(path: path, id: id)
    }

    public static func create(_ path: String) throws(HDF5Error) -> HDF5File {
        try load(path)
        // No object modification times: a file's bytes depend only on what is written (a resumed `logits` run
        // gives the same file as an uninterrupted one).
        let properties = chdf5_untimed_file_plist()
        defer { chdf5_Pclose(properties) }
        let id = chdf5_Fcreate(path, chdf5_acc_trunc(), properties, chdf5_p_default())
        guard id >= 0 else { throw HDF5Error(path: path, reason: "cannot create") }
        return HDF5File(path: path, id: id)
    }

    /// The loaded library's version ("unavailable: " and the reason when it cannot be loaded).
    public static var libraryVersion: String {
        var error = [CChar](repeating: 0, count: 1024)
        guard chdf5_load(&error, error.count) == 0 else { return "unavailable: " + string(error) }
        var major: UInt32 = 0, minor: UInt32 = 0, release: UInt32 = 0
        chdf5_get_libversion(&major, &minor, &release)
        return "\(major).\(minor).\(release)"
    }

    /// Writes a float32 dataset (intermediate groups are created).
    public func write(_ name: String, floats: [Float], shape: [Int]) throws(HDF5Error) {
        try write(name, shape: shape, type: chdf5_native_float(), count: floats.count) { floats.withUnsafeBytes { $0.baseAddress! } }
    }

    public func write(_ name: String, int32s: [Int32], shape: [Int]) throws(HDF5Error) {
        try write(name, shape: shape, type: chdf5_native_int32(), count: int32s.count) { int32s.withUnsafeBytes { $0.baseAddress! } }
    }

    public func write(_ name: String, doubles: [Double], shape: [Int]) throws(HDF5Error) {
        try write(name, shape: shape, type: chdf5_native_double(), count: doubles.count) { doubles.withUnsafeBytes { $0.baseAddress! } }
    }

    private func write(
        _ name: String, shape: [Int], type: hid_t, count: Int, _ pointer: () -> UnsafeRawPointer
    ) throws(HDF5Error) {
        guard shape.reduce(1, *) == count else { throw HDF5Error(path: path, reason: "\(displayed(name)): shape does not match the value count") }
        let set = try createDataset(name, shape: shape, type: type)
        defer { chdf5_Dclose(set) }
        guard count > 0 else { return }
        guard chdf5_Dwrite(set, type, chdf5_s_all(), chdf5_s_all(), chdf5_p_default(), pointer()) >= 0 else {
            throw HDF5Error(path: path, reason: "\(displayed(name)): write failed")
        }
    }

    /// Creates a float32 dataset of `shape` (intermediate groups are created) to be filled by `writeFloatBlock`.
    public func createFloats(_ name: String, shape: [Int]) throws(HDF5Error) {
        chdf5_Dclose(try createDataset(name, shape: shape, type: chdf5_native_float()))
    }

    /// A new dataset of `shape` and `type` (intermediate groups are created); the caller closes it.
    private func createDataset(_ name: String, shape: [Int], type: hid_t) throws(HDF5Error) -> hid_t {
        var dims = shape.map { hsize_t($0) }
        let space = chdf5_Screate_simple(Int32(dims.count), &dims, nil)
        defer { chdf5_Sclose(space) }
        let links = chdf5_link_create_plist()
        chdf5_Pset_create_intermediate_group(links, 1)
        defer { chdf5_Pclose(links) }
        let untimed = chdf5_untimed_dataset_plist()
        defer { chdf5_Pclose(untimed) }
        let set = chdf5_Dcreate2(id, name, type, space, links, untimed, chdf5_p_default())
        guard set >= 0 else { throw HDF5Error(path: path, reason: "\(displayed(name)): cannot create dataset") }
        return set
    }

    /// Writes `values` into the block `[start, start + count)` of a float dataset this file created.
    public func writeFloatBlock(_ name: String, start: [Int], count: [Int], values: [Float]) throws(HDF5Error) {
        guard start.count == count.count, count.reduce(1, *) == values.count else {
            throw HDF5Error(path: path, reason: "\(displayed(name)): block \(count) does not match \(values.count) values")
        }
        let set = chdf5_Dopen2(id, name, chdf5_p_default())
        guard set >= 0 else { throw HDF5Error(path: path, reason: "no dataset \(displayed(name))") }
        defer { chdf5_Dclose(set) }
        let first = start.map { hsize_t($0) }, sizes = count.map { hsize_t($0) }
        let status = values.withUnsafeBufferPointer { v in
            first.withUnsafeBufferPointer { a in sizes.withUnsafeBufferPointer { c in chdf5_write_float_block(set, Int32(start.count), a.baseAddress, c.baseAddress, v.baseAddress) } }
        }
        guard status >= 0 else { throw HDF5Error(path: path, reason: "\(displayed(name)): writing block \(start) + \(count) failed") }
    }

    /// For tests and fuzzing: the layouts a reference dump must not be able to use, or must not make us allocate
    /// for (a never-written compressed dataset of a huge shape is a few bytes on disk).
    public enum TestLayout: Sendable {
        case externalStorage(file: String)
        case virtual(file: String, dataset: String)
        case compressed(chunk: [Int])
    }

    /// Creates a float dataset of `shape` in one of the `TestLayout`s (for tests and fuzzing).
    public func create(_ name: String, shape: [Int], layout: TestLayout) throws(HDF5Error) {
        let dims = shape.map { hsize_t($0) }
        let status: Int32 = dims.withUnsafeBufferPointer { d in
            switch layout {
            case .externalStorage(let file): return chdf5_test_external_dataset(id, name, d.baseAddress, Int32(dims.count), file)
            case .virtual(let file, let dataset): return chdf5_test_virtual_dataset(id, name, d.baseAddress, Int32(dims.count), file, dataset)
            case .compressed(let chunk):
                let c = chunk.map { hsize_t($0) }
                return c.withUnsafeBufferPointer { chdf5_test_compressed_dataset(id, name, d.baseAddress, Int32(dims.count), $0.baseAddress) }
            }
        }
        guard status >= 0 else { throw HDF5Error(path: path, reason: "\(displayed(name)): cannot create the test dataset") }
    }

    /// Creates a soft link `name` → `target` in this file (for tests).
    public func linkSoft(_ name: String, to target: String) throws(HDF5Error) {
        let links = chdf5_test_lcpl()
        defer { chdf5_Pclose(links) }
        guard chdf5_Lcreate_soft(target, id, name, links, chdf5_p_default()) >= 0 else {
            throw HDF5Error(path: path, reason: "\(displayed(name)): cannot create a soft link")
        }
    }

    /// Creates an external link `name` → `file`:`object` (for tests).
    public func linkExternal(_ name: String, file: String, object: String) throws(HDF5Error) {
        let links = chdf5_test_lcpl()
        defer { chdf5_Pclose(links) }
        guard chdf5_Lcreate_external(file, object, id, name, links, chdf5_p_default()) >= 0 else {
            throw HDF5Error(path: path, reason: "\(displayed(name)): cannot create an external link")
        }
    }

    /// Reads a dataset as float32 with its shape (any numeric stored type is converted by HDF5).
    public func readFloats(_ name: String, maxElements: Int = 1 << 31) throws(HDF5Error) -> (values: [Float], shape: [Int]) {
        try read(name, as: Float.self, type: chdf5_native_float(), integersOnly: false, maxElements: maxElements)
    }

    /// Reads a float dataset that must have shape `expected`; a dataset of any other shape is refused (with
    /// `describe`'s message) before anything is allocated.
    public func readFloats(_ name: String, expected: [Int], maxElements: Int = 1 << 31, describe: (([Int]) -> String)? = nil) throws(HDF5Error) -> [Float] {
        try read(name, as: Float.self, type: chdf5_native_float(), integersOnly: false, maxElements: maxElements, expected: expected, describe: describe).values
    }

    /// Reads a float dataset of shape `expected` as float64 (refused before anything is allocated otherwise).
    public func readDoubles(_ name: String, expected: [Int], maxElements: Int = 1 << 31, describe: (([Int]) -> String)? = nil) throws(HDF5Error) -> [Double] {
        try read(name, as: Double.self, type: chdf5_native_double(), integersOnly: false, maxElements: maxElements, expected: expected, describe: describe).values
    }

    /// Reads an integer dataset as Int64 with its shape (a float dataset is refused: ids must be exact).
    public func readInt64s(_ name: String, maxElements: Int = 1 << 31) throws(HDF5Error) -> (values: [Int64], shape: [Int]) {
        try read(name, as: Int64.self, type: chdf5_native_llong(), integersOnly: true, maxElements: maxElements)
    }

    /// Reads an integer dataset that must have shape `expected` (refused before anything is allocated otherwise).
    public func readInt64s(_ name: String, expected: [Int], maxElements: Int = 1 << 31, describe: (([Int]) -> String)? = nil) throws(HDF5Error) -> [Int64] {
        try read(name, as: Int64.self, type: chdf5_native_llong(), integersOnly: true, maxElements: maxElements, expected: expected, describe: describe).values
    }

    /// Whether a dataset or group exists at `name` (every intermediate group checked, no link followed). A soft,
    /// external or user-defined link counts as present, so that reading it is refused by name (`checkLinks`).
    public func exists(_ name: String) -> Bool {
        var bad = [CChar](repeating: 0, count: 1024)
        return bad.withUnsafeMutableBufferPointer { chdf5_path_links(id, name, $0.baseAddress, $0.count) } != 0
    }

    /// Refuses a path that is absent or passes through anything but hard links: a soft link, an external link
    /// (another file: `/etc/passwd`, a FIFO) or a user-defined link is never followed.
    public func checkLinks(_ name: String) throws(HDF5Error) {
        var bad = [CChar](repeating: 0, count: 1024)
        let kind = bad.withUnsafeMutableBufferPointer { chdf5_path_links(id, name, $0.baseAddress, $0.count) }
        let at = String(decoding: bad.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        switch kind {
        case 1: return
        case 0: throw HDF5Error(path: path, reason: "no dataset \(displayed(name))")
        case 2: throw HDF5Error(path: path, reason: "\(displayed(at)) is a soft link; a reference dump must hold its datasets itself (links are not followed)")
        case 3: throw HDF5Error(path: path, reason: "\(displayed(at)) is an external link to another file; a reference dump must hold its datasets itself (links are not followed)")
        default: throw HDF5Error(path: path, reason: "\(displayed(at)) is a user-defined link; a reference dump must hold its datasets itself (links are not followed)")
        }
    }

    /// Opens a dataset whose data lies in this file: external raw storage (`H5Pset_external`: any file, a FIFO,
    /// `/dev/zero`) and virtual datasets (mapped from other files) are refused before any data is read.
    private func openDataset(_ name: String) throws(HDF5Error) -> hid_t {
        try checkLinks(name)
        let set = chdf5_Dopen2(id, name, chdf5_p_default())
        guard set >= 0 else { throw HDF5Error(path: path, reason: "no dataset \(displayed(name))") }
        switch chdf5_dataset_storage(set) {
        case 0: return set
        case 1:
            chdf5_Dclose(set)
            throw HDF5Error(path: path, reason: "\(displayed(name)) keeps its data in external files; a reference dump must hold its data itself")
        case 2:
            chdf5_Dclose(set)
            throw HDF5Error(path: path, reason: "\(displayed(name)) is a virtual dataset (mapped from other datasets or files); a reference dump must hold its data itself")
        default:
            chdf5_Dclose(set)
            throw HDF5Error(path: path, reason: "\(displayed(name)): cannot read its storage layout")
        }
    }

    /// The shape of a dataset, read without reading any data.
    public func shape(_ name: String) throws(HDF5Error) -> [Int] {
        let set = try openDataset(name)
        defer { chdf5_Dclose(set) }
        return try shape(of: set, name)
    }

    private func shape(of set: hid_t, _ name: String) throws(HDF5Error) -> [Int] {
        let space = chdf5_Dget_space(set)
        guard space >= 0 else { throw HDF5Error(path: path, reason: "\(displayed(name)): cannot read its shape") }
        defer { chdf5_Sclose(space) }
        let rank = chdf5_Sget_simple_extent_ndims(space)
        guard rank >= 0, rank <= 8 else { throw HDF5Error(path: path, reason: "\(displayed(name)): unsupported rank \(rank)") }
        var dims = [hsize_t](repeating: 0, count: Int(rank))
        chdf5_Sget_simple_extent_dims(space, &dims, nil)
        guard dims.allSatisfy({ $0 <= hsize_t(Int.max) }) else { throw HDF5Error(path: path, reason: "\(displayed(name)): shape overflows") }
        return dims.map { Int($0) }
    }

    /// Reads the block `[start, start + count)` of a float dataset (converted to float32 by HDF5); the block is
    /// checked against the dataset's shape and `maxElements` before anything is allocated.
    public func readFloatBlock(_ name: String, start: [Int], count: [Int], maxElements: Int = 1 << 28) throws(HDF5Error) -> [Float] {
        let set = try openDataset(name)
        defer { chdf5_Dclose(set) }
        let shape = try shape(of: set, name)
        guard start.count == shape.count, count.count == shape.count,
            zip(zip(start, count), shape).allSatisfy({ $0.0 >= 0 && $0.1 >= 0 && $0.0 <= $1 && $0.1 <= $1 - $0.0 })
        else { throw HDF5Error(path: path, reason: "\(displayed(name)): block \(start) + \(count) is outside its shape \(shape)") }
        var elements = 1
        for c in count {
            let (p, overflow) = elements.multipliedReportingOverflow(by: c)
            guard !overflow, p <= maxElements else { throw HDF5Error(path: path, reason: "\(displayed(name)): a block of \(count) exceeds \(maxElements) elements") }
            elements = p
        }
        var values = [Float](repeating: 0, count: elements)
        guard elements > 0 else { return values }
        let first = start.map { hsize_t($0) }, sizes = count.map { hsize_t($0) }
        let status = values.withUnsafeMutableBufferPointer { out in
            first.withUnsafeBufferPointer { a in sizes.withUnsafeBufferPointer { c in chdf5_read_float_block(set, Int32(shape.count), a.baseAddress, c.baseAddress, out.baseAddress) } }
        }
        guard status >= 0 else { throw HDF5Error(path: path, reason: "\(displayed(name)): read failed (not numeric?)") }
        return values
    }

    /// Writes the string attribute `attribute` = `value` on the object at `object` ("/" for the root, or a group or
    /// dataset this file holds).
    public func writeStringAttribute(_ attribute: String, _ value: String, of object: String) throws(HDF5Error) {
        guard chdf5_write_string_attribute(id, object, attribute, value) >= 0 else {
            throw HDF5Error(path: path, reason: "\(displayed(object)): cannot write the attribute \(displayed(attribute))")
        }
    }

    /// A string attribute of the object at `object` ("/" for the root), or nil when absent.
    public func stringAttribute(_ attribute: String, of object: String) -> String? {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = buffer.withUnsafeMutableBufferPointer { chdf5_read_string_attribute(id, object, attribute, $0.baseAddress, $0.count) }
        guard n >= 0 else { return nil }
        return String(decoding: buffer.prefix(Int(n)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Opens the dataset once: its stored class (when `integersOnly`), its shape (which must equal `expected`
    /// where given) and size bound, then its values: nothing is allocated before the shape is known good.
    private func read<T: Numeric>(
        _ name: String, as: T.Type, type: hid_t, integersOnly: Bool, maxElements: Int, expected: [Int]? = nil,
        describe: (([Int]) -> String)? = nil
    ) throws(HDF5Error) -> (values: [T], shape: [Int]) {
        let set = try openDataset(name)
        defer { chdf5_Dclose(set) }
        if integersOnly {
            let stored = chdf5_Dget_type(set)
            let typeClass = chdf5_Tget_class(stored)
            chdf5_Tclose(stored)
            guard typeClass == CHDF5_T_INTEGER else { throw HDF5Error(path: path, reason: "\(displayed(name)): expected an integer dataset") }
        }
        let shape = try shape(of: set, name)
        if let expected, shape != expected {
            throw HDF5Error(path: path, reason: describe?(shape) ?? "\(displayed(name)) has shape \(shape), expected \(expected)")
        }
        var count: UInt64 = 1
        for d in shape {
            let (p, overflow) = count.multipliedReportingOverflow(by: UInt64(d))
            guard !overflow else { throw HDF5Error(path: path, reason: "\(displayed(name)): shape overflows") }
            count = p
        }
        guard count <= UInt64(maxElements) else {
            throw HDF5Error(path: path, reason: "\(displayed(name)): \(count) elements exceeds the limit of \(maxElements)")
        }
        var values = [T](repeating: 0, count: Int(count))
        let status = values.withUnsafeMutableBytes { chdf5_Dread(set, type, chdf5_s_all(), chdf5_s_all(), chdf5_p_default(), $0.baseAddress) }
        guard status >= 0 else { throw HDF5Error(path: path, reason: "\(displayed(name)): read failed (not numeric?)") }
        return (values, shape)
    }
}
