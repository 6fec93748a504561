/// How a padded border is filled.
public enum PaddingMode: Equatable, Sendable {
    /// Zeros (PyTorch `padding=` of `Conv3d`, `F.pad(mode='constant')`).
    case zero
    /// The nearest edge voxel (PyTorch `F.pad(mode='replicate')`).
    case replicate
}

/// Padding of the three spatial dims (D, H, W) of an NCDHW tensor: `front[i]` voxels before and
/// `back[i]` after dim `i`, filled per `mode`.
public struct Padding3d: Equatable, Sendable {
    public var front: [Int]
    public var back: [Int]
    public var mode: PaddingMode

    public init(front: [Int], back: [Int], mode: PaddingMode = .zero) {
        precondition(front.count == 3 && back.count == 3 && (front + back).allSatisfy { $0 >= 0 },
                     "Padding3d needs 3 non-negative front and back values, got \(front) \(back)")
        self.front = front
        self.back = back
        self.mode = mode
    }

    /// The same padding `p[i]` on both sides of dim `i` (PyTorch `Conv3d(padding=p)` for `.zero`).
    public static func symmetric(_ p: [Int], mode: PaddingMode = .zero) -> Padding3d {
        Padding3d(front: p, back: p, mode: mode)
    }

    /// The same padding `p` on all six sides.
    public static func uniform(_ p: Int, mode: PaddingMode = .zero) -> Padding3d {
        Padding3d(front: [p, p, p], back: [p, p, p], mode: mode)
    }

    /// No padding.
    public static let none = Padding3d(front: [0, 0, 0], back: [0, 0, 0])

    /// The reference's `SamePadConv3d`: a total of `k − s` per dim, `ceil` of half at the front,
    /// `floor` at the back (replicate in the VQ-GAN).
    public static func same(kernel: [Int], stride: [Int], mode: PaddingMode = .replicate) -> Padding3d {
        precondition(kernel.count == 3 && stride.count == 3, "same padding needs 3 kernel and stride values")
        let total = zip(kernel, stride).map { max($0 - $1, 0) }
        return Padding3d(front: total.map { ($0 + 1) / 2 }, back: total.map { $0 / 2 }, mode: mode)
    }

    var isNone: Bool { front == [0, 0, 0] && back == [0, 0, 0] }
}

extension Tensor {
    /// Pads the last three dims of an N×C×D×H×W tensor (PyTorch `F.pad` with modes
    /// `constant` (0) or `replicate`).
    public func padded(_ padding: Padding3d) -> Tensor {
        precondition(rank == 5, "padded: input must be NCDHW, got \(shape)")
        let (d, h, w) = (shape[2], shape[3], shape[4])
        precondition(padding.mode == .zero || (d > 0 && h > 0 && w > 0), "padded: replicate on empty \(shape)")
        let od = d + padding.front[0] + padding.back[0]
        let oh = h + padding.front[1] + padding.back[1]
        let ow = w + padding.front[2] + padding.back[2]
        var out = Tensor(uninitialized: [shape[0], shape[1], od, oh, ow])
        let total = out.count
        out.withMutablePointer { KernelContext.adviseHugePages($0, count: total) }
        let planes = shape[0] * shape[1]
        let fd = padding.front[0], fh = padding.front[1], fw = padding.front[2]
        let replicate = padding.mode == .replicate
        withPointer { src in
            out.withMutablePointer { dst in
                KernelContext.parallelFor(planes * od) { r in
                    for pz in r {
                        let p = pz / od, z = pz % od
                        let row = dst + pz * oh * ow
                        var iz = z - fd
                        if iz < 0 || iz >= d {
                            if !replicate { row.update(repeating: 0, count: oh * ow); continue }
                            iz = min(max(iz, 0), d - 1)
                        }
                        for y in 0..<oh {
                            let o = row + y * ow
                            var iy = y - fh
                            if iy < 0 || iy >= h {
                                if !replicate { o.update(repeating: 0, count: ow); continue }
                                iy = min(max(iy, 0), h - 1)
                            }
                            let s = src + ((p * d + iz) * h + iy) * w
                            for x in 0..<ow {
                                let ix = x - fw
                                if ix >= 0 && ix < w { o[x] = s[ix] }
                                else { o[x] = replicate ? s[min(max(ix, 0), w - 1)] : 0 }
                            }
                        }
                    }
                }
            }
        }
        return out
    }
}
