import Foundation

/// PyTorch `F.interpolate` on N×C×D×H×W tensors.
extension Tensor {
    /// `mode='nearest'`: output index `i` reads input `min(floor(i·in/out), in − 1)` per dim
    /// (scale computed in Float32, as PyTorch).
    public func interpolateNearest(size: [Int]) -> Tensor {
        precondition(rank == 5 && size.count == 3 && size.allSatisfy { $0 > 0 }, "interpolateNearest: input \(shape), size \(size)")
        let idx = (0..<3).map { d -> [Int] in
            let inS = shape[2 + d], outS = size[d]
            let scale = Float(inS) / Float(outS)
            return (0..<outS).map { min(Int(floorf(Float($0) * scale)), inS - 1) }
        }
        let (d, h, w) = (shape[2], shape[3], shape[4])
        var out = Tensor(uninitialized: [shape[0], shape[1]] + size)
        let planes = shape[0] * shape[1]
        withPointer { x in
            out.withMutablePointer { y in
                KernelContext.parallelFor(planes * size[0]) { r in
                    for job in r {
                        let p = job / size[0], z = job % size[0]
                        let src = x + (p * d + idx[0][z]) * h * w
                        let dst = y + job * size[1] * size[2]
                        for yy in 0..<size[1] {
                            let line = src + idx[1][yy] * w, o = dst + yy * size[2]
                            for xx in 0..<size[2] { o[xx] = line[idx[2][xx]] }
                        }
                    }
                }
            }
        }
        return out
    }

    /// `mode='trilinear', align_corners=False`: source coordinate `(i + 0.5)·in/out − 0.5`, clamped at 0.
    public func interpolateTrilinear(size: [Int]) -> Tensor {
        precondition(rank == 5 && size.count == 3 && size.allSatisfy { $0 > 0 }, "interpolateTrilinear: input \(shape), size \(size)")
        // Per dim and output index: (i0, i1, λ0, λ1).
        let taps = (0..<3).map { d -> [(Int, Int, Float, Float)] in
            let inS = shape[2 + d], outS = size[d]
            let scale = Float(inS) / Float(outS)
            return (0..<outS).map { i in
                let src = max(scale * (Float(i) + 0.5) - 0.5, 0)
                let i0 = Int(src)
                let i1 = i0 + (i0 < inS - 1 ? 1 : 0)
                let l1 = src - Float(i0)
                return (i0, i1, 1 - l1, l1)
            }
        }
        let (d, h, w) = (shape[2], shape[3], shape[4])
        var out = Tensor(uninitialized: [shape[0], shape[1]] + size)
        let planes = shape[0] * shape[1]
        withPointer { x in
            out.withMutablePointer { y in
                KernelContext.parallelFor(planes * size[0]) { r in
                    for job in r {
                        let p = job / size[0], z = job % size[0]
                        let (z0, z1, a0, a1) = taps[0][z]
                        let s0 = x + (p * d + z0) * h * w, s1 = x + (p * d + z1) * h * w
                        let dst = y + job * size[1] * size[2]
                        for yy in 0..<size[1] {
                            let (y0, y1, b0, b1) = taps[1][yy]
                            let o = dst + yy * size[2]
                            for xx in 0..<size[2] {
                                let (x0, x1, c0, c1) = taps[2][xx]
                                let v0 = b0 * (c0 * s0[y0 * w + x0] + c1 * s0[y0 * w + x1])
                                    + b1 * (c0 * s0[y1 * w + x0] + c1 * s0[y1 * w + x1])
                                let v1 = b0 * (c0 * s1[y0 * w + x0] + c1 * s1[y0 * w + x1])
                                    + b1 * (c0 * s1[y1 * w + x0] + c1 * s1[y1 * w + x1])
                                o[xx] = a0 * v0 + a1 * v1
                            }
                        }
                    }
                }
            }
        }
        return out
    }
}
