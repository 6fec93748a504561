import Kernels
import Wire
import XCTest

final class PatchMessageTests: XCTestCase {
    /// A message with every header field set to a non-default value and payloads of every kind.
    static func sample(side: Int = 6) -> PatchMessage {
        let n = side * side * side
        let ct = Tensor(shape: [1, side, side, side], data: (0..<n).map { Float($0) * 0.25 - 3 })
        let latent = Tensor(shape: [8, 2, 3, 4], data: (0..<192).map { Float(sin(Double($0))) })
        let label = (0..<n).map { UInt8($0 % 3) }
        let mask = (0..<n).map { UInt8($0 % 7 == 0 ? 1 : 0) }
        let int16 = [UInt8](repeating: 0xAB, count: 2 * 5)
        return PatchMessage(
            patchID: 0xDEAD_BEEF_0123, sourceCase: "liver_17.nii.gz", seed: UInt64.max - 5, organ: .pancreas,
            tumorType: .medium, synthesize: true, volumeShape: [512, 512, 301], patchOrigin: [100, 0, 205],
            spacing: [0.75, 0.8, 1.5], affine: (0..<16).map { Double($0) * -1.5 + 0.125 },
            payloads: [
                Payload(name: Payload.ct, data: .float32(ct)),
                Payload(name: Payload.label, data: .uint8(label, shape: [side, side, side])),
                Payload(name: Payload.tumorMask, data: .uint8(mask, shape: [1, side, side, side])),
                Payload(name: Payload.latent, data: .float32(latent)),
                Payload(name: "hu_raw", data: .raw(int16, dtype: .int16, shape: [5])),
            ],
            provenance: [
                StageTiming(stage: "loader", replica: 0, host: "node-a", startedUnix: 1_790_000_000.5, seconds: 0.25),
                StageTiming(stage: "sampler", replica: 3, host: "", startedUnix: 1_790_000_001.25, seconds: 1.5),
            ],
            createdUnix: 1_789_999_999.75, endOfStream: false)
    }

