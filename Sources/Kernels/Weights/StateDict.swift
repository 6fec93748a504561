import Foundation

/// Named tensors from a checkpoint, read lazily: `keys` in file order, each with its stored
/// dtype and shape; `tensor(_:)` materialises one as a contiguous Float32 `Tensor`.
public struct StateDict {
    public struct Entry {
        public let dtype: WeightDType
        public let shape: [Int]
        let load: () throws -> Tensor
    }

    public let file: String
    public private(set) var keys: [String] = []
    private var entries: [String: Entry] = [:]

    public init(file: String) { self.file = file }

    public mutating func add(_ key: String, _ entry: Entry) {
        if entries[key] == nil { keys.append(key) }
        entries[key] = entry
    }

    public mutating func add(_ key: String, tensor: Tensor) {
        add(key, Entry(dtype: .float32, shape: tensor.shape, load: { tensor }))
    }

    public func entry(_ key: String) -> Entry? { entries[key] }
    public func contains(_ key: String) -> Bool { entries[key] != nil }
    public func shape(_ key: String) -> [Int]? { entries[key]?.shape }

    /// The tensor under `key`, converted to Float32; a missing key is an error naming it.
    public func tensor(_ key: String) throws -> Tensor {
        guard let e = entries[key] else {
            throw WeightsError(.missingKey, file: file, "no tensor '\(key)'")
        }
        return try e.load()
    }

    /// The tensor under `key`, which must have exactly `shape`.
    public func tensor(_ key: String, shape: [Int]) throws -> Tensor {
        guard let e = entries[key] else {
            throw WeightsError(.missingKey, file: file, "no tensor '\(key)' (expected shape \(shape))")
        }
        guard e.shape == shape else {
            throw WeightsError(.shapeMismatch, file: file, "tensor '\(key)' has shape \(e.shape), expected \(shape)")
        }
        let t = try e.load()
        return t.reshaped(shape)
    }

    /// The entries whose key starts with `prefix`, with the prefix removed.
    public func subdict(prefix: String) -> StateDict {
        var d = StateDict(file: file)
        for k in keys where k.hasPrefix(prefix) {
            d.add(String(k.dropFirst(prefix.count)), entries[k]!)
        }
        return d
    }
}

/// Conversion of raw little-endian elements to Float32.
enum DTypeConversion {
    /// Reads element `i` of a buffer of `dtype` values as Float.
    @inline(__always)
    static func float(_ raw: UnsafeRawBufferPointer, _ dtype: WeightDType, _ i: Int) -> Float {
        switch dtype {
        case .float32: return raw.loadUnaligned(fromByteOffset: 4 * i, as: Float.self)
        case .float64: return Float(raw.loadUnaligned(fromByteOffset: 8 * i, as: Double.self))
        case .float16: return Float(halfBits: raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
        case .bfloat16: return Float(bitPattern: UInt32(raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) << 16)
        case .int64: return Float(raw.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self))
        case .int32: return Float(raw.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self))
        case .int16: return Float(raw.loadUnaligned(fromByteOffset: 2 * i, as: Int16.self))
        case .int8: return Float(raw.load(fromByteOffset: i, as: Int8.self))
        case .uint8: return Float(raw.load(fromByteOffset: i, as: UInt8.self))
        case .bool: return raw.load(fromByteOffset: i, as: UInt8.self) != 0 ? 1 : 0
        }
    }

    /// Materialises a strided view (`offset`, `shape`, `strides` in elements) as a contiguous tensor.
    static func tensor(_ raw: UnsafeRawBufferPointer, _ dtype: WeightDType, offset: Int, shape: [Int], strides: [Int]) -> Tensor {
        var t = Tensor(uninitialized: shape)
        let n = t.count
        if n == 0 { return t }
        t.withUnsafeMutableBufferPointer { out in
            var contiguous = true
            var expect = 1
            for d in stride(from: shape.count - 1, through: 0, by: -1) where shape[d] != 1 {
                if strides[d] != expect { contiguous = false; break }
                expect *= shape[d]
            }
            if contiguous && dtype == .float32 {

                memcpy(out.baseAddress!, raw.baseAddress! + 4 * offset, 4 * n)
                return
            }
            if contiguous {
                for i in 0..<n { out[i] = float(raw, dtype, offset + i) }
                return
            }
            var index = [Int](repeating: 0, count: shape.count)
            var src = offset
            for i in 0..<n {
                out[i] = float(raw, dtype, src)
                var d = shape.count - 1
                while d >= 0 {
                    index[d] += 1
                    src += strides[d]
                    if index[d] < shape[d] { break }
                    src -= strides[d] * shape[d]
                    index[d] = 0
                    d -= 1
                }
            }
        }
        return t
    }
}

extension Float {
    /// IEEE 754 binary16 bits to Float (portable: no reliance on the Float16 type).
    init(halfBits h: UInt16) {
        let sign = UInt32(h & 0x8000) << 16
        let exp = Int((h >> 10) & 0x1F)
        let frac = UInt32(h & 0x3FF)
        if exp == 0 {
            let v = Float(frac) * Float(sign: .plus, exponent: -24, significand: 1)
            self = sign != 0 ? -v : v
        } else if exp == 31 {
            self = Float(bitPattern: sign | 0x7F80_0000 | (frac << 13))
        } else {
            self = Float(bitPattern: sign | UInt32(exp - 15 + 127) << 23 | (frac << 13))
        }
    }
}
