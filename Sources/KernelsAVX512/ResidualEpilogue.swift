// The end of a Unet ResnetBlock in one pass over its output (`Unet3D.fusedResnet`): the second
// Block's GroupNorm affine and SiLU, plus the residual, which is either the block input itself or its
// 1×1 `res_conv` (computed here, 12 output channels × 32 positions at a time with the direct
// convolution's `kernel12x2` on a 32-column panel copied from the input, the two halves of a skip
// concatenation read from where they are). The result overwrites the convolution output it was computed from, so the
// normalised tensor, the res_conv output and the concatenation are never written to memory.
//
// Only call these after checking that the CPU has AVX-512F (this module is compiled for it).

public enum ResidualEpilogueAVX512 {
    /// Most columns per band of `normalizeAddResidual`'s res_conv (a multiple of 32; 32: one tile at a time).
    nonisolated(unsafe) public static var bandColumns = 128

    /// `w` (rows × cols, row-major) as `kernel12x2` reads it: [block of 12 rows][col][row in block], the
    /// last block's missing rows zero.
    public static func packWeight(_ w: UnsafePointer<Float>, rows: Int, cols: Int) -> [Float] {
        let blocks = (rows + 11) / 12
        var p = [Float](repeating: 0, count: max(1, blocks * cols * 12))
        p.withUnsafeMutableBufferPointer { bp in
            for r in 0..<rows {
                let d = bp.baseAddress! + (r / 12) * cols * 12 + r % 12
                for c in 0..<cols { d[c * 12] = w[r * cols + c] }
            }
        }
        return p
    }

    /// Columns `j0..<j1` of `h` (`channels` rows, row stride `s`), in place:
    /// h[c, j] = act(h[c, j]·a[c] + o[c]) + r[c, j] (act = SiLU when `silu`), where
    /// * without `weight`: r = `identity`[c·s + j] (the block input, `channels` rows of stride s);
    /// * with `weight` (`packWeight` of the res_conv's [channels × (c1 + c2)] matrix): r = bias[c] +
    ///   Σ_k W[c, k]·x[k, j] over x = [x1 (c1 rows); x2 (c2 rows)], both of row stride s.
    /// The SiLU is `NormActivationAVX512.affine`'s (the same operations per element).
    public static func normalizeAddResidual(h: UnsafeMutablePointer<Float>, channels: Int, stride s: Int,
                                            columns j0: Int, _ j1: Int,
                                            scale a: UnsafePointer<Float>, shift o: UnsafePointer<Float>, silu: Bool,
                                            identity: UnsafePointer<Float>?,
                                            weight: UnsafePointer<Float>?, bias: UnsafePointer<Float>?,
                                            x1: UnsafePointer<Float>?, c1: Int, x2: UnsafePointer<Float>?, c2: Int) {
        guard j1 > j0 else { return }
        guard let weight else {
            let r = identity!
            for c in 0..<channels {
                let av = V(repeating: a[c]), ov = V(repeating: o[c])
                let hp = h + c * s, rp = r + c * s
                var j = j0
                while j + 16 <= j1 {
                    let v = load(hp + j) * av + ov
                    store(hp + j, (silu ? siluVector(v) : v) + load(rp + j))
                    j += 16
                }
                if j < j1 {
                    var t = V.zero
                    for i in 0..<(j1 - j) { t[i] = hp[j + i] }
                    let v = t * av + ov
                    let y = silu ? siluVector(v) : v
                    for i in 0..<(j1 - j) { hp[j + i] = y[i] + rp[j + i] }
                }
            }
            return
        }
        let blocks = (channels + 11) / 12, cin = c1 + c2
        // Columns in bands of up to `band` (a multiple of 32, its input panel ≤ 24 KiB): the band's inputs
        // are copied into a contiguous panel first, tile by tile ([32-column tile][cin][32], zero-padded past
        // the last column), reading each input row as one run of `band` floats. Read in place, the input
        // rows (row stride s: 55 296 bytes on the 24³ level, every row at one of two 4 KiB offsets) fall
        // into two L1 sets and evict each other between the row blocks. The res_conv results go to a
        // [channel][band] scratch; the epilogue then walks each output row of the band contiguously.
        let band = max(32, min(bandColumns, (24 << 10) / (4 * 32 * max(1, cin)) * 32))
        let tiles = band / 32
        let panel = UnsafeMutablePointer<Float>.allocate(capacity: max(1, cin) * band)
        defer { panel.deallocate() }
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: blocks * 12 * band)
        defer { scratch.deallocate() }
        var zero = 0
        var j = j0
        while j < j1 {
            let width = min(band, j1 - j), used = (width + 31) / 32
            for k in 0..<cin {
                let row = k < c1 ? x1! + k * s + j : x2! + (k - c1) * s + j
                for t in 0..<used {
                    let d = panel + (t * cin + k) * 32, c0 = t * 32
                    if c0 + 32 <= width {
                        store(d, load(row + c0)); store(d + 16, load(row + c0 + 16))
                    } else {
                        d.update(from: row + c0, count: width - c0)
                        (d + width - c0).update(repeating: 0, count: 32 - (width - c0))
                    }
                }
            }
            for t in 0..<used {
                for blk in 0..<blocks {
                    // [x1; x2] is one contiguous panel of cin rows: one K loop over both halves.
                    let out = scratch + blk * 12 * band + t * 32
                    if cin > 0 { kernel12x2(panel + t * cin * 32, 32, cin, &zero, 1, weight + blk * cin * 12, out, band, false) } else {
                        for r in 0..<12 { (out + r * band).update(repeating: 0, count: 32) }
                    }
                }
            }
            for c in 0..<channels {
                let av = V(repeating: a[c]), ov = V(repeating: o[c]), bv = V(repeating: bias?[c] ?? 0)
                let hp = h + c * s + j, tp = scratch + (c / 12) * 12 * band + (c % 12) * band
                var q = 0
                while q + 16 <= width {
                    let v = load(hp + q) * av + ov
                    store(hp + q, (silu ? siluVector(v) : v) + (load(tp + q) + bv))
                    q += 16
                }
                if q < width {
                    let n = width - q
                    var t = V.zero
                    for i in 0..<n { t[i] = hp[q + i] }
                    let v = t * av + ov
                    let y = (silu ? siluVector(v) : v) + (load(tp + q) + bv)
                    for i in 0..<n { hp[q + i] = y[i] }
                }
            }
            j += width
        }
    }
}
