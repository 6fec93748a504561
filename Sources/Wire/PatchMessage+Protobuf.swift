import CProtobufC
import CTumorStreamProto
import Kernels

#if _endian(big)
#error("the wire format is little-endian; payload frames would need byte swapping on this host")
#endif

// The bridge between `PatchMessage` and the protoc-c structs of proto/tumorstream.proto.
// Frame 0 is the packed PatchHeader, frames 1...n are the payloads in header order.

extension PatchMessage {
    /// Most payload dimensions accepted (a guard against garbage headers).
    static let maxRank = 8

    /// The frames of this message: the header, then one frame per payload (tensors zero-copy).
    public func encode() -> [OutboundFrame] {
        var frames: [OutboundFrame] = [.bytes(encodeHeader())]
        frames.reserveCapacity(payloads.count + 1)
        for p in payloads {
            switch p.data {
            case .float32(let t): frames.append(.tensor(t))
            case .uint8(let b, _), .raw(let b, _, _): frames.append(.bytes(b))
            case .received(let r): frames.append(.frame(r.frame))
            }
        }
        return frames
    }

    /// The packed protobuf header (frame 0).
    public func encodeHeader() -> [UInt8] {
        let arena = CArena()
        var h = Tumorstream__PatchHeader()
        tumorstream__patch_header__init(&h)
        h.schema_version = PatchMessage.schemaVersion
        h.patch_id = patchID
        h.source_case = arena.string(sourceCase)
        h.seed = seed
        h.organ = Tumorstream__Organ(rawValue: organ.protoValue)
        h.tumor_type = Tumorstream__TumorType(rawValue: tumorType.protoValue)
        h.synthesize = synthesize ? 1 : 0
        h.n_volume_shape = volumeShape.count
        h.volume_shape = arena.array(volumeShape.map(PatchMessage.uint32))
        h.n_patch_origin = patchOrigin.count
        h.patch_origin = arena.array(patchOrigin.map(PatchMessage.uint32))
        h.n_spacing = spacing.count
        h.spacing = arena.array(spacing)
        h.n_affine = affine.count
        h.affine = arena.array(affine)
        h.created_unix = createdUnix
        h.end_of_stream = endOfStream ? 1 : 0
        h.stream_id = streamID
        h.sender = arena.string(sender)

        let descriptors = arena.allocate(Tumorstream__PayloadDescriptor.self, count: payloads.count)
        let descriptorList = arena.allocate(UnsafeMutablePointer<Tumorstream__PayloadDescriptor>?.self,
                                            count: payloads.count)
        for (i, p) in payloads.enumerated() {
            let d = descriptors + i
            tumorstream__payload_descriptor__init(d)
            d.pointee.name = arena.string(p.name)
            d.pointee.dtype = Tumorstream__DType(rawValue: p.data.dtype.protoValue)
            let shape = p.data.shape
            d.pointee.n_shape = shape.count
            d.pointee.shape = arena.array(shape.map(PatchMessage.uint32))
            d.pointee.byte_length = UInt64(p.data.byteCount)
            descriptorList[i] = d
        }
        h.n_payloads = payloads.count
        h.payloads = payloads.isEmpty ? nil : descriptorList

        let timings = arena.allocate(Tumorstream__StageTiming.self, count: provenance.count)
        let timingList = arena.allocate(UnsafeMutablePointer<Tumorstream__StageTiming>?.self, count: provenance.count)
        for (i, s) in provenance.enumerated() {
            let t = timings + i
            tumorstream__stage_timing__init(t)
            t.pointee.stage = arena.string(s.stage)
            t.pointee.replica = PatchMessage.uint32(s.replica)
            t.pointee.host = arena.string(s.host)
            t.pointee.started_unix = s.startedUnix
            t.pointee.seconds = s.seconds
            timingList[i] = t
        }
        h.n_provenance = provenance.count
        h.provenance = provenance.isEmpty ? nil : timingList

        return withExtendedLifetime(arena) {
            let size = tumorstream__patch_header__get_packed_size(&h)
            return [UInt8](unsafeUninitializedCapacity: size) { buffer, initialized in
                initialized = tumorstream__patch_header__pack(&h, buffer.baseAddress!)
            }
        }
    }

    private static func uint32(_ v: Int) -> UInt32 {
        guard let u = UInt32(exactly: v) else { preconditionFailure("value \(v) does not fit a uint32 header field") }
        return u
    }

