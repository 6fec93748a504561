import Kernels
import Imaging

/// A 96³ crop of a preprocessed volume: CT in [0,1] (after the HU window) and the organ label.
public struct CropPatch {
    /// CT values, shape [X, Y, Z] (96³), C order.
    public var ct: Tensor
    /// Labels in the same order: 0 background, 1 organ (2 tumor once synthesized).
    public var label: MaskGrid
    /// Voxel of the original (unpadded) volume at patch voxel (0,0,0); negative where the
    /// volume was padded to reach 96.
    public var origin: [Int]
    /// Foreground voxels (label > 0) in the crop.
    public var foregroundCount: Int
    /// Crops drawn until the foreground rule accepted one (1 for non-healthy scans).
    public var attempts: Int

    public init(ct: Tensor, label: MaskGrid, origin: [Int], foregroundCount: Int, attempts: Int) {
        precondition(ct.shape == label.size.dims, "patch CT \(ct.shape) and label \(label.size) differ")
        self.ct = ct; self.label = label; self.origin = origin
        self.foregroundCount = foregroundCount; self.attempts = attempts
    }
}

/// A volume prepared for cropping (`OrganCropper.prepare`): padded to the patch size, with its
/// foreground voxel list.
public struct CropSource {
    public let ct: Tensor
    public let label: MaskGrid
    public let padBefore: [Int]
    let foreground: [Int32]
    let backgroundCount: Int
}

public struct CropError: Error, CustomStringConvertible {
    public var description: String
}

/// The STEP3 cropper (difftumor.md §1): `SpatialPadd(96³, mode minimum / constant 0)`, then
/// `RandCropByPosNegLabeld(pos=1, neg=1, image_threshold=0)`; for healthy scans the crop is
/// re-drawn until its foreground (label > 0) exceeds the volume of a sphere of radius R (liver
/// 30, pancreas 15, kidney 25); after more than 5/10/15/20/25 tries R shrinks by 5/10/15/20/25
/// (never below 5); after more than 30 tries any crop is kept.
///
/// Draw order per try: the pos/neg coin, then the centre (uniform over the chosen voxel set).
public struct OrganCropper {
    public var patchSize: Int
    /// Foreground sphere radius; nil keeps the first crop (real-tumor scans).
    public var foregroundRadius: Int?
    /// pos / (pos + neg) of RandCropByPosNegLabeld.
    public var positiveFraction: Double

    public init(organ: Organ, patchSize: Int = Synthesis.patchSize, positiveFraction: Double = 0.5) {
        self.patchSize = patchSize
        self.foregroundRadius = organ.foregroundRadius
        self.positiveFraction = positiveFraction
    }

    public init(foregroundRadius: Int?, patchSize: Int = Synthesis.patchSize, positiveFraction: Double = 0.5) {
        self.patchSize = patchSize
        self.foregroundRadius = foregroundRadius
        self.positiveFraction = positiveFraction
    }

    /// 4/3·π·R³ (`R2voxel`).
    public static func sphereVoxels(_ r: Int) -> Double { 4.0 / 3.0 * Double.pi * Double(r * r * r) }

    /// Whether try number `attempt` (1-based) with `count` foreground voxels ends the search.
    public static func accepts(attempt: Int, count: Int, radius: Int) -> Bool {
        let c = Double(count)
        if c > sphereVoxels(radius) { return true }
        for k in 1...5 where attempt > 5 * k && c > sphereVoxels(max(radius - 5 * k, 5)) { return true }
        return attempt > 30
    }

    /// Crops `ct` ([X,Y,Z], values in [0,1]) and its binary organ `label` (same grid).
    /// `healthy` applies the foreground retry rule; otherwise the first crop is kept.
    public func crop(ct: Tensor, label: MaskGrid, healthy: Bool, rng: inout SynthRandom) throws -> CropPatch {
        try crop(try prepare(ct: ct, label: label), healthy: healthy, rng: &rng)
    }

    /// The per-volume work of cropping (padding, the foreground voxel list), done once so that
    /// several crops of one volume only pay for the crops themselves.
    public func prepare(ct: Tensor, label: MaskGrid) throws -> CropSource {
        guard ct.shape == label.size.dims else {
            throw CropError(description: "cropper: CT shape \(ct.shape) and label grid \(label.size) differ")
        }
        let (padded, paddedLabel, padBefore) = OrganCropper.padToPatch(ct: ct, label: label, patch: patchSize)
        let size = paddedLabel.size
        // Foreground voxels (label > 0 and image > 0) as a list; background by rejection sampling.
        var foreground: [Int32] = []
        var backgroundCount = 0
        padded.withUnsafeBufferPointer { img in
            paddedLabel.voxels.withUnsafeBufferPointer { lab in
                for i in 0..<size.count where img[i] > 0 {
                    if lab[i] > 0 { foreground.append(Int32(i)) } else { backgroundCount += 1 }
                }
            }
        }
        guard !foreground.isEmpty || backgroundCount > 0 else {
            throw CropError(description: "cropper: no voxel of the \(size) volume is above the image threshold 0; cannot pick a crop centre")
        }
        return CropSource(ct: padded, label: paddedLabel, padBefore: padBefore, foreground: foreground, backgroundCount: backgroundCount)
    }

