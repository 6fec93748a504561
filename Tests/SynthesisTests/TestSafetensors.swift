import Foundation

/// A minimal safetensors reader for tests (u64 little-endian header length, JSON header,
/// raw little-endian data). F32 tensors only; enough for the golden fixtures.
struct TestSafetensors {
    struct Entry { var dtype: String; var shape: [Int]; var begin: Int; var end: Int }
    let data: Data
    let entries: [String: Entry]
    let headerEnd: Int

    init(path: String) throws {
        data = try Data(contentsOf: URL(fileURLWithPath: path))
        guard data.count >= 8 else { throw NSError(domain: "safetensors: \(path) is shorter than 8 bytes", code: 1) }
        var n: UInt64 = 0
        for i in 0..<8 { n |= UInt64(data[data.startIndex + i]) << (8 * UInt64(i)) }
        headerEnd = 8 + Int(n)
        let header = try JSONSerialization.jsonObject(with: data.subdata(in: 8..<headerEnd)) as? [String: Any] ?? [:]
        var e: [String: Entry] = [:]
        for (k, v) in header where k != "__metadata__" {
            guard let d = v as? [String: Any], let dtype = d["dtype"] as? String,
                  let shape = d["shape"] as? [Int], let off = d["data_offsets"] as? [Int] else { continue }
            e[k] = Entry(dtype: dtype, shape: shape, begin: off[0], end: off[1])
        }
        entries = e
    }

    func floats(_ key: String) throws -> (shape: [Int], values: [Float]) {
        guard let e = entries[key] else { throw NSError(domain: "safetensors: no tensor \(key)", code: 2) }
        guard e.dtype == "F32" else { throw NSError(domain: "safetensors: \(key) is \(e.dtype), not F32", code: 3) }
        let bytes = data.subdata(in: (headerEnd + e.begin)..<(headerEnd + e.end))
        let values = bytes.withUnsafeBytes { raw in
            (0..<(bytes.count / 4)).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self))) }
        }
        return (e.shape, values)
    }
}

/// Paths relative to the package root (tests run with the package as working directory).
enum SharedPaths {
    static var packageRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }
    static func shared(_ relative: String) -> String {
        packageRoot.appendingPathComponent("../shared").appendingPathComponent(relative).standardized.path
    }
}
