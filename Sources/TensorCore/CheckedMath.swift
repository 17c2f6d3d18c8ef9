import Foundation

/// Overflow-checked arithmetic for sizes computed from untrusted headers.
public enum CheckedMath {
    /// The product of `dims`, or nil when it overflows `Int` or a dimension is negative.
    public static func product(_ dims: [Int]) -> Int? {
        var total = 1
        for dim in dims {
            guard dim >= 0 else { return nil }
            let (next, overflow) = total.multipliedReportingOverflow(by: dim)
            if overflow { return nil }
            total = next
        }
        return total
    }

    public static func multiply(_ a: Int, _ b: Int) -> Int? {
        let (value, overflow) = a.multipliedReportingOverflow(by: b)
        return overflow ? nil : value
    }

    public static func add(_ a: Int, _ b: Int) -> Int? {
        let (value, overflow) = a.addingReportingOverflow(b)
        return overflow ? nil : value
    }

    /// Bytes needed by a tensor of `shape` and `dtype`, or nil on overflow. Sub-byte dtypes must fill whole
    /// bytes (the reference's MisalignedSlice rule): a partial byte also gives nil; see `isWholeBytes`.
    public static func byteCount(shape: [Int], dtype: DType) -> Int? {
        guard let elements = product(shape), let bits = multiply(elements, dtype.bitWidth), bits % 8 == 0 else { return nil }
        return bits / 8
    }

    /// Whether the tensor's bits fill whole bytes (false also when the count overflows).
    public static func isWholeBytes(shape: [Int], dtype: DType) -> Bool {
        guard let elements = product(shape), let bits = multiply(elements, dtype.bitWidth) else { return false }
        return bits % 8 == 0
    }

    /// `a / b` rounded up, for positive `b`.
    public static func ceilDiv(_ a: Int, _ b: Int) -> Int {
        precondition(b > 0, "ceilDiv by a non-positive divisor")
        return a / b + (a % b == 0 ? 0 : 1)
    }
}

/// Formats a shape the way error messages and reports print it: `[7168, 64]`.
public func formatShape(_ shape: [Int]) -> String {
    "[" + shape.map(String.init).joined(separator: ", ") + "]"
}

/// Formats a byte count for humans: `554.27 GiB`.
public func formatBytes(_ bytes: Int) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"]
    var value = Double(bytes)
    var unit = 0
    while value >= 1024, unit < units.count - 1 {
        value /= 1024
        unit += 1
    }
    return unit == 0 ? "\(bytes) B" : String(format: "%.2f %@", value, units[unit])
}

extension String {
    /// Right-aligns the string in `width` columns (numbers in text tables).
    public func leftPadded(_ width: Int) -> String { count >= width ? self : String(repeating: " ", count: width - count) + self }
}
