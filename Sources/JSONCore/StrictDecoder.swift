import TensorCore

/// A field of an untrusted record that does not fit its type, named by its path (`tensors[3].sources[0].offset`).
public struct StrictDecodingError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The field's path; empty for the document itself.
    public var path: String
    public var reason: String

    public init(path: String, reason: String) {
        self.path = path
        self.reason = reason
    }

    public var description: String { path.isEmpty ? displayed(reason, limit: nil) : "key \"\(displayed(path))\": \(displayed(reason, limit: nil))" }
}

/// Decodes a `Decodable` record from bytes through the strict scanner (`JSONDocument`), never Foundation's
/// `JSONDecoder`: invalid JSON and duplicate keys (the scanner), keys the record does not define, null, a
/// wrong type and a number that is not an exact integer where one is expected are all refused, naming the key.
/// Every keyed type decoded this way must spell its keys as `CodingKey & CaseIterable` (the set of keys it
/// defines); a keyed type without that is refused as a programming error (tests catch it).
public enum StrictJSON {
    public static func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8], maxDepth: Int = 64) throws(StrictDecodingError) -> T {
        let value: JSONValue
        do { value = try JSONDocument.parse(bytes, maxDepth: maxDepth) } catch { throw StrictDecodingError(path: "", reason: error.description) }
        return try decode(type, from: value)
    }

    public static func decode<T: Decodable>(_ type: T.Type, from value: JSONValue) throws(StrictDecodingError) -> T {
        do { return try T(from: StrictValueDecoder(value: value, codingPath: [])) } catch let error as StrictDecodingError {
            throw error
        } catch {
            throw StrictDecodingError(path: "", reason: "\(error)")
        }
    }

    /// `tensors[3].sources[0].offset` for a coding path.
    static func path(_ codingPath: [any CodingKey]) -> String {
        var text = ""
        for key in codingPath {
            if let index = key.intValue, key.stringValue == "Index \(index)" { text += "[\(index)]" } else {
                text += (text.isEmpty ? "" : ".") + key.stringValue
            }
        }
        return text
    }

    static func mismatch(_ value: JSONValue, _ expected: String, _ codingPath: [any CodingKey]) -> StrictDecodingError {
        StrictDecodingError(path: path(codingPath), reason: "expected \(expected), found \(value.kindName)")
    }

    static func keyNames<K: CodingKey & CaseIterable>(_: K.Type) -> [String] { K.allCases.map(\.stringValue) }
}

private struct IndexKey: CodingKey {
    var intValue: Int?
    var stringValue: String { "Index \(intValue ?? 0)" }
    init(_ index: Int) { intValue = index }
    init?(intValue: Int) { self.intValue = intValue }
    init?(stringValue: String) { nil }
}

private func exactInteger<T: FixedWidthInteger>(_ value: JSONValue, _ type: T.Type, _ codingPath: [any CodingKey]) throws(StrictDecodingError) -> T {
    guard let text = value.numberText else { throw StrictJSON.mismatch(value, "an integer", codingPath) }
    guard let n = T(text) else {
        throw StrictDecodingError(path: StrictJSON.path(codingPath), reason: "\(displayed(text)) is not an integer in the range of \(T.self)")
    }
    return n
}

private func floating(_ value: JSONValue, _ codingPath: [any CodingKey]) throws(StrictDecodingError) -> Double {
    guard let d = value.doubleValue, d.isFinite else { throw StrictJSON.mismatch(value, "a number", codingPath) }
    return d
}

private struct StrictValueDecoder: Decoder {
    let value: JSONValue
    let codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        guard let object = value.objectValue else { throw StrictJSON.mismatch(value, "an object", codingPath) }
        guard let known = Key.self as? any (CodingKey & CaseIterable).Type else {
            throw StrictDecodingError(path: StrictJSON.path(codingPath), reason: "\(Key.self) does not list its keys (CaseIterable)")
        }
        let names = Set(StrictJSON.keyNames(known).map { ByteName($0) })
        for key in object.keys where !names.contains(ByteName(key)) {
            throw StrictDecodingError(path: StrictJSON.path(codingPath), reason: "unknown key \"\(displayed(key))\"")
        }
        return KeyedDecodingContainer(StrictKeyedContainer<Key>(object: object, codingPath: codingPath))
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        guard let items = value.arrayValue else { throw StrictJSON.mismatch(value, "an array", codingPath) }
        return StrictUnkeyedContainer(items: items, codingPath: codingPath)
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer { StrictSingleValue(value: value, codingPath: codingPath) }
}

