import Imaging
import Kernels

/// Offline synthesis into one scan, as `tumord synth` runs it: the scan is preprocessed like the
/// reference (RAS, 1 mm, HU window), patches are cropped and synthesized one after the other into
/// the running 1-mm volume, and the result can be written per patch (1-mm patch grid) or for the
/// whole scan on the input's own grid (only voxels whose 1-mm neighbourhood changed are
/// rewritten; everything else keeps its input value).
public struct ScanSynthesis {
    /// The input as read (its grid is the whole-scan output grid).
    public let input: Volume
    public let inputOrgan: LabelVolume
    /// Preprocessed: RAS, 1 mm, windowed to [0, 1].
    public private(set) var volume: Volume
    /// 0 background, 1 organ, 2 tumor on the 1-mm grid.
    public private(set) var label: LabelVolume
    /// 1 where synthesis changed the 1-mm CT.
    public private(set) var changed: [UInt8]
    public let organ: Organ

    /// `organLabel` is 1 on the organ, 0 elsewhere (e.g. `LabelVolume.mask(of:)`).
    public init(ct: Volume, organLabel: LabelVolume, organ: Organ) throws {
        try ct.checkSameGrid(as: organLabel)
        input = ct
        inputOrgan = organLabel
        self.organ = organ
        let ras = ct.reoriented(to: "RAS").resampled(spacing: [1, 1, 1])
        volume = ras.windowed()
        label = organLabel.reoriented(to: "RAS").resampled(spacing: [1, 1, 1])
        changed = [UInt8](repeating: 0, count: volume.voxelCount)
        guard label.shape == volume.shape else {
            throw ImagingError(.gridMismatch, path: "label", "resampled label \(label.shape) and CT \(volume.shape) differ")
        }
    }

    public var grid: GridSize { GridSize(volume.shape[0], volume.shape[1], volume.shape[2]) }

    /// The organ-or-tumor mask of the current 1-mm label (what the next crop sees as foreground).
    public var organMask: MaskGrid { MaskGrid(size: grid, voxels: label.labels.map { $0 > 0 ? 1 : 0 }) }

    /// World affine of a patch whose voxel (0,0,0) is 1-mm voxel `origin`.
    public func patchAffine(origin: [Int]) -> Affine {
        volume.affine * Affine(rowMajor: [1, 0, 0, Double(origin[0]), 0, 1, 0, Double(origin[1]),
                                          0, 0, 1, Double(origin[2]), 0, 0, 0, 1])
    }

    /// Crops and plans one patch from the current state (forced synthesis, see `PatchSynthesizer.plan`).
    public func plan(_ synthesizer: PatchSynthesizer, seed: UInt64, sizeClass: TumorSizeClass?) throws -> PlannedPatch {
        try synthesizer.plan(ct: volume.voxels, organMask: organMask, healthy: true, seed: seed, forced: .some(sizeClass))
    }

    /// Writes a finished patch back into the 1-mm state: CT where it differs, tumor label 2.
    public mutating func apply(_ patch: SynthesizedPatch) {
        let g = grid, s = patch.label.size
        let before = volume.voxels
        volume.voxels.withUnsafeMutableBufferPointer { v in
            patch.ct.withUnsafeBufferPointer { p in
                before.withUnsafeBufferPointer { b in
                    for x in 0..<s.x { for y in 0..<s.y { for z in 0..<s.z {
                        let gx = patch.origin[0] + x, gy = patch.origin[1] + y, gz = patch.origin[2] + z
                        guard gx >= 0, gx < g.x, gy >= 0, gy < g.y, gz >= 0, gz < g.z else { continue }
                        let gi = g.index(gx, gy, gz), pi = s.index(x, y, z)
                        if p[pi] != b[gi] { v[gi] = p[pi]; changed[gi] = 1 }
                        if patch.label.voxels[pi] == 2 { label.labels[gi] = 2 }
                    } } }
                }
            }
        }
    }

