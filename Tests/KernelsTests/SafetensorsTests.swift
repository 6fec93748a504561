import Foundation
import XCTest
import Kernels

final class SafetensorsTests: XCTestCase {
    func testRoundTrip() throws {
        let a = Tensor(shape: [2, 3], data: [1, -2, 3.25, 4, 5, 6e-8])
        let idx = Tensor(shape: [4], data: [0, 7, 16383, 2])
        let data = try Safetensors.encode([.init("w", a), .init("i", idx, asInt64: true)], metadata: ["format": "pt"])
        let sd = try Safetensors.read(data: data)
        XCTAssertEqual(Set(sd.keys), ["w", "i"])
        XCTAssertEqual(try sd.tensor("w").scalars, a.scalars)
        XCTAssertEqual(sd.entry("i")?.dtype, .int64)
        XCTAssertEqual(try sd.tensor("i").scalars, idx.scalars)
        XCTAssertEqual(try sd.tensor("w", shape: [2, 3]).shape, [2, 3])
        XCTAssertThrowsError(try sd.tensor("w", shape: [3, 2]))
        XCTAssertThrowsError(try sd.tensor("missing"))
    }

    func testReadsPythonWrittenGolden() throws {
        let g = try Fixtures.golden
        XCTAssertEqual(g.shape("vqgan.encode.input"), [1, 1, 16, 16, 16])
        XCTAssertEqual(g.entry("vqgan.quantize.indices")?.dtype, .int64)
    }

    func testMalformedHeadersThrow() throws {
        let good = try Safetensors.encode([.init("w", Tensor(shape: [4], data: [1, 2, 3, 4]))])
        for cut in [0, 4, 8, 20, good.count - 1] {
            XCTAssertThrowsError(try Safetensors.read(data: good.prefix(cut)), "cut \(cut)")
        }
        var huge = good
        huge[0] = 0xFF; huge[5] = 0x7F
        XCTAssertThrowsError(try Safetensors.read(data: huge))
        func file(_ json: String, payload: Int) -> Data {
            var d = Data()
            var n = UInt64(json.utf8.count).littleEndian
            withUnsafeBytes(of: &n) { d.append(contentsOf: $0) }
            d.append(contentsOf: Array(json.utf8))
            d.append(Data(count: payload))
            return d
        }
        XCTAssertThrowsError(try Safetensors.read(data: file(#"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,100]}}"#, payload: 16)))
        XCTAssertThrowsError(try Safetensors.read(data: file(#"{"w":{"dtype":"F32","shape":[5],"data_offsets":[0,16]}}"#, payload: 16)))
        XCTAssertThrowsError(try Safetensors.read(data: file(#"{"w":{"dtype":"Q7","shape":[4],"data_offsets":[0,16]}}"#, payload: 16)))
        XCTAssertThrowsError(try Safetensors.read(data: file(#"[1,2]"#, payload: 0)))
        XCTAssertNoThrow(try Safetensors.read(data: file(#"{"w":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}}"#, payload: 4)))
    }

    func testHalfAndBFloat16Conversion() throws {
        // F16 1.0 = 0x3C00, -2.0 = 0xC000; BF16 1.5 = 0x3FC0.
        let json = #"{"h":{"dtype":"F16","shape":[2],"data_offsets":[0,4]},"b":{"dtype":"BF16","shape":[1],"data_offsets":[4,6]}}"#
        var d = Data()
        var n = UInt64(json.utf8.count).littleEndian
        withUnsafeBytes(of: &n) { d.append(contentsOf: $0) }
        d.append(contentsOf: Array(json.utf8))
        d.append(contentsOf: [0x00, 0x3C, 0x00, 0xC0, 0xC0, 0x3F])
        let sd = try Safetensors.read(data: d)
        XCTAssertEqual(try sd.tensor("h").scalars, [1, -2])
        XCTAssertEqual(try sd.tensor("b").scalars, [1.5])
    }
}
