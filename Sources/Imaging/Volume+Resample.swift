import Dispatch
import Kernels

/// Resampling to a target voxel spacing, keeping world alignment (MONAI `Spacingd` semantics):
/// the output keeps the input's axis directions, voxel (0,0,0) stays at the same world
/// position, and each axis covers the input's field of view: n_out = round(n_in · s_in / s_out).
/// Output voxel a along an axis samples input position a · s_out / s_in; positions past the
/// last input voxel take the border value for CT (MONAI's `padding_mode="border"`); for labels,
/// positions outside the scanned field of view (more than half a voxel past an edge voxel's
/// centre) are background, so resampling does not inflate organs cut by the scan edge.
public struct ResampleGrid: Equatable, Sendable {
    public var inputShape: [Int]
    public var outputShape: [Int]
    /// Input index step per output voxel, per axis (s_out / s_in).
    public var step: [Double]
    public var outputAffine: Affine

    public init(inputShape: [Int], affine: Affine, targetSpacing: [Double]) {
        precondition(targetSpacing.count == 3 && targetSpacing.allSatisfy { $0 > 0 },
                     "target spacing must be three positive values, got \(targetSpacing)")
        let s = affine.spacing
        self.inputShape = inputShape
        self.step = (0..<3).map { targetSpacing[$0] / s[$0] }
        self.outputShape = (0..<3).map { d in
            max(1, Int((Double(inputShape[d]) * s[d] / targetSpacing[d]).rounded()))
        }
        var out = affine
        for c in 0..<3 {
            for r in 0..<3 { out[r, c] = affine[r, c] * step[c] }
        }
        self.outputAffine = out
    }

    /// Per output index along `axis`: the lower input index, the upper one, and the weight of the upper.
    func linearTaps(axis d: Int) -> (lo: [Int32], hi: [Int32], w: [Float]) {
        let n = inputShape[d], m = outputShape[d]
        var lo = [Int32](repeating: 0, count: m), hi = lo, w = [Float](repeating: 0, count: m)
        for a in 0..<m {
            let p = min(max(Double(a) * step[d], 0), Double(n - 1))
            let i0 = min(Int(p), n - 1)
            let i1 = min(i0 + 1, n - 1)
            lo[a] = Int32(i0); hi[a] = Int32(i1); w[a] = Float(p - Double(i0))
        }
        return (lo, hi, w)
    }

    /// Per output index along `axis`: the nearest input index, or -1 outside the field of view
    /// (position ≥ n − 0.5, which half-up rounding would send to index n).
    func nearestTaps(axis d: Int) -> [Int32] {
        let n = inputShape[d]
        return (0..<outputShape[d]).map { a in
            let p = Double(a) * step[d]
            return p >= Double(n) - 0.5 ? -1 : Int32(min(Int(p.rounded()), n - 1))
        }
    }
}

/// How many threads resampling may use (defaults to the active processor count).
public enum ImagingThreads {
    nonisolated(unsafe) public static var count: Int = max(1, ProcessInfoCount.active)
}

enum ProcessInfoCount {
    static var active: Int {
        #if canImport(Glibc)
        return Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        #else
        return 2
        #endif
    }
}

#if canImport(Glibc)
import Glibc
#endif

@inline(__always)
func parallelFor(_ n: Int, threads: Int = ImagingThreads.count, _ body: (Range<Int>) -> Void) {
    let t = max(1, min(threads, n))
    if t == 1 { body(0..<n); return }
    let chunk = (n + t - 1) / t
    DispatchQueue.concurrentPerform(iterations: t) { c in
        let lo = c * chunk, hi = min(n, lo + chunk)
        if lo < hi { body(lo..<hi) }
    }
}

