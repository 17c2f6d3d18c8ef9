import Foundation
import JSONCore

/// A split GGUF name, `PREFIX-NNNNN-of-MMMMM.gguf` (llama.cpp's `llama_split_path`): part `number` (1-based) of
/// `count`.
public struct GGUFSplitName: Sendable, Equatable {
    public var prefix: String
    public var number: Int
    public var count: Int

    /// Parses a file name (no folder); nil when it does not follow the pattern.
    public init?(fileName: String) {
        let suffix = ".gguf"
        guard fileName.hasSuffix(suffix) else { return nil }
        let stem = Array(fileName.utf8.dropLast(suffix.utf8.count))
        // "-" 5+ digits "-of-" 5+ digits at the end.
        func digitsBackwards(_ end: Int) -> (value: Int, start: Int)? {
            var i = end
            while i > 0, stem[i - 1] >= UInt8(ascii: "0"), stem[i - 1] <= UInt8(ascii: "9") { i -= 1 }
            let length = end - i
            guard length >= 5, length <= 9 else { return nil }
            let value = stem[i..<end].reduce(0) { $0 * 10 + Int($1 - UInt8(ascii: "0")) }
            return (value, i)
        }
        guard let count = digitsBackwards(stem.count) else { return nil }
        let of = Array("-of-".utf8)
        guard count.start >= of.count, Array(stem[(count.start - of.count)..<count.start]) == of,
            let number = digitsBackwards(count.start - of.count), number.start >= 1, stem[number.start - 1] == UInt8(ascii: "-")
        else { return nil }
        guard let prefix = String(validating: stem[0..<(number.start - 1)], as: UTF8.self) else { return nil }
        self.prefix = prefix
        self.number = number.value
        self.count = count.value
    }

    public init(prefix: String, number: Int, count: Int) {
        self.prefix = prefix
        self.number = number
        self.count = count
    }

    public var fileName: String { "\(prefix)-\(Self.fiveDigits(number))-of-\(Self.fiveDigits(count)).gguf" }

    static func fiveDigits(_ n: Int) -> String {
        let text = String(n)
        return String(repeating: "0", count: max(0, 5 - text.count)) + text
    }
}

/// A GGUF model: one file, or every part of a split set (found from any one part), checked to belong together.
///
/// For a split set: every part `PREFIX-0000i-of-N.gguf` must exist (all missing ones are named); each part's
/// `split.no` must be its number − 1 and its `split.count` and `split.tensors.count` the first part's; a part
/// whose `general.architecture` (when it has one) differs from the first part's is refused as a part of another
/// set; tensor names are unique across parts and their total is `split.tensors.count`. Metadata comes from the
/// first part (gguf-split writes it there).
public final class GGUFModel: Sendable {
    public let parts: [GGUFFile]
    /// Tensor name → (part index, tensor info), over all parts.
    private let index: [ByteName: (Int, Int)]
    public let tensorNames: [String]

    public var first: GGUFFile { parts[0] }
    public var metadata: [GGUFKeyValue] { first.metadata }
    public subscript(key: String) -> GGUFValue? { first[key] }

