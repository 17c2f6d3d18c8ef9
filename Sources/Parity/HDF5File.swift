import CHDF5
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

    private static let silenced: Void = { chdf5_silence_errors() }()

    private init(path: String, id: hid_t) {
        self.path = path
        self.id = id
    }

    deinit { H5Fclose(id) }

    public static func open(_ path: String) throws(HDF5Error) -> HDF5File {
        _ = silenced
        let id = H5Fopen(path, chdf5_acc_rdonly(), chdf5_p_default())
        guard id >= 0 else { throw HDF5Error(path: path, reason: "cannot open as HDF5") }
        return HDF5File(path: path, id: id)
    }

    public static func create(_ path: String) throws(HDF5Error) -> HDF5File {
        _ = silenced
        let id = H5Fcreate(path, chdf5_acc_trunc(), chdf5_p_default(), chdf5_p_default())
        guard id >= 0 else { throw HDF5Error(path: path, reason: "cannot create") }
        return HDF5File(path: path, id: id)
    }

    public static var libraryVersion: String {
        var major: UInt32 = 0, minor: UInt32 = 0, release: UInt32 = 0
        H5get_libversion(&major, &minor, &release)
        return "\(major).\(minor).\(release)"
    }

    /// Writes a float32 dataset (intermediate groups are created).
    public func write(_ name: String, floats: [Float], shape: [Int]) throws(HDF5Error) {
        try write(name, shape: shape, type: chdf5_native_float(), count: floats.count) { floats.withUnsafeBytes { $0.baseAddress! } }
    }

    public func write(_ name: String, int32s: [Int32], shape: [Int]) throws(HDF5Error) {
        try write(name, shape: shape, type: chdf5_native_int32(), count: int32s.count) { int32s.withUnsafeBytes { $0.baseAddress! } }
    }

    private func write(
        _ name: String, shape: [Int], type: hid_t, count: Int, _ pointer: () -> UnsafeRawPointer
    ) throws(HDF5Error) {
        guard shape.reduce(1, *) == count else { throw HDF5Error(path: path, reason: "\(displayed(name)): shape does not match the value count") }
        var dims = shape.map { hsize_t($0) }
        let space = H5Screate_simple(Int32(dims.count), &dims, nil)
        defer { H5Sclose(space) }
        let links = chdf5_link_create_plist()
        H5Pset_create_intermediate_group(links, 1)
        defer { H5Pclose(links) }
        let set = H5Dcreate2(id, name, type, space, links, chdf5_p_default(), chdf5_p_default())
        guard set >= 0 else { throw HDF5Error(path: path, reason: "\(displayed(name)): cannot create dataset") }
        defer { H5Dclose(set) }
        guard H5Dwrite(set, type, chdf5_s_all(), chdf5_s_all(), chdf5_p_default(), pointer()) >= 0 else {
            throw HDF5Error(path: path, reason: "\(displayed(name)): write failed")
        }
    }

    /// Reads a dataset as float32 with its shape (any numeric stored type is converted by HDF5).
    public func readFloats(_ name: String, maxElements: Int = 1 << 31) throws(HDF5Error) -> (values: [Float], shape: [Int]) {
        try read(name, as: Float.self, type: chdf5_native_float(), integersOnly: false, maxElements: maxElements)
    }

    /// Reads an integer dataset as Int64 with its shape (a float dataset is refused: ids must be exact).
    public func readInt64s(_ name: String, maxElements: Int = 1 << 31) throws(HDF5Error) -> (values: [Int64], shape: [Int]) {
        try read(name, as: Int64.self, type: chdf5_native_llong(), integersOnly: true, maxElements: maxElements)
    }

    /// Whether a dataset or group exists at `name` (every intermediate group checked).
    public func exists(_ name: String) -> Bool { chdf5_path_exists(id, name) != 0 }

    /// A string attribute of the object at `object` ("/" for the root), or nil when absent.
    public func stringAttribute(_ attribute: String, of object: String) -> String? {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = buffer.withUnsafeMutableBufferPointer { chdf5_read_string_attribute(id, object, attribute, $0.baseAddress, $0.count) }
        guard n >= 0 else { return nil }
        return String(decoding: buffer.prefix(Int(n)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Opens the dataset once: its stored class (when `integersOnly`), its shape and size bound, then its values.
    private func read<T: Numeric>(
        _ name: String, as: T.Type, type: hid_t, integersOnly: Bool, maxElements: Int
    ) throws(HDF5Error) -> (values: [T], shape: [Int]) {
        let set = H5Dopen2(id, name, chdf5_p_default())
        guard set >= 0 else { throw HDF5Error(path: path, reason: "no dataset \(displayed(name))") }
        defer { H5Dclose(set) }
        if integersOnly {
            let stored = H5Dget_type(set)
            let typeClass = H5Tget_class(stored)
            H5Tclose(stored)
            guard typeClass == H5T_INTEGER else { throw HDF5Error(path: path, reason: "\(displayed(name)): expected an integer dataset") }
        }
        let space = H5Dget_space(set)
        defer { H5Sclose(space) }
        let rank = H5Sget_simple_extent_ndims(space)
        guard rank >= 0, rank <= 8 else { throw HDF5Error(path: path, reason: "\(displayed(name)): unsupported rank \(rank)") }
        var dims = [hsize_t](repeating: 0, count: Int(rank))
        H5Sget_simple_extent_dims(space, &dims, nil)
        var count: UInt64 = 1
        for d in dims {
            let (p, overflow) = count.multipliedReportingOverflow(by: UInt64(d))
            guard !overflow else { throw HDF5Error(path: path, reason: "\(displayed(name)): shape overflows") }
            count = p
        }
        guard count <= UInt64(maxElements) else {
            throw HDF5Error(path: path, reason: "\(displayed(name)): \(count) elements exceeds the limit of \(maxElements)")
        }
        var values = [T](repeating: 0, count: Int(count))
        let status = values.withUnsafeMutableBytes { H5Dread(set, type, chdf5_s_all(), chdf5_s_all(), chdf5_p_default(), $0.baseAddress) }
        guard status >= 0 else { throw HDF5Error(path: path, reason: "\(displayed(name)): read failed (not numeric?)") }
        return (values, dims.map { Int($0) })
    }
}
