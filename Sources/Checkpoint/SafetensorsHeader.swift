import JSONCore
import TensorCore

/// The parsed and validated header of one safetensors file.
///
/// Enforces every rule of the reference implementation: header length ≤ 100,000,000 and within the file,
/// UTF-8 JSON with no duplicate keys, known dtypes, `__metadata__` strings only, byte spans equal to
/// elements × width (overflow-checked), offsets contiguous from 0 with no gap or overlap, and the header
/// plus data exactly the file's length.
public struct SafetensorsHeader: Sendable {
    /// The reference implementation's limit on the JSON header's length.
    public static let maxHeaderLength: UInt64 = 100_000_000

    public var fileName: String
    public var fileLength: Int
    /// Length of the JSON header (without the 8-byte length field).
    public var headerLength: Int
    /// Tensors in data order (ascending offsets).
    public var tensors: [TensorEntry]
    public var metadata: [String: String]

    public var dataStartInFile: Int { 8 + headerLength }
    public var dataByteCount: Int { fileLength - dataStartInFile }

    /// Validates the 8-byte length prefix against the file length; returns the header length.
    public static func headerLength(
        prefix: UnsafeRawBufferPointer, fileName: String, fileLength: Int
    ) throws(CheckpointError) -> Int {
        guard fileLength >= 8, prefix.count >= 8 else {
            throw .fileTooShort(file: fileName, byteCount: fileLength)
        }
        if isLFSPointer(prefix) { throw .lfsPointer(file: fileName) }
        let n = prefix.loadUnaligned(as: UInt64.self).littleEndian
        guard n <= maxHeaderLength else {
            throw .headerTooLarge(file: fileName, headerLength: n, fileLength: fileLength)
        }
        guard 8 + n <= UInt64(fileLength) else {
            throw .headerPastEnd(file: fileName, headerLength: n, fileLength: fileLength)
        }
        return Int(n)
    }

    private static func isLFSPointer(_ prefix: UnsafeRawBufferPointer) -> Bool {
        let marker = Array("version ".utf8)
        return prefix.count >= marker.count && zip(prefix, marker).allSatisfy { $0 == $1 }
    }

    /// Parses and validates a header's JSON (`json` excludes the 8-byte length field).
    public static func parse(
        json: UnsafeRawBufferPointer, fileName: String, fileLength: Int
    ) throws(CheckpointError) -> SafetensorsHeader {
        var header = try parseUnvalidated(json: json, fileName: fileName, fileLength: fileLength)
        try header.validateLayout()
        return header
    }

    /// A header kept apart from its data (the 8-byte length field and the JSON): parsed once and validated
    /// against the file length it describes.
    public static func parse(detached bytes: UnsafeRawBufferPointer, fileName: String) throws(CheckpointError) -> SafetensorsHeader {
        let n = try headerLength(prefix: bytes, fileName: fileName, fileLength: bytes.count)
        guard n == bytes.count - 8 else {
            throw .headerMalformed(file: fileName, reason: "length field says \(n) bytes but \(bytes.count - 8) follow")
        }
        var header = try parseUnvalidated(json: UnsafeRawBufferPointer(rebasing: bytes[8...]), fileName: fileName, fileLength: 0)
        header.fileLength = header.describedLength
        try header.validateLayout()
        return header
    }

    private static func parseUnvalidated(
        json: UnsafeRawBufferPointer, fileName: String, fileLength: Int
    ) throws(CheckpointError) -> SafetensorsHeader {
        var parser = HeaderParser(scanner: JSONScanner(bytes: json, maxDepth: JSONDepth.safetensorsHeader), fileName: fileName, dataStart: 8 + json.count)
        let (tensors, metadata) = try parser.parseHeader()
        return SafetensorsHeader(
            fileName: fileName, fileLength: fileLength, headerLength: json.count, tensors: tensors, metadata: metadata)
    }

