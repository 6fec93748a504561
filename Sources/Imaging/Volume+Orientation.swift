import Kernels

/// Reorientation to a target axis code by axis permutation and flips only (no interpolation),
/// as MONAI's `Orientationd(axcodes="RAS")` does; the affine is updated so world positions stay.
public struct AxisReorientation: Equatable, Sendable {
    /// For output axis d, the input axis it takes (`perm[d]`) and whether it is flipped.
    public var perm: [Int]
    public var flip: [Bool]

    public var isIdentity: Bool { perm == [0, 1, 2] && flip == [false, false, false] }

    /// The permutation and flips taking `affine`'s grid to `target` ("RAS", "LPS", ...).
    public init(from affine: Affine, to target: String = "RAS") {
        let t = Array(target.uppercased())
        precondition(t.count == 3, "orientation code has three letters, got \(target)")
        func worldAxis(_ c: Character) -> (Int, Bool) {
            switch c {
            case "R": (0, true); case "L": (0, false)
            case "A": (1, true); case "P": (1, false)
            case "S": (2, true); case "I": (2, false)
            default: preconditionFailure("bad orientation letter \(c) in \(target)")
            }
        }
        let axes = affine.dominantWorldAxes()  // voxel axis -> world axis
        var perm = [0, 0, 0], flip = [false, false, false]
        for d in 0..<3 {
            let (w, positive) = worldAxis(t[d])
            let a = axes.firstIndex(of: w)!
            perm[d] = a
            let pointsPositive = affine[w, a] >= 0
            flip[d] = pointsPositive != positive
        }
        precondition(Set(perm).count == 3, "orientation code \(target) repeats an axis")
        self.perm = perm
        self.flip = flip
    }

    public func outputShape(_ shape: [Int]) -> [Int] { perm.map { shape[$0] } }

    /// The affine of the reoriented grid: out index → in index → world.
    public func outputAffine(_ affine: Affine, inputShape shape: [Int]) -> Affine {
        // in_index[perm[d]] = flip[d] ? (n - 1 - out[d]) : out[d]
        var t = [Double](repeating: 0, count: 16)
        t[15] = 1
        for d in 0..<3 {
            let a = perm[d]
            if flip[d] {
                t[4 * a + d] = -1
                t[4 * a + 3] = Double(shape[a] - 1)
            } else {
                t[4 * a + d] = 1
            }
        }
        return affine * Affine(rowMajor: t)
    }

    /// Applies the permutation to a C-order [X, Y, Z] buffer.
    public func apply<T>(_ src: UnsafeBufferPointer<T>, shape: [Int], into dst: UnsafeMutableBufferPointer<T>) {
        let os = outputShape(shape)
        let inStride = [shape[1] * shape[2], shape[2], 1]
        // Start offset and per-output-axis stride in the input.
        var start = 0
        var stride = [0, 0, 0]
        for d in 0..<3 {
            let a = perm[d]
            if flip[d] {
                start += (shape[a] - 1) * inStride[a]
                stride[d] = -inStride[a]
            } else {
                stride[d] = inStride[a]
            }
        }
        var o = 0
        for x in 0..<os[0] {
            let bx = start + x * stride[0]
            for y in 0..<os[1] {
                var p = bx + y * stride[1]
                for _ in 0..<os[2] {
                    dst[o] = src[p]
                    o += 1
                    p += stride[2]
                }
            }
        }
    }
}

extension Volume {
    /// The volume reoriented to `code` (default canonical RAS) by permutation and flips.
    public func reoriented(to code: String = "RAS") -> Volume {
        let r = AxisReorientation(from: affine, to: code)
        if r.isIdentity { return self }
        var out = Tensor(uninitialized: r.outputShape(shape))
        voxels.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in r.apply(src, shape: shape, into: dst) }
        }
        return Volume(voxels: out, affine: r.outputAffine(affine, inputShape: shape))
    }
}

extension LabelVolume {
    public func reoriented(to code: String = "RAS") -> LabelVolume {
        let r = AxisReorientation(from: affine, to: code)
        if r.isIdentity { return self }
        var out = [UInt8](repeating: 0, count: labels.count)
        labels.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in r.apply(src, shape: shape, into: dst) }
        }
        return LabelVolume(labels: out, shape: r.outputShape(shape), affine: r.outputAffine(affine, inputShape: shape))
    }
}