    /// The current 1-mm label over a patch region (0 outside the scan).
    public func labelPatch(origin: [Int], size s: GridSize) -> MaskGrid {
        let g = grid
        var out = MaskGrid(zeros: s)
        for x in 0..<s.x { for y in 0..<s.y { for z in 0..<s.z {
            let gx = origin[0] + x, gy = origin[1] + y, gz = origin[2] + z
            guard gx >= 0, gx < g.x, gy >= 0, gy < g.y, gz >= 0, gz < g.z else { continue }
            out.voxels[s.index(x, y, z)] = label.labels[g.index(gx, gy, gz)]
        } } }
        return out
    }

    /// The 1-mm state in HU (window values mapped back: v·425 − 175) with its label.
    public var oneMillimetreHU: (Volume, LabelVolume) { (ScanSynthesis.toHU(volume), label) }

    public static func toHU(_ v: Volume) -> Volume {
        let lo = Imaging.huWindow.lowerBound, w = Imaging.huWindow.upperBound - Imaging.huWindow.lowerBound
        var t = v.voxels
        t.withUnsafeMutableBufferPointer { p in for i in 0..<p.count { p[i] = p[i] * w + lo } }
        return Volume(voxels: t, affine: v.affine)
    }

    /// The whole scan on the input grid: input HU everywhere except input voxels whose nearest
    /// 1-mm voxel changed, which take the trilinear HU of the synthesized 1-mm volume; labels are
    /// the organ (1) with tumor (2) where the nearest 1-mm voxel is tumor.
    public func wholeScanOnInputGrid() throws -> (Volume, LabelVolume) {
        guard let toOneMM = volume.affine.inverse else {
            throw ImagingError(.badGeometry, path: "1-mm volume", "singular affine")
        }
        let m = toOneMM * input.affine   // input voxel → 1-mm voxel
        let g = grid
        let hu = ScanSynthesis.toHU(volume).voxels.scalars
        var outCT = input.voxels
        var outLabel = inputOrgan
        let s = input.shape
        outCT.withUnsafeMutableBufferPointer { o in
            for i in 0..<s[0] { for j in 0..<s[1] { for k in 0..<s[2] {
                let q = m.apply([Double(i), Double(j), Double(k)])
                let n = q.map { Int($0.rounded()) }
                guard n[0] >= 0, n[0] < g.x, n[1] >= 0, n[1] < g.y, n[2] >= 0, n[2] < g.z else { continue }
                let ni = g.index(n[0], n[1], n[2])
                let flat = (i * s[1] + j) * s[2] + k
                if label.labels[ni] == 2 { outLabel.labels[flat] = 2 }
                guard changed[ni] != 0 else { continue }
                o[flat] = ScanSynthesis.trilinear(hu, g, q)
            } } }
        }
        return (Volume(voxels: outCT, affine: input.affine), outLabel)
    }

    static func trilinear(_ v: [Float], _ g: GridSize, _ q: [Double]) -> Float {
        let c = (0..<3).map { min(max(q[$0], 0), Double(g[$0] - 1)) }
        let i0 = c.map { Int($0.rounded(.down)) }
        let t = (0..<3).map { Float(c[$0] - Double(i0[$0])) }
        let i1 = (0..<3).map { min(i0[$0] + 1, g[$0] - 1) }
        func at(_ a: Int, _ b: Int, _ d: Int) -> Float {
            v[g.index(a == 0 ? i0[0] : i1[0], b == 0 ? i0[1] : i1[1], d == 0 ? i0[2] : i1[2])]
        }
        let c00 = at(0, 0, 0) * (1 - t[2]) + at(0, 0, 1) * t[2]
        let c01 = at(0, 1, 0) * (1 - t[2]) + at(0, 1, 1) * t[2]
        let c10 = at(1, 0, 0) * (1 - t[2]) + at(1, 0, 1) * t[2]
        let c11 = at(1, 1, 0) * (1 - t[2]) + at(1, 1, 1) * t[2]
        return (c00 * (1 - t[1]) + c01 * t[1]) * (1 - t[0]) + (c10 * (1 - t[1]) + c11 * t[1]) * t[0]
    }
}
