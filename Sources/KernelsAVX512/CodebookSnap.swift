// Fused codebook snap on AVX-512: the nearest-code search of the VQ-GAN (`VQGAN3D.quantize`) without a
// GEMM's product matrix. Sixteen latent vectors sit in the lanes of 8 zmm registers (one per latent
// dimension); for each code the folded distance ‖e‖² − 2 z·e is 8 FMAs with the code's components
// broadcast from the augmented codebook [−2e, ‖e‖²]. Codes go 8 at a time (8 independent FMA chains),
// a tile of 64 codes' values is kept in a 4 KiB scratch (L1) for the rare re-scan, and only the
// lane-wise tile minimum is compared with each row's running minimum. Codes within rounding distance
// of the running minimum are re-scored with the reference's exact expression (‖z‖² − 2 z·e) + ‖e‖² in
// scalar Float (same operations and order as the portable path), so the chosen indices are the
// portable path's, ties going to the lowest index.
//
// Only call this after checking that the CPU has AVX-512F (this module is compiled for it).

private typealias F16 = SIMD16<Float>

@inline(__always) private func ld16(_ p: UnsafePointer<Float>) -> F16 { UnsafeRawPointer(p).loadUnaligned(as: F16.self) }
@inline(__always) private func ld16(_ p: UnsafeMutablePointer<Float>) -> F16 { UnsafeRawPointer(p).loadUnaligned(as: F16.self) }
@inline(__always) private func st16(_ p: UnsafeMutablePointer<Float>, _ v: F16) { UnsafeMutableRawPointer(p).storeBytes(of: v, as: F16.self) }

public enum CodebookSnapAVX512 {
    /// Latent dimension the kernel is written for.
    public static let dimension = 8
    /// Largest tile (codes per running-minimum check); the codes per call must be a multiple of 8.
    public static let maxTileCodes = 256
    /// Floats of the per-thread scratch that `search` needs.
    public static let scratchCount = (maxTileCodes + 1) * 16

    /// Nearest-code search for the rows `rows` (a range of whole 16-row blocks of the padded latent).
    ///
    /// - `latent`: the latent transposed, `latent[d·pitch + r]` for d < 8 and r < pitch (pitch a multiple of 16);
    ///   `squaredNorms[r]` = ‖z_r‖² as the portable path computes it (sequential Float sum).
    /// - `codebook` (codes × 8), `augmented` (codes × 9: −2e then ‖e‖²), `norms` (‖e‖²), `maxNorm` = max ‖e‖².
    /// - State per row, kept across calls: `runningMin` (+∞ at first) is the smallest folded value seen,
    ///   `bestValue` (+∞ at first) / `bestIndex` the best exact distance and its code.
    /// - Codes `codeRange` (bounds multiples of 8) are visited in increasing order, `chunkCodes` at a
    ///   time for every row block (the chunk of the augmented codebook stays in L1), each row's running
    ///   minimum checked once per `tileCodes` (≤ 256, a multiple of 8) codes.
    /// - Rows ≥ `validRows` are padding: they are computed but never re-scored.
    public static func search(latent: UnsafePointer<Float>, pitch: Int, squaredNorms zz: UnsafePointer<Float>,
                              rows: Range<Int>, validRows: Int,
                              codebook e: UnsafePointer<Float>, augmented a: UnsafePointer<Float>,
                              norms: UnsafePointer<Float>, maxNorm: Float, codeRange: Range<Int>, tileCodes: Int, chunkCodes: Int,
                              runningMin: UnsafeMutablePointer<Float>, bestValue: UnsafeMutablePointer<Float>,
                              bestIndex: UnsafeMutablePointer<Int32>, scratch: UnsafeMutablePointer<Float>) {
        precondition(rows.lowerBound % 16 == 0 && rows.count % 16 == 0 && rows.upperBound <= pitch && pitch % 16 == 0,
                     "CodebookSnapAVX512: rows \(rows) are not whole 16-row blocks of pitch \(pitch)")
        precondition(codeRange.lowerBound % 8 == 0 && codeRange.count % 8 == 0, "CodebookSnapAVX512: codes \(codeRange) not in groups of 8")
        let tileSize = min(maxTileCodes, max(8, tileCodes / 8 * 8))
        let chunk = max(tileSize, chunkCodes / tileSize * tileSize)
        let twoMax = F16(repeating: 2 * maxNorm), eps32 = F16(repeating: 32 * Float.ulpOfOne)
        let signMask = SIMD16<UInt32>(repeating: 0x7FFF_FFFF)
        let lane = SIMD16<Int32>(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)
        var c0 = codeRange.lowerBound
        while c0 < codeRange.upperBound {
            let cEnd = min(codeRange.upperBound, c0 + chunk)
            var r0 = rows.lowerBound
            while r0 < rows.upperBound {
                // As the portable path: zz + 2·maxNorm, then + |lowest|, times 32ε.
                let base = ld16(zz + r0) + twoMax
                let valid = lane .< SIMD16<Int32>(repeating: Int32(clamping: validRows - r0))
                var rm = ld16(runningMin + r0)
                var t0 = c0
                while t0 < cEnd {
                    let nt = min(tileSize, cEnd - t0)
                    tile(latent, pitch, r0, a + t0 * 9, nt, scratch, scratch + maxTileCodes * 16)
                    let tmin = ld16(scratch + maxTileCodes * 16)
                    let lowest = rm.replacing(with: tmin, where: tmin .< rm)
                    let magnitude = unsafeBitCast(unsafeBitCast(lowest, to: SIMD16<UInt32>.self) & signMask, to: F16.self)
                    let slack = eps32 * (base + magnitude)
                    // Rows whose tile minimum may tie or beat their best so far (as `!(m > rm + slack)`).
                    let candidates = .!(tmin .> rm + slack) .& valid
                    rm = lowest
                    if anyLane(candidates) {
                        // Lanes that are not candidates get −∞: only the candidates' near-minimal codes hit.
                        let threshold = (lowest + slack).replacing(with: -.infinity, where: .!candidates)
                        var p = UnsafePointer(scratch)
                        for k in 0..<nt {
                            let hit = ld16(p) .<= threshold
                            if anyLane(hit) {
                                for l in 0..<16 where hit[l] {
                                    rescore(latent, pitch, zz, e, norms, row: r0 + l, code: t0 + k, bestValue, bestIndex)
                                }
                            }
                            p += 16
                        }
                    }
                    t0 += nt
                }
                st16(runningMin + r0, rm)
                r0 += 16
            }
            c0 = cEnd
        }
    }

