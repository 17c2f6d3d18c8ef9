/// GGUF metadata value types (the u32 before each value).
public enum GGUFValueType: UInt32, Sendable, CaseIterable {
    case u8 = 0, i8 = 1, u16 = 2, i16 = 3, u32 = 4, i32 = 5, f32 = 6, bool = 7, string = 8, array = 9, u64 = 10, i64 = 11, f64 = 12

    public var name: String {
        switch self {
        case .u8: "u8"
        case .i8: "i8"
        case .u16: "u16"
        case .i16: "i16"
        case .u32: "u32"
        case .i32: "i32"
        case .f32: "f32"
        case .bool: "bool"
        case .string: "string"
        case .array: "array"
        case .u64: "u64"
        case .i64: "i64"
        case .f64: "f64"
        }
    }

    /// The fewest bytes one value of this type takes in a file (bounds array counts before allocation).
    var minimumBytes: Int {
        switch self {
        case .u8, .i8, .bool: 1
        case .u16, .i16: 2
        case .u32, .i32, .f32: 4
        case .u64, .i64, .f64, .string: 8
        case .array: 12
        }
    }
}

/// One metadata value.
public enum GGUFValue: Sendable, Equatable {
    case u8(UInt8)
    case i8(Int8)
    case u16(UInt16)
    case i16(Int16)
    case u32(UInt32)
    case i32(Int32)
    case f32(Float)
    case bool(Bool)
    case string(String)
    case u64(UInt64)
    case i64(Int64)
    case f64(Double)
    case array(GGUFArray)

    public var type: GGUFValueType {
        switch self {
        case .u8: .u8
        case .i8: .i8
        case .u16: .u16
        case .i16: .i16
        case .u32: .u32
        case .i32: .i32
        case .f32: .f32
        case .bool: .bool
        case .string: .string
        case .u64: .u64
        case .i64: .i64
        case .f64: .f64
        case .array: .array
        }
    }

    /// The type as a reader would say it: `u32`, `array of string`.
    public var typeName: String {
        if case let .array(a) = self { return "array of \(a.elementTypeName)" }
        return type.name
    }

    /// Any integer type whose value fits `Int`.
    public var intValue: Int? {
        switch self {
        case let .u8(v): Int(v)
        case let .i8(v): Int(v)
        case let .u16(v): Int(v)
        case let .i16(v): Int(v)
        case let .u32(v): Int(v)
        case let .i32(v): Int(v)
        case let .u64(v): Int(exactly: v)
        case let .i64(v): Int(v)
        default: nil
        }
    }

    /// A float or an integer, as a Double.
    public var doubleValue: Double? {
        switch self {
        case let .f32(v): Double(v)
        case let .f64(v): v
        default: intValue.map(Double.init)
        }
    }

    public var stringValue: String? {
        if case let .string(s) = self { return s }
        return nil
    }

    public var boolValue: Bool? {
        if case let .bool(b) = self { return b }
        return nil
    }

    public var arrayValue: GGUFArray? {
        if case let .array(a) = self { return a }
        return nil
    }

    /// A short rendering for reports: scalars as they are, strings quoted, arrays by type and length.
    public var summary: String {
        switch self {
        case let .u8(v): "\(v)"
        case let .i8(v): "\(v)"
        case let .u16(v): "\(v)"
        case let .i16(v): "\(v)"
        case let .u32(v): "\(v)"
        case let .i32(v): "\(v)"
        case let .f32(v): "\(v)"
        case let .bool(v): "\(v)"
        case let .string(s): "\"\(s)\""
        case let .u64(v): "\(v)"
        case let .i64(v): "\(v)"
        case let .f64(v): "\(v)"
        case let .array(a): "[\(a.count) × \(a.elementTypeName)]"
        }
    }
}

/// A metadata array, stored by element type (a 160,000-token vocabulary is one `[String]`, not 160,000 enums).
public indirect enum GGUFArray: Sendable, Equatable {
    case u8([UInt8])
    case i8([Int8])
    case u16([UInt16])
    case i16([Int16])
    case u32([UInt32])
    case i32([Int32])
    case f32([Float])
    case bool([Bool])
    case string([String])
    case u64([UInt64])
    case i64([Int64])
    case f64([Double])
    case array([GGUFArray])

    public var count: Int {
        switch self {
        case let .u8(a): a.count
        case let .i8(a): a.count
        case let .u16(a): a.count
        case let .i16(a): a.count
        case let .u32(a): a.count
        case let .i32(a): a.count
        case let .f32(a): a.count
        case let .bool(a): a.count
        case let .string(a): a.count
        case let .u64(a): a.count
        case let .i64(a): a.count
        case let .f64(a): a.count
        case let .array(a): a.count
        }
    }

    public var elementType: GGUFValueType {
        switch self {
        case .u8: .u8
        case .i8: .i8
        case .u16: .u16
        case .i16: .i16
        case .u32: .u32
        case .i32: .i32
        case .f32: .f32
        case .bool: .bool
        case .string: .string
        case .u64: .u64
        case .i64: .i64
        case .f64: .f64
        case .array: .array
        }
    }

    var elementTypeName: String {
        if case let .array(inner) = self { return "array of \(inner.first?.elementTypeName ?? "?")" }
        return elementType.name
    }

    /// Every element as an Int, when the elements are integers that fit.
    public var intValues: [Int]? {
        switch self {
        case let .u8(a): a.map(Int.init)
        case let .i8(a): a.map(Int.init)
        case let .u16(a): a.map(Int.init)
        case let .i16(a): a.map(Int.init)
        case let .u32(a): a.map(Int.init)
        case let .i32(a): a.map(Int.init)
        case let .i64(a): a.map(Int.init)
        case let .u64(a):
            a.allSatisfy { $0 <= UInt64(Int.max) } ? a.map { Int($0) } : nil
        default: nil
        }
    }

    public var stringValues: [String]? {
        if case let .string(a) = self { return a }
        return nil
    }
}
