// The end of a Unet ResnetBlock in one pass over its output (`Unet3D.fusedResnet`): the second
// Block's GroupNorm affine and SiLU, plus the residual, which is either the block input itself or its
// 1×1 `res_conv` (computed here, 12 output channels × 32 positions at a time with the direct
// convolution's `kernel12x2` on a 32-column panel copied from the input, the two halves of a skip
// concatenation read from where they are). The result overwrites the convolution output it was computed from, so the
// normalised tensor, the res_conv output and the concatenation are never written to memory.
//
// Only call these after checking that the CPU has AVX-512F (this module is compiled for it).

public enum ResidualEpilogueAVX512 {
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
        let tile = UnsafeMutablePointer<Float>.allocate(capacity: 12 * 32)
        defer { tile.deallocate() }
        // Each 32-column tile's inputs are copied into a contiguous panel first (zero-padded for the last,
        // partial tile): read in place, the input rows (row stride s: 55 296 bytes on the 24³ level, every
        // row at one of two 4 KiB offsets) fall into two L1 sets and evict each other between the row blocks.
        let panel = UnsafeMutablePointer<Float>.allocate(capacity: max(1, cin) * 32)
        defer { panel.deallocate() }
        var zero = 0
        var j = j0
        while j < j1 {
            let width = min(32, j1 - j)
            if width == 32 {
                if let x1 { for k in 0..<c1 { let q = x1 + k * s + j; store(panel + k * 32, load(q)); store(panel + k * 32 + 16, load(q + 16)) } }
                if let x2 {
                    for k in 0..<c2 { let q = x2 + k * s + j; store(panel + (c1 + k) * 32, load(q)); store(panel + (c1 + k) * 32 + 16, load(q + 16)) }
                }
            } else {
                panel.update(repeating: 0, count: max(1, cin) * 32)
                if let x1 { for k in 0..<c1 { (panel + k * 32).update(from: x1 + k * s + j, count: width) } }
                if let x2 { for k in 0..<c2 { (panel + (c1 + k) * 32).update(from: x2 + k * s + j, count: width) } }
            }
            for blk in 0..<blocks {
                // [x1; x2] is one contiguous panel of cin rows: one K loop over both halves.
                if cin > 0 { kernel12x2(panel, 32, cin, &zero, 1, weight + blk * cin * 12, tile, 32, false) } else {
                    tile.update(repeating: 0, count: 12 * 32)
                }
                for r in 0..<min(12, channels - blk * 12) {
                    let c = blk * 12 + r
                    let av = V(repeating: a[c]), ov = V(repeating: o[c]), bv = V(repeating: bias?[c] ?? 0)
                    let hp = h + c * s + j, tp = tile + r * 32
                    if width == 32 {
                        let v0 = load(hp) * av + ov, v1 = load(hp + 16) * av + ov
                        store(hp, (silu ? siluVector(v0) : v0) + (load(tp) + bv))
                        store(hp + 16, (silu ? siluVector(v1) : v1) + (load(tp + 16) + bv))
                    } else {
                        var q = 0
                        while q < width {
                            let n = min(16, width - q)
                            var t = V.zero
                            for i in 0..<n { t[i] = hp[q + i] }
                            let v = t * av + ov
                            let y = (silu ? siluVector(v) : v) + (load(tp + q) + bv)
                            for i in 0..<n { hp[q + i] = y[i] }
                            q += 16
                        }
                    }
                }
            }
            j += width
        }
    }
}