    /// One crop of a prepared volume.
    public func crop(_ source: CropSource, healthy: Bool, rng: inout SynthRandom) throws -> CropPatch {
        let size = source.label.size
        let foreground = source.foreground
        var attempt = 0
        while true {
            attempt += 1
            let usePositive: Bool
            let coin = rng.uniform() < positiveFraction
            if foreground.isEmpty { usePositive = false } else if source.backgroundCount == 0 { usePositive = true } else { usePositive = coin }
            var flat: Int
            if usePositive {
                flat = Int(foreground[rng.index(foreground.count)])
            } else {
                repeat { flat = rng.index(size.count) } while !(source.label.voxels[flat] == 0 && source.ct[flat: flat] > 0)
            }
            let c = [flat / (size.y * size.z), (flat / size.z) % size.y, flat % size.z]
            let half = patchSize / 2
            let start = (0..<3).map { axis -> Int in
                let validEnd = max(size[axis] + 1 - half, half + 1)   // MONAI correct_crop_centers
                let centre = min(max(c[axis], half), validEnd - 1)
                return centre - half
            }
            let patchLabel = source.label.cropped(from: start, to: start.map { $0 + patchSize })
            let fg = patchLabel.nonzeroCount
            if !healthy || foregroundRadius == nil || OrganCropper.accepts(attempt: attempt, count: fg, radius: foregroundRadius!) {
                let patchCT = OrganCropper.cropTensor(source.ct, size: size, start: start, edge: patchSize)
                return CropPatch(ct: patchCT, label: patchLabel,
                                 origin: (0..<3).map { start[$0] - source.padBefore[$0] },
                                 foregroundCount: fg, attempts: attempt)
            }
        }
    }

    /// `SpatialPadd` to at least `patch` per axis, symmetric (before = (patch - n) / 2): the image
    /// with numpy's `pad(mode='minimum')` (axis by axis, each line padded with its own minimum),
    /// labels with 0. Returns the padded CT, label and the padding before each axis.
    public static func padToPatch(ct: Tensor, label: MaskGrid, patch: Int) -> (Tensor, MaskGrid, [Int]) {
        var size = label.size
        if size.x >= patch && size.y >= patch && size.z >= patch { return (ct, label, [0, 0, 0]) }
        var values = ct.scalars
        var labels = label.voxels
        var before = [0, 0, 0]
        for axis in 0..<3 where size[axis] < patch {
            let n = size[axis]
            let b = (patch - n) / 2
            before[axis] = b
            var newDims = size.dims
            newDims[axis] = patch
            let newSize = GridSize(newDims[0], newDims[1], newDims[2])
            var nv = [Float](repeating: 0, count: newSize.count)
            var nl = [UInt8](repeating: 0, count: newSize.count)
            // Iterate over lines along `axis`.
            let other = (0..<3).filter { $0 != axis }
            for i in 0..<size[other[0]] {
                for j in 0..<size[other[1]] {
                    func idx(_ s: GridSize, _ k: Int) -> Int {
                        var p = [0, 0, 0]; p[axis] = k; p[other[0]] = i; p[other[1]] = j
                        return s.index(p[0], p[1], p[2])
                    }
                    var lineMin = Float.infinity
                    for k in 0..<n { lineMin = min(lineMin, values[idx(size, k)]) }
                    for k in 0..<patch {
                        let src = k - b
                        if src >= 0 && src < n {
                            nv[idx(newSize, k)] = values[idx(size, src)]
                            nl[idx(newSize, k)] = labels[idx(size, src)]
                        } else {
                            nv[idx(newSize, k)] = lineMin
                        }
                    }
                }
            }
            values = nv; labels = nl; size = newSize
        }
        return (Tensor(shape: size.dims, data: values), MaskGrid(size: size, voxels: labels), before)
    }

    static func cropTensor(_ t: Tensor, size: GridSize, start: [Int], edge: Int) -> Tensor {
        var out = Tensor(uninitialized: [edge, edge, edge])
        t.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for x in 0..<edge {
                    for y in 0..<edge {
                        let s = size.index(start[0] + x, start[1] + y, start[2])
                        let d = (x * edge + y) * edge
                        for z in 0..<edge { dst[d + z] = src[s + z] }
                    }
                }
            }
        }
        return out
    }
}