    /// Whether any lane is set: an OR by halves (`any(_:)` is a scalar loop over the lanes here).
    @inline(__always)
    private static func anyLane(_ m: SIMDMask<SIMD16<Int32>>) -> Bool {
        let v = unsafeBitCast(m, to: SIMD16<Int32>.self)
        let h = v.lowHalf | v.highHalf, q = h.lowHalf | h.highHalf, e = q.lowHalf | q.highHalf
        return (e[0] | e[1]) != 0
    }

    /// The reference's distance (‖z‖² − 2 z·e) + ‖e‖² of one row and code, in scalar Float in the
    /// portable path's order; keeps the smaller (the first on ties: codes come in increasing order).
    @inline(never)
    private static func rescore(_ latent: UnsafePointer<Float>, _ pitch: Int, _ zz: UnsafePointer<Float>,
                                _ e: UnsafePointer<Float>, _ norms: UnsafePointer<Float>, row r: Int, code k: Int,
                                _ bestValue: UnsafeMutablePointer<Float>, _ bestIndex: UnsafeMutablePointer<Int32>) {
        var dot: Float = 0
        for c in 0..<8 { dot += latent[c * pitch + r] * e[k * 8 + c] }
        let d = (zz[r] - 2 * dot) + norms[k]
        if d < bestValue[r] { bestValue[r] = d; bestIndex[r] = Int32(k) }
    }

