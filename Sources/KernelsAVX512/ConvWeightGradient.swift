import Dispatch

// Direct weight gradient of a zero-padded 3D convolution on AVX-512, without an im2col buffer:
//
//   dW[co, ci, kd, kh, kw] = Σ_b Σ_(od, oh, ow) dY[b, co, od, oh, ow] · x[b, ci, od·sD + kd − pD, …]
//
// Both operands are laid out on one flattened grid so that every tap is a constant offset:
// * the input becomes virtual channels (ci, a, b, c) for the stride phases a < min(sD, kD) …
//   (space-to-depth, as the direct convolution does), each a stack of planes of `rows` × `pitch`
//   floats with the zero padding written out: X′[(ci,a,b,c), vd, vh, vw] = x[ci, vd·sD + a − pD, …];
// * dY is copied onto the same grid (plane `planeFloats`, row `pitch`), zero in the rows and
//   columns past the output;
// so tap (kd, kh, kw) of output position m = od·plane + oh·pitch + ow reads X′ at
// m + off, off = channel(ci, kd mod sD, …)·channelFloats + (kd / sD)·plane + (kh / sH)·pitch + kw / sW,
// and dW[co, (ci, tap)] = Σ_m dY′[co, m] · X′[m + off]: a dot product of two plain float streams.
// The micro-kernels (WeightGradientKernels.swift) keep R output channels × T taps of 16-lane
// partial sums in zmm registers over a chunk of positions (small enough that the chunk's dY rows
// and input window stay in L1 across the tap blocks) and add them to per-worker lane buffers;
// positions are split between the workers, and the lanes and workers are summed at the end.
//
// Only call this after checking that the CPU has AVX-512F (this module is compiled for it).

public enum ConvWeightGradient {
    /// Positions per chunk (a multiple of 16): one kernel call streams this many positions.
    nonisolated(unsafe) public static var chunkPositions = 512