private struct StrictSingleValue: SingleValueDecodingContainer {
    let value: JSONValue
    let codingPath: [any CodingKey]

    func decodeNil() -> Bool { value.isNull }
    func decode(_ type: Bool.Type) throws -> Bool {
        guard let b = value.boolValue else { throw StrictJSON.mismatch(value, "a boolean", codingPath) }
        return b
    }
    func decode(_ type: String.Type) throws -> String {
        guard let s = value.stringValue else { throw StrictJSON.mismatch(value, "a string", codingPath) }
        return s
    }
    func decode(_ type: Double.Type) throws -> Double { try floating(value, codingPath) }
    func decode(_ type: Float.Type) throws -> Float { Float(try floating(value, codingPath)) }
    func decode(_ type: Int.Type) throws -> Int { try exactInteger(value, type, codingPath) }
    func decode(_ type: Int8.Type) throws -> Int8 { try exactInteger(value, type, codingPath) }
    func decode(_ type: Int16.Type) throws -> Int16 { try exactInteger(value, type, codingPath) }
    func decode(_ type: Int32.Type) throws -> Int32 { try exactInteger(value, type, codingPath) }
    func decode(_ type: Int64.Type) throws -> Int64 { try exactInteger(value, type, codingPath) }
    func decode(_ type: UInt.Type) throws -> UInt { try exactInteger(value, type, codingPath) }
    func decode(_ type: UInt8.Type) throws -> UInt8 { try exactInteger(value, type, codingPath) }
    func decode(_ type: UInt16.Type) throws -> UInt16 { try exactInteger(value, type, codingPath) }
    func decode(_ type: UInt32.Type) throws -> UInt32 { try exactInteger(value, type, codingPath) }
    func decode(_ type: UInt64.Type) throws -> UInt64 { try exactInteger(value, type, codingPath) }
    func decode<T: Decodable>(_ type: T.Type) throws -> T { try T(from: StrictValueDecoder(value: value, codingPath: codingPath)) }
}

private struct StrictKeyedContainer<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let object: JSONObject
    let codingPath: [any CodingKey]

    var allKeys: [Key] { object.keys.compactMap { Key(stringValue: $0) } }
    func contains(_ key: Key) -> Bool { object[key.stringValue] != nil }

    /// The value of a key the record needs (null fails as the wrong type).
    private func present(_ key: Key) throws(StrictDecodingError) -> StrictSingleValue {
        guard let value = object[key.stringValue] else {
            throw StrictDecodingError(path: StrictJSON.path(codingPath), reason: "missing required key \"\(displayed(key.stringValue))\"")
        }
        return StrictSingleValue(value: value, codingPath: codingPath + [key])
    }

    /// Absent: nil. Null is refused rather than read as absent (our writers omit an absent value).
    func decodeNil(forKey key: Key) throws -> Bool {
        guard let value = object[key.stringValue] else { return true }
        guard !value.isNull else { throw StrictDecodingError(path: StrictJSON.path(codingPath + [key]), reason: "null is not a value: an absent optional key is omitted") }
        return false
    }
    func decode(_ type: Bool.Type, forKey key: Key) throws -> Bool { try present(key).decode(type) }
    func decode(_ type: String.Type, forKey key: Key) throws -> String { try present(key).decode(type) }
    func decode(_ type: Double.Type, forKey key: Key) throws -> Double { try present(key).decode(type) }
    func decode(_ type: Float.Type, forKey key: Key) throws -> Float { try present(key).decode(type) }
    func decode(_ type: Int.Type, forKey key: Key) throws -> Int { try present(key).decode(type) }
    func decode(_ type: Int8.Type, forKey key: Key) throws -> Int8 { try present(key).decode(type) }
    func decode(_ type: Int16.Type, forKey key: Key) throws -> Int16 { try present(key).decode(type) }
    func decode(_ type: Int32.Type, forKey key: Key) throws -> Int32 { try present(key).decode(type) }
    func decode(_ type: Int64.Type, forKey key: Key) throws -> Int64 { try present(key).decode(type) }
    func decode(_ type: UInt.Type, forKey key: Key) throws -> UInt { try present(key).decode(type) }
    func decode(_ type: UInt8.Type, forKey key: Key) throws -> UInt8 { try present(key).decode(type) }
    func decode(_ type: UInt16.Type, forKey key: Key) throws -> UInt16 { try present(key).decode(type) }
    func decode(_ type: UInt32.Type, forKey key: Key) throws -> UInt32 { try present(key).decode(type) }
    func decode(_ type: UInt64.Type, forKey key: Key) throws -> UInt64 { try present(key).decode(type) }
    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T { try present(key).decode(type) }

    func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws -> KeyedDecodingContainer<NestedKey> {
        let value = try present(key)
        return try StrictValueDecoder(value: value.value, codingPath: value.codingPath).container(keyedBy: type)
    }

    func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
        let value = try present(key)
        return try StrictValueDecoder(value: value.value, codingPath: value.codingPath).unkeyedContainer()
    }

    func superDecoder() throws -> any Decoder {
        throw StrictDecodingError(path: StrictJSON.path(codingPath), reason: "a record decoded strictly has no super decoder")
    }

    func superDecoder(forKey key: Key) throws -> any Decoder { try superDecoder() }
}