    /// The file length the header describes: 8 + header + the end of the last tensor (saturating).
    public var describedLength: Int {
        CheckedMath.add(dataStartInFile, tensors.map(\.dataEnd).max() ?? 0) ?? Int.max
    }

    /// Sizes, ordering and coverage of the data buffer.
    mutating func validateLayout() throws(CheckpointError) {
        for t in tensors {
            guard let expected = CheckedMath.byteCount(shape: t.shape, dtype: t.dtype) else {
                if let elements = CheckedMath.product(t.shape), CheckedMath.multiply(elements, t.dtype.bitWidth) != nil {
                    throw .misalignedSlice(file: fileName, tensor: t.name, shape: t.shape, dtype: t.dtype)
                }
                throw .shapeOverflow(file: fileName, tensor: t.name, shape: t.shape)
            }
            guard t.dataEnd >= t.dataBegin else {
                throw .offsetsReversed(file: fileName, tensor: t.name, begin: t.dataBegin, end: t.dataEnd)
            }
            guard t.dataEnd - t.dataBegin == expected else {
                throw .sizeMismatch(
                    file: fileName, tensor: t.name, shape: t.shape, dtype: t.dtype, expectedBytes: expected,
                    spanBytes: t.dataEnd - t.dataBegin)
            }
        }
        tensors.sort { ($0.dataBegin, $0.dataEnd) < ($1.dataBegin, $1.dataEnd) }
        var end = 0
        var previous: String?
        for t in tensors {
            if t.dataBegin > end {
                throw .offsetGap(file: fileName, tensor: t.name, previous: previous, expectedBegin: end, begin: t.dataBegin)
            }
            if t.dataBegin < end, let previous {
                throw .offsetOverlap(file: fileName, tensor: t.name, previous: previous, expectedBegin: end, begin: t.dataBegin)
            }
            end = t.dataEnd
            previous = t.name
        }
        // A hostile header can claim a buffer near Int.max: saturate rather than overflow.
        let expectedLength = CheckedMath.add(dataStartInFile, end) ?? Int.max
        if fileLength < expectedLength {
            throw .truncated(file: fileName, fileLength: fileLength, expectedLength: expectedLength)
        }
        if fileLength > expectedLength {
            throw .trailingBytes(file: fileName, fileLength: fileLength, expectedLength: expectedLength)
        }
    }
}

/// Reads a header's JSON into entries; JSON errors become `CheckpointError.headerJSON`.
private struct HeaderParser {
    var scanner: JSONScanner
    let fileName: String
    let dataStart: Int
    /// `parseIntArray`'s reused buffer, and the last few distinct shapes it returned (a small ring).
    private var scratch: [Int] = []
    private var recentShapes: [[Int]] = []
    private var nextRecent = 0
    private static let recentShapeCount = 8
    /// The dtype of the entry before: most entries repeat it, and it is then matched on the bytes (no String).
    private var lastDType: DType?

    init(scanner: JSONScanner, fileName: String, dataStart: Int) {
        self.scanner = scanner
        self.fileName = fileName
        self.dataStart = dataStart
    }

    private mutating func json<T>(_ body: (inout JSONScanner) throws(JSONError) -> T) throws(CheckpointError) -> T {
        do {
            return try body(&scanner)
        } catch {
            throw .headerJSON(file: fileName, error: error)
        }
    }