    /// `dw` ([cout, cin, kD, kH, kW], overwritten) = Σ over the batch of the weight gradient of
    /// `y = conv3d(x, w)` with stride `stride` and zero padding `padding` (both sides), given
    /// `x` [batch, cin, inD, inH, inW] and `dy` [batch, cout, outD, outH, outW]
    /// (out = (in + 2·padding − k)/stride + 1; the caller checked the sizes).
    public static func compute(input x: UnsafePointer<Float>, channels cin: Int, inputDims: (Int, Int, Int),
                               gradOutput dy: UnsafePointer<Float>, outChannels cout: Int, outputDims: (Int, Int, Int),
                               kernel: (Int, Int, Int), stride: (Int, Int, Int), padding: (Int, Int, Int),
                               batch: Int, weightGradient dw: UnsafeMutablePointer<Float>, threads: Int) {
        let k = [kernel.0, kernel.1, kernel.2], s = [stride.0, stride.1, stride.2], p = [padding.0, padding.1, padding.2]
        let inDims = [inputDims.0, inputDims.1, inputDims.2], o = [outputDims.0, outputDims.1, outputDims.2]
        let taps = (0..<3).map { (k[$0] + s[$0] - 1) / s[$0] }        // virtual taps per dim
        let phases = (0..<3).map { min(s[$0], k[$0]) }                 // stride phases that some tap reads
        let pitch = o[2] + taps[2] - 1
        let rows = o[1] + taps[1] - 1
        let plane = rows * pitch
        let channelFloats = (o[0] + taps[0] - 1) * plane
        let virtualChannels = cin * phases[0] * phases[1] * phases[2]
        let positions = (o[0] * plane + 15) / 16 * 16                   // m range, whole vectors
        let maxLocal = (taps[0] - 1) * plane + (taps[1] - 1) * pitch + taps[2] - 1
        let xFloats = max(virtualChannels * channelFloats, (virtualChannels - 1) * channelFloats + maxLocal + positions) + 16
        let kv = k[0] * k[1] * k[2]
        let tapCount = cin * kv

        // Tap offsets, in dW's (ci, kd, kh, kw) order.
        var offsets = [Int](repeating: 0, count: tapCount)
        for ci in 0..<cin { for kd in 0..<k[0] { for kh in 0..<k[1] { for kw in 0..<k[2] {
            let cv = ((ci * phases[0] + kd % s[0]) * phases[1] + kh % s[1]) * phases[2] + kw % s[2]
            offsets[((ci * k[0] + kd) * k[1] + kh) * k[2] + kw] =
                cv * channelFloats + (kd / s[0]) * plane + (kh / s[1]) * pitch + kw / s[2]
        }}}}

        let shape = cout >= 8 ? 0 : (cout >= 4 ? 1 : 2)
        let tile = weightGradientTiles[shape]
        let rowBlocks = (cout + tile.rows - 1) / tile.rows
        let tapBlocks = (tapCount + tile.taps - 1) / tile.taps
        // Padded tap list (the last block repeats its last tap; those sums are dropped).
        var blockTaps = [Int](repeating: 0, count: tapBlocks * tile.taps)
        for q in 0..<blockTaps.count { blockTaps[q] = offsets[min(q, tapCount - 1)] }

        let xp = UnsafeMutablePointer<Float>.allocate(capacity: xFloats)
        defer { xp.deallocate() }
        let dyp = UnsafeMutablePointer<Float>.allocate(capacity: cout * positions)
        defer { dyp.deallocate() }
        var blockRows = [Int](repeating: 0, count: rowBlocks * tile.rows)
        for r in 0..<blockRows.count { blockRows[r] = min(r, cout - 1) * positions }

        let chunk = max(16, chunkPositions / 16 * 16)
        let chunks = (positions + chunk - 1) / chunk
        let workers = max(1, min(threads, chunks))
        // Per worker: the 16-lane partial sums of every tile, [rowBlock][tapBlock][R·T][16].
        let tileFloats = tile.rows * tile.taps * 16
        let laneFloats = rowBlocks * tapBlocks * tileFloats
        let lanes = UnsafeMutablePointer<Float>.allocate(capacity: workers * laneFloats)
        defer { lanes.deallocate() }
        lanes.initialize(repeating: 0, count: workers * laneFloats)

        let outSpatial = o[0] * o[1] * o[2], inSpatial = inDims[0] * inDims[1] * inDims[2]
        for b in 0..<batch {
            // The virtual input and the gradient on the flattened grid (both threads fill).
            let xb = x + b * cin * inSpatial, gb = dy + b * cout * outSpatial
            parallelChunks(virtualChannels + cout, threads) { j in
                if j < virtualChannels {
                    fillVirtualChannel(j, into: xp + j * channelFloats, input: xb, inDims: inDims, phases: phases,
                                       stride: s, padding: p, planes: o[0] + taps[0] - 1, rows: rows, pitch: pitch)
                } else {
                    let co = j - virtualChannels
                    let dst = dyp + co * positions, src = gb + co * outSpatial
                    for od in 0..<o[0] {
                        let pl = dst + od * plane
                        for oh in 0..<o[1] {
                            let row = pl + oh * pitch
                            row.initialize(from: src + (od * o[1] + oh) * o[2], count: o[2])
                            if pitch > o[2] { (row + o[2]).initialize(repeating: 0, count: pitch - o[2]) }
                        }
                        if rows > o[1] { (pl + o[1] * pitch).initialize(repeating: 0, count: (rows - o[1]) * pitch) }
                    }
                    if positions > o[0] * plane { (dst + o[0] * plane).initialize(repeating: 0, count: positions - o[0] * plane) }
                }
            }
            let tail = xFloats - virtualChannels * channelFloats
            (xp + virtualChannels * channelFloats).initialize(repeating: 0, count: tail)

            blockRows.withUnsafeBufferPointer { rp in blockTaps.withUnsafeBufferPointer { tp in
                let rowsBase = rp.baseAddress!, tapsBase = tp.baseAddress!
                let work = { (w: Int) in
                    let acc = lanes + w * laneFloats
                    for c in (chunks * w / workers)..<(chunks * (w + 1) / workers) {
                        let m0 = c * chunk, n = min(chunk, positions - m0)
                        // Row block outer: its dY rows of this chunk stay in L1 across the tap blocks.
                        for rb in 0..<rowBlocks {
                            for tb in 0..<tapBlocks {
                                weightGradientTile(shape, dyp + m0, rowsBase + rb * tile.rows, xp + m0,
                                                   tapsBase + tb * tile.taps, n, acc + (rb * tapBlocks + tb) * tileFloats)
                            }
                        }
                    }
                }
                if workers == 1 { work(0) } else { DispatchQueue.concurrentPerform(iterations: workers, execute: work) }
            }}
        }
        // Sum the lanes and the workers into dW (padding rows and taps dropped).
        parallelChunks(cout, threads) { co in
            let rb = co / tile.rows, r = co % tile.rows
            for q in 0..<tapCount {
                let tb = q / tile.taps, t = q % tile.taps
                var v = WV()
                for w in 0..<workers {
                    v += wload(lanes + w * laneFloats + (rb * tapBlocks + tb) * tileFloats + (r * tile.taps + t) * 16)
                }
                dw[co * tapCount + q] = v.sum()
            }
        }
    }