    /// Reads a message made by `encode()`; throws a `WireError` (malformed, truncated,
    /// wrong-version, bad-payload) for anything else. Payloads stay in their frames, uncopied
    /// (`PayloadData.received`); `tensor(_:)`/`bytes(_:)` copy on access, `materialized()` copies all.
    public static func decode(frames: [ZMQFrame]) throws -> PatchMessage {
        guard let first = frames.first else { throw WireError(.truncated, "message has no frames") }
        let header = try first.withUnsafeBytes { try UnpackedPatchHeader(bytes: $0) }
        return try header.withHeader { h in
            guard let organ = Organ(protoValue: h.organ.rawValue) else {
                throw WireError(.malformed, "header field organ has unknown value \(h.organ.rawValue)")
            }
            guard let tumorType = TumorType(protoValue: h.tumor_type.rawValue) else {
                throw WireError(.malformed, "header field tumor_type has unknown value \(h.tumor_type.rawValue)")
            }
            guard h.n_spacing == 0 || h.n_spacing == 3 else {
                throw WireError(.malformed, "header field spacing has \(h.n_spacing) values, expected 0 or 3")
            }
            guard h.n_affine == 0 || h.n_affine == 16 else {
                throw WireError(.malformed, "header field affine has \(h.n_affine) values, expected 0 or 16")
            }
            let payloadFrames = frames.count - 1
            if payloadFrames < h.n_payloads {
                throw WireError(.truncated, "header lists \(h.n_payloads) payloads, message has \(payloadFrames) payload frames")
            }
            if payloadFrames > h.n_payloads {
                throw WireError(.malformed, "header lists \(h.n_payloads) payloads, message has \(payloadFrames) payload frames")
            }
            var message = PatchMessage(patchID: h.patch_id)
            message.sourceCase = String(cString: h.source_case)
            message.seed = h.seed
            message.organ = organ
            message.tumorType = tumorType
            message.synthesize = h.synthesize != 0
            message.volumeShape = ints(h.volume_shape, h.n_volume_shape)
            message.patchOrigin = ints(h.patch_origin, h.n_patch_origin)
            message.spacing = doubles(h.spacing, h.n_spacing)
            message.affine = doubles(h.affine, h.n_affine)
            message.createdUnix = h.created_unix
            message.endOfStream = h.end_of_stream != 0
            message.streamID = h.stream_id
            message.sender = h.sender.map { String(cString: $0) } ?? ""
            for i in 0..<h.n_provenance {
                guard let t = h.provenance[i]?.pointee else { continue }
                message.provenance.append(StageTiming(stage: String(cString: t.stage), replica: Int(t.replica),
                                                      host: String(cString: t.host), startedUnix: t.started_unix,
                                                      seconds: t.seconds))
            }
            var names = Set<String>()
            for i in 0..<h.n_payloads {
                guard let d = h.payloads[i]?.pointee else {
                    throw WireError(.malformed, "payload descriptor \(i) is missing")
                }
                let payload = try decodePayload(d, index: i, frame: frames[i + 1])
                guard names.insert(payload.name).inserted else {
                    throw WireError(.malformed, "payload name \"\(payload.name)\" appears twice")
                }
                message.payloads.append(payload)
            }
            return message
        }
    }

    private static func decodePayload(_ d: Tumorstream__PayloadDescriptor, index: Int, frame: ZMQFrame) throws -> Payload {
        let name = String(cString: d.name)
        guard !name.isEmpty else { throw WireError(.malformed, "payload \(index) has no name") }
        guard let dtype = DType(protoValue: d.dtype.rawValue) else {
            throw WireError(.badPayload, "payload \(name) has unknown dtype \(d.dtype.rawValue)")
        }
        guard d.n_shape <= maxRank else {
            throw WireError(.badPayload, "payload \(name) has rank \(d.n_shape), at most \(maxRank) supported")
        }
        let shape = ints(d.shape, d.n_shape)
        var bytes = dtype.byteSize
        for s in shape {
            let (p, overflow) = bytes.multipliedReportingOverflow(by: s)
            guard !overflow, p <= Int(Int32.max) * 16 else {
                throw WireError(.badPayload, "payload \(name) shape \(shape) is too large")
            }
            bytes = p
        }
        guard UInt64(bytes) == d.byte_length else {
            throw WireError(.badPayload, "payload \(name): \(dtype) shape \(shape) needs \(bytes) bytes, header says \(d.byte_length)")
        }
        if frame.count < bytes {
            throw WireError(.truncated, "payload \(name): frame has \(frame.count) bytes, expected \(bytes)")
        }
        if frame.count > bytes {
            throw WireError(.badPayload, "payload \(name): frame has \(frame.count) bytes, expected \(bytes)")
        }
        let data = PayloadData.received(ReceivedPayload(frame: frame, dtype: dtype, shape: shape))
        return Payload(name: name, data: data)
    }