    mutating func parseHeader() throws(CheckpointError) -> ([TensorEntry], [String: String]) {
        var tensors: [TensorEntry] = []
        var metadata: [String: String] = [:]
        // Keys compared as bytes: NFC and NFD spellings are two tensors (as in safetensors), not duplicates. A name
        // table, not a `Set<ByteName>`: one cheap hash per key, no retained `String`.
        // A tensor entry takes at least ~60 bytes of JSON; sizing up front avoids rehashing.
        var seen = NameTable(expectedCount: scanner.bytes.count / 128, expectedBytes: scanner.bytes.count / 2)
        tensors.reserveCapacity(scanner.bytes.count / 128)
        try json { s throws(JSONError) in try s.expect(UInt8(ascii: "{"), "'{' at the start of the header") }
        if !scanner.consume(UInt8(ascii: "}")) {
            repeat {
                let keyOffset = scanner.position
                var key = try json { s throws(JSONError) in try s.parseString() }
                guard key.withUTF8({ seen.insert(UnsafeRawBufferPointer($0), value: 0) }) == nil else {
                    throw .duplicateKey(file: fileName, tensor: key, offset: keyOffset)
                }
                try json { s throws(JSONError) in try s.expect(UInt8(ascii: ":"), "':' after a key") }
                if key == "__metadata__" {
                    metadata = try parseMetadata()
                } else {
                    tensors.append(try parseEntry(name: key))
                }
            } while scanner.consume(UInt8(ascii: ","))
            try json { s throws(JSONError) in try s.expect(UInt8(ascii: "}"), "',' or '}' in the header") }
        }
        try json { s throws(JSONError) in try s.expectEnd() }
        return (tensors, metadata)
    }

    private mutating func parseMetadata() throws(CheckpointError) -> [String: String] {
        let start = scanner.position
        let value = try json { s throws(JSONError) in try s.parseValue(depth: 1) }
        if value.isNull { return [:] }  // the reference reads it as an optional map
        guard let object = value.objectValue else {
            throw .headerJSON(
                file: fileName, error: JSONError(offset: start, reason: "__metadata__ must be an object, found \(value.kindName)"))
        }
        var out: [String: String] = [:]
        for (key, v) in object.entries {
            guard let s = v.stringValue else { throw .metadataNotString(file: fileName, key: key) }
            out[key] = s
        }
        return out
    }

    private mutating func parseEntry(name: String) throws(CheckpointError) -> TensorEntry {
        let file = fileName
        func bad(_ reason: String) -> CheckpointError { .tensorEntryMalformed(file: file, tensor: name, reason: reason) }
        guard scanner.peek() == UInt8(ascii: "{") else { throw bad("entry must be an object") }
        try json { s throws(JSONError) in try s.expect(UInt8(ascii: "{"), "'{'") }
        var dtypeText: String?
        var knownDType: DType?
        var shape: [Int]?
        var offsets: (count: Int, begin: Int, end: Int)?
        var otherFields: Set<String>?  // rare: only entries with extra fields allocate this
        if !scanner.consume(UInt8(ascii: "}")) {
            repeat {
                let keyOffset = scanner.position
                // The three known keys are recognized without building a String.
                let field: String
                if scanner.consumeString("dtype") {
                    field = "dtype"
                } else if scanner.consumeString("shape") {
                    field = "shape"
                } else if scanner.consumeString("data_offsets") {
                    field = "data_offsets"
                } else {
                    field = try json { s throws(JSONError) in try s.parseString() }
                }
                func duplicate() -> CheckpointError {
                    .headerJSON(
                        file: fileName,
                        error: JSONError(offset: keyOffset, reason: "duplicate key \"\(displayed(field))\" in tensor '\(displayed(name))'"))
                }
                try json { s throws(JSONError) in try s.expect(UInt8(ascii: ":"), "':' after a key") }
                switch field {
                case "dtype":
                    guard dtypeText == nil else { throw duplicate() }
                    guard scanner.peek() == UInt8(ascii: "\"") else { throw bad("dtype must be a string") }
                    if let last = lastDType,
                        last.rawValue.utf8.withContiguousStorageIfAvailable({ scanner.consumeString(equalTo: UnsafeRawBufferPointer($0)) }) == true
                    {
                        dtypeText = last.rawValue
                        knownDType = last
                    } else {
                        dtypeText = try json { s throws(JSONError) in try s.parseString() }
                    }
                case "shape":
                    guard shape == nil else { throw duplicate() }
                    shape = try parseIntArray(what: "shape", bad: bad)
                case "data_offsets":
                    guard offsets == nil else { throw duplicate() }
                    offsets = try parseOffsets(bad: bad)
                default:
                    guard otherFields?.insert(field).inserted ?? true else { throw duplicate() }
                    if otherFields == nil { otherFields = [field] }
                    _ = try json { s throws(JSONError) in try s.parseValue(depth: 2) }  // tolerated, as by the reference
                }
            } while scanner.consume(UInt8(ascii: ","))
            try json { s throws(JSONError) in try s.expect(UInt8(ascii: "}"), "',' or '}' in a tensor entry") }
        }
        guard let dtypeText else { throw bad("missing \"dtype\"") }
        guard let shape else { throw bad("missing \"shape\"") }
        guard let offsets else { throw bad("missing \"data_offsets\"") }
        guard offsets.count == 2 else { throw bad("data_offsets must hold exactly 2 integers, found \(offsets.count)") }
        guard let dtype = knownDType ?? DType(rawValue: dtypeText) else {
            throw .unknownDType(file: fileName, tensor: name, dtype: dtypeText)
        }
        lastDType = dtype
        return TensorEntry(
            name: name, dtype: dtype, shape: shape, dataBegin: offsets.begin, dataEnd: offsets.end, dataStartInFile: dataStart)
    }

