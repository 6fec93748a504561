import Kernels

/// Element type of a payload frame (little-endian, C order).
public enum DType: String, CaseIterable, CustomStringConvertible {
    case float32, uint8, int16, int32, float16

    public var byteSize: Int {
        switch self {
        case .uint8: return 1
        case .int16, .float16: return 2
        case .float32, .int32: return 4
        }
    }

    public var description: String { rawValue }
}

public enum Organ: String, CaseIterable, CustomStringConvertible {
    case unspecified, liver, pancreas, kidney
    public var description: String { rawValue }
}

/// The synthetic tumor drawn for a patch; `.none` when no tumor was synthesized.
public enum TumorType: String, CaseIterable, CustomStringConvertible {
    case none, tiny, small, medium, large
    public var description: String { rawValue }
}

/// One stage's visit of a patch (provenance).
public struct StageTiming: Equatable {
    public var stage: String
    public var replica: Int
    public var host: String
    /// Seconds since 1970 (UTC) when the stage started on this patch.
    public var startedUnix: Double
    /// Seconds the stage spent on this patch.
    public var seconds: Double

    public init(stage: String, replica: Int = 0, host: String = "", startedUnix: Double, seconds: Double) {
        self.stage = stage
        self.replica = replica
        self.host = host
        self.startedUnix = startedUnix
        self.seconds = seconds
    }
}

/// The voxels of one payload.
///
/// Payloads made by a stage are `.float32`/`.uint8`/`.raw` values. Payloads of a decoded message
/// are `.received`: the ZeroMQ frame as it arrived, not copied. Read them with
/// `PatchMessage.tensor(_:)`/`bytes(_:)` (which copy once into a Tensor/array), or read in place
/// with `ReceivedPayload.withUnsafeBytes`; sending the message on forwards them without a copy.
public enum PayloadData {
    /// Float32 voxels (CT, tumor mask as float, latent, condition); shape is the tensor's.
    case float32(Tensor)
    /// Bytes of dtype UInt8 (labels, binary masks).
    case uint8([UInt8], shape: [Int])
    /// Other dtypes, kept as little-endian bytes without conversion.
    case raw([UInt8], dtype: DType, shape: [Int])
    /// A payload frame of a decoded message, validated against its descriptor, not copied.
    case received(ReceivedPayload)

    public var dtype: DType {
        switch self {
        case .float32: return .float32
        case .uint8: return .uint8
        case .raw(_, let dtype, _): return dtype
        case .received(let r): return r.dtype
        }
    }

    public var shape: [Int] {
        switch self {
        case .float32(let t): return t.shape
        case .uint8(_, let shape), .raw(_, _, let shape): return shape
        case .received(let r): return r.shape
        }
    }

    public var byteCount: Int {
        switch self {
        case .float32(let t): return t.count * 4
        case .uint8(let b, _), .raw(let b, _, _): return b.count
        case .received(let r): return r.frame.count
        }
    }

    /// The voxels as a Float32 tensor (a copy for `.received`); nil for other dtypes.
    public var tensor: Tensor? {
        switch self {
        case .float32(let t): return t
        case .received(let r) where r.dtype == .float32: return r.tensor()
        default: return nil
        }
    }

    /// The little-endian bytes (a copy, except for `.uint8`/`.raw`, which are returned as stored).
    public var bytes: [UInt8] {
        switch self {
        case .float32(let t): return t.withUnsafeBufferPointer { Array(UnsafeRawBufferPointer($0)) }
        case .uint8(let b, _), .raw(let b, _, _): return b
        case .received(let r): return r.frame.bytes
        }
    }

    /// The same voxels owned by Swift values (`.received` becomes `.float32`, `.uint8` or `.raw`),
    /// so the ZeroMQ frame can be released.
    public var materialized: PayloadData {
        guard case .received(let r) = self else { return self }
        switch r.dtype {
        case .float32: return .float32(r.tensor())
        case .uint8: return .uint8(r.frame.bytes, shape: r.shape)
        default: return .raw(r.frame.bytes, dtype: r.dtype, shape: r.shape)
        }
    }
}

/// A received payload frame with its validated dtype and shape (frame size = product(shape) × dtype size).
public struct ReceivedPayload {
    public let frame: ZMQFrame
    public let dtype: DType
    public let shape: [Int]

    /// Reads the little-endian bytes in place, without a copy.
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try frame.withUnsafeBytes(body)
    }

    /// A Float32 tensor copy of the frame (one memcpy). Precondition: dtype is float32.
    public func tensor() -> Tensor {
        precondition(dtype == .float32, "payload is \(dtype), not float32")
        var t = Tensor(uninitialized: shape)
        t.withUnsafeMutableBufferPointer { dst in
            frame.withUnsafeBytes { src in
                if src.count > 0 { UnsafeMutableRawPointer(dst.baseAddress!).copyMemory(from: src.baseAddress!, byteCount: src.count) }
            }
        }
        return t
    }
}

/// A named payload frame.
public struct Payload {
    public var name: String
    public var data: PayloadData