    private static func ints(_ p: UnsafeMutablePointer<UInt32>?, _ n: Int) -> [Int] {
        guard let p, n > 0 else { return [] }
        return (0..<n).map { Int(p[$0]) }
    }

    private static func doubles(_ p: UnsafeMutablePointer<Double>?, _ n: Int) -> [Double] {
        guard let p, n > 0 else { return [] }
        return Array(UnsafeBufferPointer(start: p, count: n))
    }
}

/// Reads field 1 (schema_version, varint) from the start of a packed message without a full
/// parse, so that a future layout is reported as "wrong version" rather than "malformed".
func peekSchemaVersion(_ bytes: UnsafeRawBufferPointer) -> UInt64? {
    guard bytes.count >= 2, bytes[0] == 0x08 else { return nil }
    var value: UInt64 = 0
    var shift: UInt64 = 0
    for i in 1..<min(bytes.count, 11) {
        let b = bytes[i]
        value |= UInt64(b & 0x7f) << shift
        if b & 0x80 == 0 { return value }
        shift += 7
    }
    return nil
}

/// A PatchHeader unpacked by protobuf-c (`Tumorstream__PatchHeader *`), freed in deinit.
final class UnpackedPatchHeader {
    private let pointer: UnsafeMutablePointer<Tumorstream__PatchHeader>

    init(bytes: UnsafeRawBufferPointer) throws {
        if let v = peekSchemaVersion(bytes), v != UInt64(PatchMessage.schemaVersion) {
            throw WireError(.wrongVersion, "patch header has schema version \(v), this build reads \(PatchMessage.schemaVersion)")
        }
        guard let p = tumorstream__patch_header__unpack(nil, bytes.count, bytes.bindMemory(to: UInt8.self).baseAddress) else {
            throw WireError(.malformed, "patch header (\(bytes.count) bytes) is not a valid protobuf PatchHeader")
        }
        pointer = p
        guard p.pointee.schema_version == PatchMessage.schemaVersion else {
            throw WireError(.wrongVersion, "patch header has schema version \(p.pointee.schema_version), this build reads \(PatchMessage.schemaVersion)")
        }
    }

    func withHeader<R>(_ body: (Tumorstream__PatchHeader) throws -> R) rethrows -> R {
        try body(pointer.pointee)
    }

    deinit { tumorstream__patch_header__free_unpacked(pointer, nil) }
}

// Enum mappings between the Swift types and the proto enums' numbers.

extension DType {
    var protoValue: UInt32 {
        switch self {
        case .float32: return 1
        case .uint8: return 2
        case .int16: return 3
        case .int32: return 4
        case .float16: return 5
        }
    }
    init?(protoValue: UInt32) {
        switch protoValue {
        case 1: self = .float32
        case 2: self = .uint8
        case 3: self = .int16
        case 4: self = .int32
        case 5: self = .float16
        default: return nil
        }
    }
}

extension Organ {
    var protoValue: UInt32 {
        switch self {
        case .unspecified: return 0
        case .liver: return 1
        case .pancreas: return 2
        case .kidney: return 3
        }
    }
    init?(protoValue: UInt32) {
        switch protoValue {
        case 0: self = .unspecified
        case 1: self = .liver
        case 2: self = .pancreas
        case 3: self = .kidney
        default: return nil
        }
    }
}

extension TumorType {
    var protoValue: UInt32 {
        switch self {
        case .none: return 0
        case .tiny: return 1
        case .small: return 2
        case .medium: return 3
        case .large: return 4
        }
    }
    init?(protoValue: UInt32) {
        switch protoValue {
        case 0: self = .none
        case 1: self = .tiny
        case 2: self = .small
        case 3: self = .medium
        case 4: self = .large
        default: return nil
        }
    }
}