extension Volume {
    /// Trilinear resampling to `spacing` (mm), as separable passes z, then y, then x.
    public func resampled(spacing target: [Double] = [1, 1, 1]) -> Volume {
        let g = ResampleGrid(inputShape: shape, affine: affine, targetSpacing: target)
        let (nx, ny, nz) = (shape[0], shape[1], shape[2])
        let (mx, my, mz) = (g.outputShape[0], g.outputShape[1], g.outputShape[2])
        let tz = g.linearTaps(axis: 2), ty = g.linearTaps(axis: 1), tx = g.linearTaps(axis: 0)

        // Pass 1 (z): [nx, ny, nz] -> [nx, ny, mz]
        var a = Tensor(uninitialized: [nx, ny, mz])
        voxels.withUnsafeBufferPointer { src in
            a.withUnsafeMutableBufferPointer { dst in
                let s = src.baseAddress!, d = dst.baseAddress!
                tz.lo.withUnsafeBufferPointer { lo in tz.hi.withUnsafeBufferPointer { hi in tz.w.withUnsafeBufferPointer { w in
                    parallelFor(nx * ny) { rows in
                        for r in rows {
                            let sr = s + r * nz, dr = d + r * mz
                            for c in 0..<mz {
                                let v0 = sr[Int(lo[c])], v1 = sr[Int(hi[c])]
                                dr[c] = v0 + w[c] * (v1 - v0)
                            }
                        }
                    }
                }}}
            }
        }
        // Pass 2 (y): [nx, ny, mz] -> [nx, my, mz], rows of mz contiguous floats.
        var b = Tensor(uninitialized: [nx, my, mz])
        a.withUnsafeBufferPointer { src in
            b.withUnsafeMutableBufferPointer { dst in
                let s = src.baseAddress!, d = dst.baseAddress!
                parallelFor(nx * my) { rows in
                    for r in rows {
                        let x = r / my, y = r % my
                        let r0 = s + (x * ny + Int(ty.lo[y])) * mz, r1 = s + (x * ny + Int(ty.hi[y])) * mz
                        let wy = ty.w[y], dr = d + r * mz
                        blendRows(r0, r1, wy, dr, mz)
                    }
                }
            }
        }
        // Pass 3 (x): [nx, my, mz] -> [mx, my, mz], planes of my·mz contiguous floats.
        var out = Tensor(uninitialized: g.outputShape)
        let plane = my * mz
        b.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                let s = src.baseAddress!, d = dst.baseAddress!
                // Split each plane into row blocks so both threads work even when mx is small.
                let blocks = mx * my
                parallelFor(blocks) { range in
                    for r in range {
                        let x = r / my, y = r % my
                        let p0 = s + Int(tx.lo[x]) * plane + y * mz, p1 = s + Int(tx.hi[x]) * plane + y * mz
                        blendRows(p0, p1, tx.w[x], d + x * plane + y * mz, mz)
                    }
                }
            }
        }
        return Volume(voxels: out, affine: g.outputAffine)
    }
}

/// dst[i] = r0[i] + w · (r1[i] − r0[i]), vectorised.
@inline(__always)
func blendRows(_ r0: UnsafePointer<Float>, _ r1: UnsafePointer<Float>, _ w: Float,
               _ dst: UnsafeMutablePointer<Float>, _ n: Int) {
    if w == 0 { dst.update(from: r0, count: n); return }
    var i = 0
    let wv = SIMD8<Float>(repeating: w)
    while i + 8 <= n {
        let a = UnsafeRawPointer(r0 + i).loadUnaligned(as: SIMD8<Float>.self)
        let b = UnsafeRawPointer(r1 + i).loadUnaligned(as: SIMD8<Float>.self)
        UnsafeMutableRawPointer(dst + i).storeBytes(of: a + wv * (b - a), as: SIMD8<Float>.self)
        i += 8
    }
    while i < n { dst[i] = r0[i] + w * (r1[i] - r0[i]); i += 1 }
}

extension LabelVolume {
    /// Nearest-neighbour resampling to `spacing` (mm) on the same grid rule as `Volume.resampled`.
    public func resampled(spacing target: [Double] = [1, 1, 1]) -> LabelVolume {
        let g = ResampleGrid(inputShape: shape, affine: affine, targetSpacing: target)
        let (ny, nz) = (shape[1], shape[2])
        let (mx, my, mz) = (g.outputShape[0], g.outputShape[1], g.outputShape[2])
        let ix = g.nearestTaps(axis: 0), iy = g.nearestTaps(axis: 1), iz = g.nearestTaps(axis: 2)
        var out = [UInt8](repeating: 0, count: mx * my * mz)
        labels.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                let s = src.baseAddress!, d = dst.baseAddress!
                iz.withUnsafeBufferPointer { iz in
                    parallelFor(mx * my) { rows in
                        var prevSrcRow = -1
                        var prevDst: UnsafeMutablePointer<UInt8>? = nil
                        for r in rows {
                            let x = r / my, y = r % my
                            let dr = d + r * mz
                            if ix[x] < 0 || iy[y] < 0 {
                                dr.initialize(repeating: 0, count: mz)  // outside the field of view
                                prevSrcRow = -1; prevDst = nil
                                continue
                            }
                            let srcRow = (Int(ix[x]) * ny + Int(iy[y])) * nz
                            if srcRow == prevSrcRow, let p = prevDst {
                                dr.update(from: p, count: mz)  // repeated source row: copy the output row
                            } else {
                                let sr = s + srcRow
                                for c in 0..<mz { let z = Int(iz[c]); dr[c] = z < 0 ? 0 : sr[z] }
                            }
                            prevSrcRow = srcRow; prevDst = dr
                        }
                    }
                }
            }
        }
        return LabelVolume(labels: out, shape: g.outputShape, affine: g.outputAffine)
    }
}