private struct StrictUnkeyedContainer: UnkeyedDecodingContainer {
    let items: [JSONValue]
    let codingPath: [any CodingKey]
    var currentIndex = 0
    var count: Int? { items.count }
    var isAtEnd: Bool { currentIndex >= items.count }

    init(items: [JSONValue], codingPath: [any CodingKey]) {
        self.items = items
        self.codingPath = codingPath
    }

    private mutating func next() throws(StrictDecodingError) -> StrictSingleValue {
        guard !isAtEnd else { throw StrictDecodingError(path: StrictJSON.path(codingPath), reason: "the array ends early") }
        let value = items[currentIndex]
        let path = codingPath + [IndexKey(currentIndex)]
        currentIndex += 1
        return StrictSingleValue(value: value, codingPath: path)
    }

    mutating func decodeNil() throws -> Bool {
        guard !isAtEnd, items[currentIndex].isNull else { return false }
        currentIndex += 1
        return true
    }

    mutating func decode(_ type: Bool.Type) throws -> Bool { try next().decode(type) }
    mutating func decode(_ type: String.Type) throws -> String { try next().decode(type) }
    mutating func decode(_ type: Double.Type) throws -> Double { try next().decode(type) }
    mutating func decode(_ type: Float.Type) throws -> Float { try next().decode(type) }
    mutating func decode(_ type: Int.Type) throws -> Int { try next().decode(type) }
    mutating func decode(_ type: Int8.Type) throws -> Int8 { try next().decode(type) }
    mutating func decode(_ type: Int16.Type) throws -> Int16 { try next().decode(type) }
    mutating func decode(_ type: Int32.Type) throws -> Int32 { try next().decode(type) }
    mutating func decode(_ type: Int64.Type) throws -> Int64 { try next().decode(type) }
    mutating func decode(_ type: UInt.Type) throws -> UInt { try next().decode(type) }
    mutating func decode(_ type: UInt8.Type) throws -> UInt8 { try next().decode(type) }
    mutating func decode(_ type: UInt16.Type) throws -> UInt16 { try next().decode(type) }
    mutating func decode(_ type: UInt32.Type) throws -> UInt32 { try next().decode(type) }
    mutating func decode(_ type: UInt64.Type) throws -> UInt64 { try next().decode(type) }
    mutating func decode<T: Decodable>(_ type: T.Type) throws -> T { try next().decode(type) }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws -> KeyedDecodingContainer<NestedKey> {
        let value = try next()
        return try StrictValueDecoder(value: value.value, codingPath: value.codingPath).container(keyedBy: type)
    }

    mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer {
        let value = try next()
        return try StrictValueDecoder(value: value.value, codingPath: value.codingPath).unkeyedContainer()
    }

    mutating func superDecoder() throws -> any Decoder {
        throw StrictDecodingError(path: StrictJSON.path(codingPath), reason: "a record decoded strictly has no super decoder")
    }
}