    /// Runs `body(j)` for j < count split into contiguous ranges over `threads` workers.
    static func parallelChunks(_ count: Int, _ threads: Int, _ body: (Int) -> Void) {
        let workers = max(1, min(threads, count))
        if workers == 1 { for j in 0..<count { body(j) }; return }
        DispatchQueue.concurrentPerform(iterations: workers) { w in
            for j in (count * w / workers)..<(count * (w + 1) / workers) { body(j) }
        }
    }

    /// Virtual channel j = (ci, a, b, c): planes × rows × pitch floats,
    /// X′[vd, vh, vw] = x[ci, vd·sD + a − pD, vh·sH + b − pH, vw·sW + c − pW] (0 outside).
    static func fillVirtualChannel(_ j: Int, into dst: UnsafeMutablePointer<Float>, input x: UnsafePointer<Float>,
                                   inDims: [Int], phases: [Int], stride s: [Int], padding p: [Int],
                                   planes: Int, rows: Int, pitch: Int) {
        let c = j % phases[2], b = (j / phases[2]) % phases[1], a = (j / (phases[2] * phases[1])) % phases[0]
        let ci = j / (phases[0] * phases[1] * phases[2])
        let (d, h, w) = (inDims[0], inDims[1], inDims[2])
        let src = x + ci * d * h * w
        // Columns: ix = col·sW + c − pW, interior for first ≤ col < end.
        let first = min(pitch, max(0, (p[2] - c + s[2] - 1) / s[2]))
        let lastIx = w - 1 - c + p[2]
        let end = lastIx < 0 ? first : min(pitch, max(first, lastIx / s[2] + 1))
        for vd in 0..<planes {
            let iz = vd * s[0] + a - p[0]
            let planeDst = dst + vd * rows * pitch
            if iz < 0 || iz >= d { planeDst.initialize(repeating: 0, count: rows * pitch); continue }
            for vh in 0..<rows {
                let iy = vh * s[1] + b - p[1]
                let row = planeDst + vh * pitch
                if iy < 0 || iy >= h { row.initialize(repeating: 0, count: pitch); continue }
                let line = src + (iz * h + iy) * w
                if first > 0 { row.initialize(repeating: 0, count: first) }
                if s[2] == 1 {
                    if end > first { (row + first).initialize(from: line + first + c - p[2], count: end - first) }
                } else {
                    for col in first..<end { row[col] = line[col * s[2] + c - p[2]] }
                }
                if end < pitch { (row + end).initialize(repeating: 0, count: pitch - end) }
            }
        }
    }
}
