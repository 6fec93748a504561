import Kernels
import Synthesis
import Wire

/// How the stages use the message fields (docs/daemon.md, "Messages between stages"):
/// - loader → cropper: `ct` float32 [X,Y,Z] (HU window in [0,1], RAS, 1 mm), `label` uint8
///   [X,Y,Z] (0 background, 1 organ, 2 real tumor); `synthesize` = the case is healthy (eligible).
/// - cropper → …: `ct` float32 96³, `label` uint8 96³ (0/1), and when `synthesize`: `tumor_mask`
///   uint8 96³ and `tumorType`; `patchOrigin` = crop corner in the volume.
/// - encoder (diffusion) → sampler: `condition` float32 (1,9,24,24,24); sampler → blender:
///   `latent` float32 (1,8,24,24,24), or with the procedural engine `ct` painted; blender → sink:
///   `ct` blended, `label` with tumor = 2.
/// Random draws follow Synthesis's per-patch streams (cropper, engine), so a patch with seed S
/// is the patch `tumord synth --seed S` makes from the same volume.
enum PatchConventions {
    static func ct(_ p: PatchMessage, stage: String) throws -> Tensor {
        guard let ct = p.tensor(Payload.ct), ct.rank == 3 else {
            throw StageRejection("bad-payload", "\(stage): patch \(p.patchID) has no float32 [X,Y,Z] '\(Payload.ct)' payload")
        }
        return ct
    }

    static func grid(_ p: PatchMessage, _ name: String, like ct: Tensor, stage: String) throws -> MaskGrid {
        guard let (bytes, shape) = p.bytes(name), shape == ct.shape else {
            throw StageRejection("bad-payload", "\(stage): patch \(p.patchID) has no uint8 '\(name)' payload of shape \(ct.shape)")
        }
        return MaskGrid(size: GridSize(shape[0], shape[1], shape[2]), voxels: bytes)
    }

    /// Voxels equal to `value` as a 0/1 mask.
    static func select(_ grid: MaskGrid, _ value: UInt8) -> MaskGrid {
        MaskGrid(size: grid.size, voxels: grid.voxels.map { $0 == value ? 1 : 0 })
    }

    /// A cheap fingerprint of payloads (FNV-1a over their sizes and every 1021st byte), read in
    /// place from received frames: tells whether a volume is the one seen before.
    static func fingerprint(_ p: PatchMessage, _ names: [String]) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        func mix(_ b: UInt8) { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        func visit(_ raw: UnsafeRawBufferPointer) {
            for shift in stride(from: 0, to: 64, by: 8) { mix(UInt8(truncatingIfNeeded: raw.count >> shift)) }
            var i = 0
            while i < raw.count { mix(raw[i]); i += 1021 }
        }
        for name in names {
            switch p.payload(name) {
            case .received(let r)?: r.withUnsafeBytes(visit)
            case .float32(let t)?: t.withUnsafeBufferPointer { visit(UnsafeRawBufferPointer($0)) }
            case .uint8(let b, _)?, .raw(let b, _, _)?: b.withUnsafeBytes(visit)
            case nil: mix(0xFF)
            }
        }
        return h
    }

    static func checkFinite(_ t: Tensor, _ p: PatchMessage, stage: String) throws {
        let bad = t.withUnsafeBufferPointer { b in b.contains { !$0.isFinite } }
        if bad { throw StageRejection("nan-voxels", "\(stage): patch \(p.patchID) from \(p.sourceCase) has NaN or infinite CT voxels") }
    }
}
