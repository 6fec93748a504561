// AVX-512 softmaxes of the batched spatial linear attention (Kernels/Models/UnetAttentionBatched.swift):
// one head's q and k rows hold the positions of every frame side by side (row stride `stride`), so
// the q softmax (over features, per position) runs over all frames at once in full 16-lane groups,
// and the k softmax (over the positions of one frame) runs per frame segment of each row.

public enum UnetAttentionBatchedCore {
    public typealias V16 = SIMD16<Float>
    public typealias P = UnsafeMutablePointer<Float>

    @inline(__always) static func ld(_ p: P) -> V16 { UnsafeRawPointer(p).loadUnaligned(as: V16.self) }
    @inline(__always) static func st(_ p: P, _ v: V16) { UnsafeMutableRawPointer(p).storeBytes(of: v, as: V16.self) }

    /// q (dh rows, row stride `stride`, `columns` a multiple of 16): at each column, softmax over the
    /// dh rows, × `scale`.
    public static func featureSoftmax(q: P, stride: Int, columns: Int, dimHead dh: Int, scale: Float) {
        precondition(columns % 16 == 0, "featureSoftmax: \(columns) columns is not a multiple of 16")
        var i = 0
        while i < columns {
            var mx = ld(q + i)
            for d in 1..<dh { let x = ld(q + d * stride + i); mx = mx.replacing(with: x, where: x .> mx) }
            var sum = V16()
            for d in 0..<dh {
                let e = UnetAttentionCore.exp16(ld(q + d * stride + i) - mx)
                st(q + d * stride + i, e)
                sum += e
            }
            let f = scale / sum
            for d in 0..<dh { st(q + d * stride + i, ld(q + d * stride + i) * f) }
            i += 16
        }
    }

    /// k (dh rows, row stride `stride`): softmax over each segment of `positions` columns (frame f
    /// is columns f·positions ..< (f + 1)·positions), for `frames` frames.
    public static func segmentSoftmax(k: P, stride: Int, rows dh: Int, frames F: Int, positions n: Int) {
        let full = n / 16 * 16, rest = n - full
        for d in 0..<dh {
            for f in 0..<F {
                let r = k + d * stride + f * n
                var mx = V16(repeating: -.infinity)
                var j = 0
                while j < full { let x = ld(r + j); mx = mx.replacing(with: x, where: x .> mx); j += 16 }
                if rest > 0 {
                    let x = UnetAttentionCore.ldPartial(r + full, rest, fill: -.infinity)
                    mx = mx.replacing(with: x, where: x .> mx)
                }
                let m = mx.max()
                var acc = V16()
                j = 0
                while j < full {
                    let e = UnetAttentionCore.exp16(ld(r + j) - m)
                    st(r + j, e)
                    acc += e
                    j += 16
                }
                var tail = V16()
                if rest > 0 {
                    tail = UnetAttentionCore.exp16(UnetAttentionCore.ldPartial(r + full, rest, fill: 0) - m)
                    for l in rest..<16 { tail[l] = 0 }
                    acc += tail
                }
                let inv = V16(repeating: 1 / acc.sum())
                j = 0
                while j < full { st(r + j, ld(r + j) * inv); j += 16 }
                if rest > 0 { UnetAttentionCore.stPartial(r + full, tail * inv, rest) }
            }
        }
    }
}