    static func assertSamePayloads(_ a: PatchMessage, _ b: PatchMessage, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.payloads.map(\.name), b.payloads.map(\.name), file: file, line: line)
        for (p, q) in zip(a.payloads, b.payloads) {
            XCTAssertEqual(p.data.dtype, q.data.dtype, p.name, file: file, line: line)
            XCTAssertEqual(p.data.shape, q.data.shape, p.name, file: file, line: line)
            XCTAssertEqual(p.data.byteCount, q.data.byteCount, p.name, file: file, line: line)
            XCTAssertEqual(p.data.bytes, q.data.bytes, p.name, file: file, line: line)
            if p.data.dtype == .float32 {
                XCTAssertEqual(p.data.tensor?.scalars, q.data.tensor?.scalars, p.name, file: file, line: line)
                XCTAssertEqual(p.data.tensor?.shape, q.data.tensor?.shape, p.name, file: file, line: line)
            }
        }
    }

    static func assertSameHeader(_ a: PatchMessage, _ b: PatchMessage, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.patchID, b.patchID, file: file, line: line)
        XCTAssertEqual(a.sourceCase, b.sourceCase, file: file, line: line)
        XCTAssertEqual(a.seed, b.seed, file: file, line: line)
        XCTAssertEqual(a.organ, b.organ, file: file, line: line)
        XCTAssertEqual(a.tumorType, b.tumorType, file: file, line: line)
        XCTAssertEqual(a.synthesize, b.synthesize, file: file, line: line)
        XCTAssertEqual(a.volumeShape, b.volumeShape, file: file, line: line)
        XCTAssertEqual(a.patchOrigin, b.patchOrigin, file: file, line: line)
        XCTAssertEqual(a.spacing, b.spacing, file: file, line: line)
        XCTAssertEqual(a.affine, b.affine, file: file, line: line)
        XCTAssertEqual(a.provenance, b.provenance, file: file, line: line)
        XCTAssertEqual(a.createdUnix, b.createdUnix, file: file, line: line)
        XCTAssertEqual(a.endOfStream, b.endOfStream, file: file, line: line)
    }

    func roundTrip(_ m: PatchMessage) throws -> PatchMessage {
        try PatchMessage.decode(frames: m.encode().map(ZMQFrame.init))
    }

    func testRoundTripKeepsEveryHeaderFieldAndPayload() throws {
        let m = Self.sample()
        let frames = m.encode()
        XCTAssertEqual(frames.count, 1 + m.payloads.count)
        XCTAssertEqual(frames.dropFirst().map(\.byteCount), m.payloads.map(\.data.byteCount))
        let d = try roundTrip(m)
        Self.assertSameHeader(m, d)
        Self.assertSamePayloads(m, d)
        XCTAssertEqual(d.tensor(Payload.ct)?.shape, [1, 6, 6, 6])
        XCTAssertEqual(d.bytes(Payload.label)?.shape, [6, 6, 6])
        XCTAssertNil(d.tensor(Payload.label), "a uint8 payload is not a Float32 tensor")
        XCTAssertEqual(d.bytes(Payload.label)?.bytes, m.bytes(Payload.label)?.bytes)
        XCTAssertNil(d.bytes(Payload.ct), "a float32 payload is not uint8")
    }

    func testDecodedPayloadsAreUncopiedFramesUntilMaterialized() throws {
        let m = Self.sample()
        let d = try roundTrip(m)
        guard case .received(let r)? = d.payload(Payload.ct) else { return XCTFail("expected a received frame") }
        XCTAssertEqual(r.dtype, .float32)
        XCTAssertEqual(r.shape, [1, 6, 6, 6])
        r.withUnsafeBytes { XCTAssertEqual($0.load(fromByteOffset: 4, as: Float.self), -2.75) }
        let owned = d.materialized()
        guard case .float32(let t)? = owned.payload(Payload.ct) else { return XCTFail("expected an owned tensor") }
        XCTAssertEqual(t.scalars, m.tensor(Payload.ct)?.scalars)
        guard case .uint8(let b, let shape)? = owned.payload(Payload.label) else { return XCTFail("expected owned bytes") }
        XCTAssertEqual(shape, [6, 6, 6])
        XCTAssertEqual(b, m.bytes(Payload.label)?.bytes)
        guard case .raw(_, let dtype, _)? = owned.payload("hu_raw") else { return XCTFail("expected raw bytes") }
        XCTAssertEqual(dtype, .int16)
        // A decoded message re-encodes (forwarding its frames) to the same bytes.
        let again = try roundTrip(d)
        Self.assertSameHeader(m, again)
        Self.assertSamePayloads(m, again)
    }

    func testEveryEnumValueRoundTrips() throws {
        for organ in Organ.allCases {
            for tumor in TumorType.allCases {
                let d = try roundTrip(PatchMessage(patchID: 1, organ: organ, tumorType: tumor))
                XCTAssertEqual(d.organ, organ)
                XCTAssertEqual(d.tumorType, tumor)
            }
        }
    }

    func testDefaultsAndEndOfStreamRoundTrip() throws {
        let d = try roundTrip(.endOfStream(patchID: 42))
        XCTAssertTrue(d.endOfStream)
        XCTAssertEqual(d.patchID, 42)
        XCTAssertTrue(d.payloads.isEmpty)
        XCTAssertEqual(d.sourceCase, "")
        XCTAssertEqual(d.spacing, [])
    }

    func testRealSizePatchRoundTrips() throws {
        var m = Self.sample(side: 96)
        m.removePayload("hu_raw")
        let d = try roundTrip(m)
        XCTAssertEqual(d.payloadByteCount, 96 * 96 * 96 * 6 + 192 * 4)
        Self.assertSamePayloads(m, d)
    }

    // MARK: rejection

    func assertRejected(_ frames: [ZMQFrame], _ code: WireError.Code, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try PatchMessage.decode(frames: frames), file: file, line: line) { error in
            guard let e = error as? WireError else { return XCTFail("not a WireError: \(error)", file: file, line: line) }
            XCTAssertEqual(e.code, code, e.description, file: file, line: line)
            XCTAssertFalse(e.reason.isEmpty, file: file, line: line)
        }
    }

    func frames(_ m: PatchMessage) -> [ZMQFrame] { m.encode().map(ZMQFrame.init) }

    func testGarbageHeaderIsMalformed() {
        assertRejected([ZMQFrame(copying: [0xFF, 0xFF, 0xFF, 0xFF])], .malformed)
        var header = Self.sample().encodeHeader()
        header.removeLast(7)  // cut inside a length-delimited field
        assertRejected([ZMQFrame(copying: header)], .malformed)
    }

    func testEmptyMessageIsTruncated() {
        assertRejected([], .truncated)
    }

    func testMissingPayloadFrameIsTruncated() {
        var f = frames(Self.sample())
        f.removeLast()
        assertRejected(f, .truncated)
    }

    func testShortPayloadFrameIsTruncated() {
        var f = frames(Self.sample())
        var ct = f[1].bytes
        ct.removeLast(4)
        f[1] = ZMQFrame(copying: ct)
        assertRejected(f, .truncated)
    }

    func testLongPayloadFrameAndExtraFrameAreRejected() {
        var f = frames(Self.sample())
        f[2] = ZMQFrame(copying: f[2].bytes + [0])
        assertRejected(f, .badPayload)
        assertRejected(frames(Self.sample()) + [ZMQFrame(copying: [1, 2, 3])], .malformed)
    }

    func testWrongSchemaVersionIsRejected() {
        var header = Self.sample().encodeHeader()
        XCTAssertEqual(Array(header.prefix(2)), [0x08, 0x01], "field 1 (schema_version) leads the header")
        header[1] = 0x02
        var f = frames(Self.sample())
        f[0] = ZMQFrame(copying: header)
        assertRejected(f, .wrongVersion)

        // No version at all (field 1 absent) reads as version 0.
        f[0] = ZMQFrame(copying: Array(Self.sample().encodeHeader().dropFirst(2)))
        assertRejected(f, .wrongVersion)

        // A multi-byte version varint (300).
        f[0] = ZMQFrame(copying: [0x08, 0xAC, 0x02] + Array(Self.sample().encodeHeader().dropFirst(2)))
        assertRejected(f, .wrongVersion)
    }

    func testUnknownEnumValueIsMalformed() {
        var header = Self.sample().encodeHeader()
        // organ is field 5, varint: tag 0x28. PANCREAS (2) is encoded as 0x28 0x02.
        guard let i = (0..<header.count - 1).first(where: { header[$0] == 0x28 && header[$0 + 1] == 0x02 }) else {
            return XCTFail("organ field not found")
        }
        header[i + 1] = 0x09
        var f = frames(Self.sample())
        f[0] = ZMQFrame(copying: header)
        assertRejected(f, .malformed)
    }

    func testDuplicatePayloadNameIsMalformed() {
        let t = Tensor(zeros: [2])
        let m = PatchMessage(patchID: 1, payloads: [Payload(name: "ct", data: .float32(t)), Payload(name: "ct", data: .float32(t))])
        assertRejected(frames(m), .malformed)
    }

    func testSetAndRemovePayload() {
        var m = PatchMessage(patchID: 1)
        m.setPayload("ct", .float32(Tensor(zeros: [2, 2])))
        m.setPayload("ct", .float32(Tensor(zeros: [3])))
        XCTAssertEqual(m.payloads.count, 1)
        XCTAssertEqual(m.tensor("ct")?.shape, [3])
        m.removePayload("ct")
        XCTAssertNil(m.payload("ct"))
    }
}
