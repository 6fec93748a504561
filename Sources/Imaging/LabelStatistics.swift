import Kernels

/// Per-label volume and intensity statistics of a CT with its label map.
public struct LabelStatistics: Equatable, Sendable {
    public var id: UInt8
    public var voxels: Int
    /// Volume in millilitres (voxel count × voxel volume in mm³ / 1000).
    public var millilitres: Double
    public var meanHU: Double
    public var stdHU: Double

    /// Statistics of every label id present (0 included), in id order. The grids must match.
    public static func compute(ct: Volume, labels: LabelVolume) -> [LabelStatistics] {
        precondition(ct.shape == labels.shape, "CT shape \(ct.shape) and label shape \(labels.shape) differ")
        var count = [Int](repeating: 0, count: 256)
        var sum = [Double](repeating: 0, count: 256), sum2 = sum
        ct.voxels.withUnsafeBufferPointer { v in
            labels.labels.withUnsafeBufferPointer { l in
                for i in 0..<l.count {
                    let id = Int(l[i]), x = Double(v[i])
                    count[id] += 1; sum[id] += x; sum2[id] += x * x
                }
            }
        }
        let voxelML = voxelVolumeMM3(labels.affine) / 1000
        return (0..<256).compactMap { id in
            guard count[id] > 0 else { return nil }
            let n = Double(count[id]), mean = sum[id] / n
            return LabelStatistics(id: UInt8(id), voxels: count[id], millilitres: n * voxelML, meanHU: mean,
                                   stdHU: max(0, sum2[id] / n - mean * mean).squareRoot())
        }
    }

    /// Voxel counts and mL per label id (no CT needed).
    public static func volumes(_ labels: LabelVolume) -> [UInt8: Double] {
        var count = [Int](repeating: 0, count: 256)
        for l in labels.labels { count[Int(l)] += 1 }
        let voxelML = voxelVolumeMM3(labels.affine) / 1000
        var out: [UInt8: Double] = [:]
        for id in 0..<256 where count[id] > 0 { out[UInt8(id)] = Double(count[id]) * voxelML }
        return out
    }

    /// |det| of the affine's 3×3 part: the volume of one voxel in mm³.
    public static func voxelVolumeMM3(_ a: Affine) -> Double {
        abs(a[0, 0] * (a[1, 1] * a[2, 2] - a[1, 2] * a[2, 1])
            - a[0, 1] * (a[1, 0] * a[2, 2] - a[1, 2] * a[2, 0])
            + a[0, 2] * (a[1, 0] * a[2, 1] - a[1, 1] * a[2, 0]))
    }
}