    public init(name: String, data: PayloadData) {
        switch data {
        case .float32: break
        case .uint8(let b, let shape):
            precondition(b.count == Tensor.elementCount(shape), "payload \(name): \(b.count) bytes for shape \(shape)")
        case .raw(let b, let dtype, let shape):
            precondition(b.count == Tensor.elementCount(shape) * dtype.byteSize,
                         "payload \(name): \(b.count) bytes for \(dtype) shape \(shape)")
        case .received: break
        }
        self.name = name
        self.data = data
    }

    /// Conventional payload names.
    public static let ct = "ct"
    public static let label = "label"
    public static let tumorMask = "tumor_mask"
    public static let latent = "latent"
    public static let condition = "condition"
}

/// A patch as it travels between stages: the header fields plus named voxel payloads.
/// `encode()` makes the ZeroMQ frames (header + one raw frame per payload, tensors zero-copy);
/// `decode(frames:)` reads and validates them.
public struct PatchMessage {
    /// The schema version this build writes and reads (proto/tumorstream.proto `SchemaVersion`).
    public static let schemaVersion: UInt32 = 1

    public var patchID: UInt64
    /// Case id or file name of the source CT.
    public var sourceCase: String
    /// Seeds every random draw for this patch: the patch can be re-synthesized exactly.
    public var seed: UInt64
    public var organ: Organ
    public var tumorType: TumorType
    /// The cropper chose this patch for synthesis.
    public var synthesize: Bool
    /// Source volume size in voxels (x, y, z); empty when unknown.
    public var volumeShape: [Int]
    /// Crop corner in volume voxels (x, y, z); empty when unknown.
    public var patchOrigin: [Int]
    /// Millimetres per voxel (x, y, z); empty or 3 values.
    public var spacing: [Double]
    /// 4×4 voxel → world (RAS+, mm), row-major; empty or 16 values.
    public var affine: [Double]
    public var payloads: [Payload]
    public var provenance: [StageTiming]
    /// Seconds since 1970 when the loader emitted the source volume.
    public var createdUnix: Double
    /// A marker with no payloads: the sender has finished.
    public var endOfStream: Bool
    /// The run this message belongs to (drawn by the loader, carried by every later message).
    public var streamID: UInt64 = 0
    /// Markers: the replica that sent it (`stage/replica`).
    public var sender: String = ""

    public init(patchID: UInt64, sourceCase: String = "", seed: UInt64 = 0, organ: Organ = .unspecified,
                tumorType: TumorType = .none, synthesize: Bool = false, volumeShape: [Int] = [],
                patchOrigin: [Int] = [], spacing: [Double] = [], affine: [Double] = [],
                payloads: [Payload] = [], provenance: [StageTiming] = [], createdUnix: Double = 0,
                endOfStream: Bool = false) {
        self.patchID = patchID
        self.sourceCase = sourceCase
        self.seed = seed
        self.organ = organ
        self.tumorType = tumorType
        self.synthesize = synthesize
        self.volumeShape = volumeShape
        self.patchOrigin = patchOrigin
        self.spacing = spacing
        self.affine = affine
        self.payloads = payloads
        self.provenance = provenance
        self.createdUnix = createdUnix
        self.endOfStream = endOfStream
    }

    /// An end-of-stream marker.
    public static func endOfStream(patchID: UInt64 = 0) -> PatchMessage {
        PatchMessage(patchID: patchID, endOfStream: true)
    }

    /// An end-of-stream marker from replica `sender` that sent `count` messages to the receiver.
    public static func endOfStream(count: UInt64, streamID: UInt64, sender: String) -> PatchMessage {
        var m = PatchMessage(patchID: count, endOfStream: true)
        m.streamID = streamID
        m.sender = sender
        return m
    }

    /// The payload called `name`, if present.
    public func payload(_ name: String) -> PayloadData? {
        payloads.first { $0.name == name }?.data
    }

    /// The Float32 payload called `name` (nil if absent or of another dtype). For a received
    /// message this copies the frame into a new tensor on each call: keep the result.
    public func tensor(_ name: String) -> Tensor? {
        payload(name)?.tensor
    }

    /// The UInt8 payload called `name` with its shape (nil if absent or of another dtype).
    /// For a received message this copies the frame.
    public func bytes(_ name: String) -> (bytes: [UInt8], shape: [Int])? {
        guard let p = payload(name), p.dtype == .uint8 else { return nil }
        return (p.bytes, p.shape)
    }

    /// The same message with every payload owned by Swift values (see `PayloadData.materialized`).
    public func materialized() -> PatchMessage {
        var m = self
        m.payloads = payloads.map { Payload(name: $0.name, data: $0.data.materialized) }
        return m
    }

    /// Adds or replaces the payload called `name`.
    public mutating func setPayload(_ name: String, _ data: PayloadData) {
        let p = Payload(name: name, data: data)
        if let i = payloads.firstIndex(where: { $0.name == name }) { payloads[i] = p } else { payloads.append(p) }
    }

    public mutating func removePayload(_ name: String) {
        payloads.removeAll { $0.name == name }
    }

    /// Total payload bytes (what the voxel frames carry).
    public var payloadByteCount: Int { payloads.reduce(0) { $0 + $1.data.byteCount } }
}