    /// Folded distances ‖e‖² − 2 z·e of codes `nt` (a multiple of 8) codes, augmented rows at `a` (9 floats
    /// each: −2e, ‖e‖²), to the 16 rows whose components are `latent[d·pitch + r0 ..< +16]`: stored to
    /// `out[16k ..< 16k + 16]` for code k, the lane-wise minimum stored to `minimum`. One function with
    /// every accumulator a separate local, so each stays in its own zmm register.
    @inline(never)
    private static func tile(_ latent: UnsafePointer<Float>, _ pitch: Int, _ r0: Int, _ a: UnsafePointer<Float>, _ nt: Int,
                             _ out: UnsafeMutablePointer<Float>, _ minimum: UnsafeMutablePointer<Float>) {
        let z0 = ld16(latent + r0), z1 = ld16(latent + pitch + r0), z2 = ld16(latent + 2 * pitch + r0)
        let z3 = ld16(latent + 3 * pitch + r0), z4 = ld16(latent + 4 * pitch + r0), z5 = ld16(latent + 5 * pitch + r0)
        let z6 = ld16(latent + 6 * pitch + r0), z7 = ld16(latent + 7 * pitch + r0)
        var tmin = F16(repeating: .infinity)
        var ap = a, op = out
        for _ in 0..<(nt / 8) {
            var a0 = F16(repeating: ap[8])
            var a1 = F16(repeating: ap[17])
            var a2 = F16(repeating: ap[26])
            var a3 = F16(repeating: ap[35])
            var a4 = F16(repeating: ap[44])
            var a5 = F16(repeating: ap[53])
            var a6 = F16(repeating: ap[62])
            var a7 = F16(repeating: ap[71])
            a0.addProduct(z0, F16(repeating: ap[0])); a1.addProduct(z0, F16(repeating: ap[9])); a2.addProduct(z0, F16(repeating: ap[18])); a3.addProduct(z0, F16(repeating: ap[27]))
            a4.addProduct(z0, F16(repeating: ap[36])); a5.addProduct(z0, F16(repeating: ap[45])); a6.addProduct(z0, F16(repeating: ap[54])); a7.addProduct(z0, F16(repeating: ap[63]))
            a0.addProduct(z1, F16(repeating: ap[1])); a1.addProduct(z1, F16(repeating: ap[10])); a2.addProduct(z1, F16(repeating: ap[19])); a3.addProduct(z1, F16(repeating: ap[28]))
            a4.addProduct(z1, F16(repeating: ap[37])); a5.addProduct(z1, F16(repeating: ap[46])); a6.addProduct(z1, F16(repeating: ap[55])); a7.addProduct(z1, F16(repeating: ap[64]))
            a0.addProduct(z2, F16(repeating: ap[2])); a1.addProduct(z2, F16(repeating: ap[11])); a2.addProduct(z2, F16(repeating: ap[20])); a3.addProduct(z2, F16(repeating: ap[29]))
            a4.addProduct(z2, F16(repeating: ap[38])); a5.addProduct(z2, F16(repeating: ap[47])); a6.addProduct(z2, F16(repeating: ap[56])); a7.addProduct(z2, F16(repeating: ap[65]))
            a0.addProduct(z3, F16(repeating: ap[3])); a1.addProduct(z3, F16(repeating: ap[12])); a2.addProduct(z3, F16(repeating: ap[21])); a3.addProduct(z3, F16(repeating: ap[30]))
            a4.addProduct(z3, F16(repeating: ap[39])); a5.addProduct(z3, F16(repeating: ap[48])); a6.addProduct(z3, F16(repeating: ap[57])); a7.addProduct(z3, F16(repeating: ap[66]))
            a0.addProduct(z4, F16(repeating: ap[4])); a1.addProduct(z4, F16(repeating: ap[13])); a2.addProduct(z4, F16(repeating: ap[22])); a3.addProduct(z4, F16(repeating: ap[31]))
            a4.addProduct(z4, F16(repeating: ap[40])); a5.addProduct(z4, F16(repeating: ap[49])); a6.addProduct(z4, F16(repeating: ap[58])); a7.addProduct(z4, F16(repeating: ap[67]))
            a0.addProduct(z5, F16(repeating: ap[5])); a1.addProduct(z5, F16(repeating: ap[14])); a2.addProduct(z5, F16(repeating: ap[23])); a3.addProduct(z5, F16(repeating: ap[32]))
            a4.addProduct(z5, F16(repeating: ap[41])); a5.addProduct(z5, F16(repeating: ap[50])); a6.addProduct(z5, F16(repeating: ap[59])); a7.addProduct(z5, F16(repeating: ap[68]))
            a0.addProduct(z6, F16(repeating: ap[6])); a1.addProduct(z6, F16(repeating: ap[15])); a2.addProduct(z6, F16(repeating: ap[24])); a3.addProduct(z6, F16(repeating: ap[33]))
            a4.addProduct(z6, F16(repeating: ap[42])); a5.addProduct(z6, F16(repeating: ap[51])); a6.addProduct(z6, F16(repeating: ap[60])); a7.addProduct(z6, F16(repeating: ap[69]))
            a0.addProduct(z7, F16(repeating: ap[7])); a1.addProduct(z7, F16(repeating: ap[16])); a2.addProduct(z7, F16(repeating: ap[25])); a3.addProduct(z7, F16(repeating: ap[34]))
            a4.addProduct(z7, F16(repeating: ap[43])); a5.addProduct(z7, F16(repeating: ap[52])); a6.addProduct(z7, F16(repeating: ap[61])); a7.addProduct(z7, F16(repeating: ap[70]))
            st16(op + 0, a0)
            st16(op + 16, a1)
            st16(op + 32, a2)
            st16(op + 48, a3)
            st16(op + 64, a4)
            st16(op + 80, a5)
            st16(op + 96, a6)
            st16(op + 112, a7)
            var m01 = a0; m01.replace(with: a1, where: a1 .< m01)
            var m23 = a2; m23.replace(with: a3, where: a3 .< m23)
            var m45 = a4; m45.replace(with: a5, where: a5 .< m45)
            var m67 = a6; m67.replace(with: a7, where: a7 .< m67)
            m01.replace(with: m23, where: m23 .< m01)
            m45.replace(with: m67, where: m67 .< m45)
            m01.replace(with: m45, where: m45 .< m01)
            tmin.replace(with: m01, where: m01 .< tmin)
            ap += 72
            op += 128
        }
        st16(minimum, tmin)
    }
}