    /// `data_offsets` by the rules of `parseIntArray`, kept as its count and first two values (no array per entry).
    private mutating func parseOffsets(bad: (String) -> CheckpointError) throws(CheckpointError) -> (count: Int, begin: Int, end: Int) {
        let what = "data_offsets"
        guard scanner.peek() == UInt8(ascii: "[") else { throw bad("\(what) must be an array of integers") }
        scanner.skipOne()
        var result = (count: 0, begin: 0, end: 0)
        if scanner.consume(UInt8(ascii: "]")) { return result }
        repeat {
            guard result.count < 64 else { throw bad("\(what) has more than 64 entries") }
            let value: Int
            do {
                value = try scanner.parseNonNegativeInt(what)
            } catch {
                throw bad(error.reason)
            }
            if result.count == 0 { result.begin = value } else if result.count == 1 { result.end = value }
            result.count += 1
        } while scanner.consume(UInt8(ascii: ","))
        try json { s throws(JSONError) in try s.expect(UInt8(ascii: "]"), "',' or ']' in data_offsets") }
        return result
    }

    private mutating func parseIntArray(
        what: String, bad: (String) -> CheckpointError
    ) throws(CheckpointError) -> [Int] {
        guard scanner.peek() == UInt8(ascii: "[") else { throw bad("\(what) must be an array of integers") }
        scanner.skipOne()
        if scanner.consume(UInt8(ascii: "]")) { return [] }
        // Read into the reused scratch array; the result is a shape seen a moment ago when there is one (the
        // experts of a shard share a handful of shapes), so most entries allocate no array of their own.
        scratch.removeAll(keepingCapacity: true)
        repeat {
            guard scratch.count < 64 else { throw bad("\(what) has more than 64 entries") }
            do {
                scratch.append(try scanner.parseNonNegativeInt(what))
            } catch {
                throw bad(error.reason)
            }
        } while scanner.consume(UInt8(ascii: ","))
        // The message is built only when it is needed (this runs once per tensor).
        let closing = what == "shape" ? "',' or ']' in shape" : "',' or ']' in \(what)"
        try json { s throws(JSONError) in try s.expect(UInt8(ascii: "]"), closing) }
        if let known = recentShapes.first(where: { $0 == scratch }) { return known }
        let made = Array(scratch)
        if recentShapes.count < Self.recentShapeCount {
            recentShapes.append(made)
        } else {
            recentShapes[nextRecent] = made
            nextRecent = (nextRecent + 1) % Self.recentShapeCount
        }
        return made
    }
}
