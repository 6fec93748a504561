import Foundation

/// safetensors: an 8-byte little-endian header length, a JSON header
/// `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}`, then the bytes.
public enum Safetensors {
    /// Reads a file lazily (memory-mapped). Keys are in data-offset order.
    public static func read(path: String) throws -> StateDict {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped)
        } catch {
            throw WeightsError(.io, file: path, error.localizedDescription)
        }
        return try read(data: data, path: path)
    }

    public static func read(data: Data, path: String = "") throws -> StateDict {
        func fail(_ m: String) -> WeightsError { WeightsError(.safetensors, file: path, m) }
        guard data.count >= 8 else { throw fail("file is \(data.count) bytes, shorter than the 8-byte header length") }
        var n: UInt64 = 0
        for i in 0..<8 { n |= UInt64(data[data.startIndex + i]) << (8 * UInt64(i)) }
        guard n <= UInt64(data.count - 8), n <= 100_000_000 else { throw fail("header length \(n) exceeds the file (\(data.count) bytes)") }
        let headerData = data.subdata(in: (data.startIndex + 8)..<(data.startIndex + 8 + Int(n)))
        let json: Any
        do { json = try JSONSerialization.jsonObject(with: headerData) } catch { throw fail("header is not JSON: \(error.localizedDescription)") }
        guard let header = json as? [String: Any] else { throw fail("header is not a JSON object") }
        let base = 8 + Int(n)
        let byteCount = data.count - base
        var items: [(String, WeightDType, [Int], Int, Int)] = []
        for (name, v) in header where name != "__metadata__" {
            guard let info = v as? [String: Any], let dt = info["dtype"] as? String,
                  let shapeAny = info["shape"] as? [Any], let offs = info["data_offsets"] as? [Any], offs.count == 2 else {
                throw fail("tensor '\(name)' has no dtype/shape/data_offsets")
            }
            guard let dtype = WeightDType(rawValue: dt) else { throw WeightsError(.unsupported, file: path, "tensor '\(name)' has dtype \(dt)") }
            var shape: [Int] = []
            var count = 1
            for s in shapeAny {
                guard let d = (s as? NSNumber)?.intValue, d >= 0, d < Int(Int32.max) else { throw fail("tensor '\(name)' has a bad shape") }
                shape.append(d)
                let (c, o) = count.multipliedReportingOverflow(by: d)
                guard !o else { throw fail("tensor '\(name)' shape overflows") }
                count = c
            }
            guard let b = (offs[0] as? NSNumber)?.intValue, let e = (offs[1] as? NSNumber)?.intValue,
                  b >= 0, e >= b, e <= byteCount else {
                throw fail("tensor '\(name)' data_offsets \(offs) outside the \(byteCount) data bytes")
            }
            guard e - b == count * dtype.byteSize else {
                throw fail("tensor '\(name)' of shape \(shape) \(dt) needs \(count * dtype.byteSize) bytes, data_offsets give \(e - b)")
            }
            items.append((name, dtype, shape, b, e))
        }
        items.sort { ($0.3, $0.0) < ($1.3, $1.0) }
        var sd = StateDict(file: path)
        for (name, dtype, shape, b, e) in items {
            sd.add(name, StateDict.Entry(dtype: dtype, shape: shape, load: {
                data.withUnsafeBytes { all in
                    let raw = UnsafeRawBufferPointer(rebasing: all[(base + b)..<(base + e)])
                    var strides = [Int](repeating: 1, count: shape.count)
                    for d in stride(from: shape.count - 2, through: 0, by: -1) { strides[d] = strides[d + 1] * shape[d + 1] }
                    return DTypeConversion.tensor(raw, dtype, offset: 0, shape: shape, strides: strides)
                }
            }))
        }
        return sd
    }

    /// Reads an integer tensor exactly (Int64 values), e.g. codebook indices.
    public static func readInt64(path: String, key: String) throws -> (shape: [Int], values: [Int64]) {
        let data = try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped)
        let sd = try read(data: data, path: path)
        guard let e = sd.entry(key) else { throw WeightsError(.missingKey, file: path, "no tensor '\(key)'") }
        guard e.dtype == .int64 || e.dtype == .int32 else { throw WeightsError(.tensor, file: path, "tensor '\(key)' is \(e.dtype), not an integer type") }
        // Integer values up to 2^24 are exact in Float; larger ones need the raw bytes.
        let t = try e.load()
        return (e.shape, t.scalars.map { Int64($0) })
    }

    /// A tensor to write: Float32 values, stored as F32, or as I64 when `asInt64` is set.
    public struct Item {
        public var name: String
        public var tensor: Tensor
        public var asInt64: Bool
        public init(_ name: String, _ tensor: Tensor, asInt64: Bool = false) {
            self.name = name; self.tensor = tensor; self.asInt64 = asInt64
        }
    }

    /// Serialises tensors (sorted by name, as the reference library does) with optional metadata.
    public static func encode(_ items: [Item], metadata: [String: String] = [:]) throws -> Data {
        let sorted = items.sorted { $0.name < $1.name }
        var header: [String: Any] = [:]
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var offset = 0
        for it in sorted {
            let bytes = it.tensor.count * (it.asInt64 ? 8 : 4)
            header[it.name] = ["dtype": it.asInt64 ? "I64" : "F32", "shape": it.tensor.shape, "data_offsets": [offset, offset + bytes]] as [String: Any]
            offset += bytes
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while (8 + json.count) % 8 != 0 { json.append(0x20) }
        var out = Data(capacity: 8 + json.count + offset)
        var n = UInt64(json.count).littleEndian
        withUnsafeBytes(of: &n) { out.append(contentsOf: $0) }
        out.append(json)
        for it in sorted {
            if it.asInt64 {
                let v = it.tensor.scalars.map { Int64($0.rounded()).littleEndian }
                v.withUnsafeBytes { out.append(contentsOf: $0) }
            } else {
                it.tensor.withUnsafeBufferPointer { out.append(UnsafeBufferPointer(start: $0.baseAddress, count: $0.count)) }
            }
        }
        return out
    }

    public static func write(_ items: [Item], to path: String, metadata: [String: String] = [:]) throws {
        let d = try encode(items, metadata: metadata)
        do { try d.write(to: URL(fileURLWithPath: path)) } catch {
            throw WeightsError(.io, file: path, "cannot write: \(error.localizedDescription)")
        }
    }
}