    public init(path: String) throws(GGUFError) {
        let given = try GGUFFile(path: path)
        let fileName = (path as NSString).lastPathComponent
        guard let count = try Self.u16(given, "split.count") else {
            // No split keys: a single file (whatever its name).
            parts = [given]
            (index, tensorNames) = try Self.buildIndex([given])
            return
        }
        guard count > 0 else { throw .splitName(file: path, reason: "split.count is 0") }
        if count == 1, GGUFSplitName(fileName: fileName) == nil {
            parts = [given]
            (index, tensorNames) = try Self.buildIndex([given])
            return
        }
        let folder = (path as NSString).deletingLastPathComponent
        guard let name = GGUFSplitName(fileName: fileName) else {
            throw .splitName(file: path, reason: "split.count is \(count) but the name does not follow NAME-00001-of-\(GGUFSplitName.fiveDigits(Int(count))).gguf, so the other parts cannot be found")
        }
        let number = try Self.u16(given, "split.no")
        guard name.count == count else {
            throw .splitName(file: path, reason: "the name says \(name.count) parts but split.count is \(count)")
        }
        guard let number, Int(number) + 1 == name.number else {
            throw .splitName(file: path, reason: "the name says part \(name.number) but split.no is \(splitNumberText(number))")
        }
        var paths: [String] = []
        var missing: [String] = []
        for i in 1...Int(count) {
            let partName = GGUFSplitName(prefix: name.prefix, number: i, count: Int(count)).fileName
            let partPath = folder.isEmpty ? partName : (folder as NSString).appendingPathComponent(partName)
            paths.append(partPath)
            if i != name.number, !FileManager.default.fileExists(atPath: partPath) { missing.append(partName) }
        }
        if !missing.isEmpty { throw .splitPartsMissing(file: path, missing: missing, count: Int(count)) }
        var opened: [GGUFFile] = []
        for (i, partPath) in paths.enumerated() {
            opened.append(i + 1 == name.number ? given : try GGUFFile(path: partPath))
        }
        let first = opened[0]
        let total = try Self.i32(first, "split.tensors.count")
        for (i, part) in opened.enumerated() {
            func foreign(_ key: String, _ found: String, _ expected: String) -> GGUFError {
                .splitForeignPart(file: part.path, key: key, found: found, expected: expected, firstPart: first.path)
            }
            let partCount = try Self.u16(part, "split.count")
            if partCount != count { throw foreign("split.count", splitNumberText(partCount), "\(count)") }
            let partNumber = try Self.u16(part, "split.no")
            if partNumber.map(Int.init) != i {
                throw .splitName(file: part.path, reason: "this is part \(i + 1) of the set but its split.no is \(splitNumberText(partNumber)) (expected \(i))")
            }
            let partTotal = try Self.i32(part, "split.tensors.count")
            if partTotal != total { throw foreign("split.tensors.count", partTotal.map { "\($0)" } ?? "absent", total.map { "\($0)" } ?? "absent") }
            if let a = part.architecture, let b = first.architecture, a != b { throw foreign("general.architecture", a, b) }
        }
        parts = opened
        (index, tensorNames) = try Self.buildIndex(opened)
        let held = tensorNames.count
        if let total, Int(total) != held { throw .splitTensorCount(file: first.path, found: held, expected: Int(total)) }
    }

    private static func buildIndex(_ parts: [GGUFFile]) throws(GGUFError) -> ([ByteName: (Int, Int)], [String]) {
        var index: [ByteName: (Int, Int)] = [:]
        var names: [String] = []
        for (p, part) in parts.enumerated() {
            for (t, info) in part.tensors.enumerated() {
                if let (other, _) = index.updateValue((p, t), forKey: ByteName(info.name)) {
                    throw .splitDuplicateTensor(tensor: info.name, firstPart: parts[other].path, secondPart: part.path)
                }
                names.append(info.name)
            }
        }
        return (index, names)
    }

    private static func u16(_ file: GGUFFile, _ key: String) throws(GGUFError) -> UInt16? {
        guard let value = file[key] else { return nil }
        guard case let .u16(v) = value else {
            throw .wrongKeyType(file: file.path, key: key, found: value.typeName, expected: "u16")
        }
        return v
    }

    private static func i32(_ file: GGUFFile, _ key: String) throws(GGUFError) -> Int32? {
        guard let value = file[key] else { return nil }
        guard case let .i32(v) = value else {
            throw .wrongKeyType(file: file.path, key: key, found: value.typeName, expected: "i32")
        }
        return v
    }

    /// Every tensor, in part order then file order.
    public var tensors: [GGUFTensorInfo] { parts.flatMap(\.tensors) }

    /// The tensor and the part that holds it.
    public func tensor(named name: String) -> (file: GGUFFile, info: GGUFTensorInfo)? {
        guard let (p, t) = index[ByteName(name)] else { return nil }
        return (parts[p], parts[p].tensors[t])
    }

    /// A tensor as float32 (ggml order), or `tensorNotFound`.
    public func dequantize(_ name: String, threads: Int = 1) throws(GGUFError) -> [Float] {
        guard let (file, info) = tensor(named: name) else { throw .tensorNotFound(file: first.path, tensor: name) }
        return try GGUFDequantizer.dequantize(info, of: file, threads: threads)
    }
}

private func splitNumberText(_ value: UInt16?) -> String {
    value.map { "\($0)" } ?? "absent"
}
