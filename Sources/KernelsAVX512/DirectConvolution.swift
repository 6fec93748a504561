import Dispatch

// Direct (implicit-GEMM) 3D convolution on AVX-512, for one image and one group.
//
// Everything is reduced to one shape of work: a stride-1 correlation of a *virtual input* X′
// (C′ channels of padded planes, built on the fly) with a small kernel, written to the output at
// a stride. Within a virtual plane the (row, column) positions are flattened with the plane's
// pitch P, so a tap (th, tw) is a constant offset th·P + tw and a 16-wide vector of outputs reads a
// plain 16-wide vector of inputs (the P − outW columns per row past the end are computed and
// dropped). The micro-kernels (MicroKernels.swift) keep an 8-channel × 48-position tile in 24 zmm
// registers and stream the taps of all C′ channels through it.
//
// * Convolution with stride s and padding F: C′ = Cin·sD·sH·sW channels (space-to-depth, the
//   sub-sampled phases of the input), taps ⌈k/s⌉ per dim, X′[(ci,a,b,c), v] = x[ci, v·s + (a,b,c) − F]
//   (replicate: clamped; zero: 0 outside). For stride 1 that is just the padded input.
// * Transposed convolution with stride s: one sub-pixel phase per (od, oh, ow) mod s; each phase is a
//   stride-1 correlation of the zero-padded input with the flipped sub-kernel w[φ + s·j], written to
//   every s-th output (no zero insertion, no scatter).
//
// Only call these after checking that the CPU has AVX-512F (this module is compiled for it).

/// One output phase along one dim: outputs `start + stride·p` for `p < count`, each summing `taps`
/// virtual-input positions `p + offset + t`.
struct PhaseDim {
    var start: Int
    var count: Int
    var taps: Int
    var offset: Int
}

/// How the virtual input plane `v` is built from the real input, per dim: real index
/// `v·step + phase − front` for phases `0..<step` (each phase a separate virtual channel).
struct VirtualInput {
    var step: (Int, Int, Int)
    var front: (Int, Int, Int)
    var replicate: Bool
    /// Input channels from `split` on are read from `second` (channel `split` is its channel 0): a
    /// channel concatenation without the copy.
    var second: UnsafePointer<Float>? = nil
    var split = Int.max

    /// Channel `ci`'s [d, h, w] volume.
    @inline(__always) func channel(_ x: UnsafePointer<Float>, _ ci: Int, volume: Int) -> UnsafePointer<Float> {
        ci < split ? x + ci * volume : second! + (ci - split) * volume
    }
}

/// Tile shapes of the micro-kernels.
private enum Tile {
    case wide8    // 8 channels × 48 positions (kernel8x3)
    case wide12   // 12 channels × 32 positions (kernel12x2)
    case narrow1  // 1 channel × 64 positions (kernel1x4)
    var rows: Int {
        switch self { case .wide8: return 8; case .wide12: return 12; case .narrow1: return 1 }
    }
    var width: Int {
        switch self { case .wide8: return 48; case .wide12: return 32; case .narrow1: return 64 }
    }
}

public enum DirectConvolution {
    /// Work fused into a convolution (the ResnetBlocks' GroupNorm statistics, `Unet3D.fusedResnet`).
    public struct Fusion {
        /// When set (stride-1 zero-padded convolutions only): for every output channel co and output plane
        /// od, `statistics[2·(co·outD + od)]` = Σ y over the plane and `[… + 1]` = Σ (y − c)² with c that
        /// sum over the plane size (`NormActivationAVX512.moments` of the plane just written, still in L1).
        public var statistics: UnsafeMutablePointer<Float>?
        public init(statistics: UnsafeMutablePointer<Float>? = nil) { self.statistics = statistics }
    }

    /// L1 budget of one channel chunk (input window plus weights), in bytes. 0 or less: no chunking.
    nonisolated(unsafe) public static var channelChunkBytes = 32 << 10

    /// Output positions per band: each channel chunk sweeps a band's tiles before the next chunk.
    nonisolated(unsafe) public static var bandPositions = 3072

    /// Zero padding, stride 1: the rows of a virtual plane share their pad columns (pitch = front + W
    /// instead of front + W + back: a row's right pad is the next row's left pad, all zeros), so fewer
    /// dropped columns are computed (the Unet's 12² planes: 12×13 instead of 12×14 per plane).
    /// False: the previous layout. Applies when the back pad is at most the front pad.
    nonisolated(unsafe) public static var sharedPadColumns = true

    /// Whether the 12-channel × 32-position tile (`kernel12x2`) may be taken where it computes fewer
    /// positions × padded output channels than the 8 × 48 tile (the Unet's 24/48-channel convs on
    /// 24² and 12² planes: grids of 600 and 156 positions). False: always 8 × 48 (the previous code).
    nonisolated(unsafe) public static var twelveRowTiles = true

    /// Whether the virtual-plane fill and the copy-out move rows as 16/8-float vectors (the last
    /// one overlapping; stride-2 phases of a row as the even lanes of 16-float loads) instead of
    /// `memmove`/scalar loops, and skip the constant zero pads of stride-1 zero-padded planes after
    /// their first fill. False: the previous loops.
    nonisolated(unsafe) public static var vectorRows = true

    /// Whether the per-call weight repacking writes through a buffer pointer (true) or through Swift
    /// array subscripts (false: the previous code, a uniqueness check per element: ~15 µs of a 60 µs
    /// 24→24 conv on four 12² planes). The same floats either way.
    nonisolated(unsafe) public static var pointerRepack = true

    /// One-phase convolutions with one D tap (the Unet's (1,k,k) stride-1 convs): whether each worker
    /// fills the next plane's virtual input and copies out the previous plane's output a slice at a
    /// time between the tiles of the current plane (true), so their memory traffic overlaps the
    /// FMAs, instead of in bursts between planes (false, default: the previous code). The same floats.
    /// Measured: 0–3% faster alone on one core, not faster over a Unet step (`unet-ab dconv=15,31`).
    nonisolated(unsafe) public static var overlapRows = false

    /// Sets the switches above from the bits of `v` (1: `sharedPadColumns`, 2: `twelveRowTiles`,
    /// 4: `vectorRows`, 8: `pointerRepack`, 16: `overlapRows`); for the interleaved A/B bench
    /// (`tumorbench networks unet-ab --ab dconv=0,15,31`). 0: the previous code; `defaultVariant`: the defaults.
    public static func setVariant(_ v: Int) {
        sharedPadColumns = v & 1 != 0
        twelveRowTiles = v & 2 != 0
        vectorRows = v & 4 != 0
        pointerRepack = v & 8 != 0
        overlapRows = v & 16 != 0
    }

    /// The bits of the default settings (`overlapRows` measured no faster over a Unet step: off).
    public static let defaultVariant = 15

    /// `y = conv3d(x, w) + bias` for one image and one group, like PyTorch `Conv3d`.
    /// `x` is [cin, inD, inH, inW], `w` is [cout, cin, kD, kH, kW], `y` is [cout, outD, outH, outW] with
    /// out = (in + front + back − k)/stride + 1 (the caller checked the sizes).
    /// With `secondInput`, input channels `firstChannels..<cin` are read from it instead of `x` (the
    /// convolution of a channel concatenation [x, second] without building it).
    /// With `addend` ([cout, outD, outH, outW] like `y`, not overlapping it), `y = conv3d(x, w) + bias + addend`:
    /// the addend is added while the output is copied out (e.g. a precomputed convolution of other input
    /// channels, the Unet's condition share of its init conv).
    public static func conv3d(input x: UnsafePointer<Float>, channels cin: Int, inputDims: (Int, Int, Int),
                              weight w: UnsafePointer<Float>, outChannels cout: Int, kernel: (Int, Int, Int),
                              stride: (Int, Int, Int), front: (Int, Int, Int), replicate: Bool,
                              bias: UnsafePointer<Float>?, output y: UnsafeMutablePointer<Float>,
                              outputDims: (Int, Int, Int), threads: Int,
                              secondInput: UnsafePointer<Float>? = nil, firstChannels: Int = 0, fusion: Fusion = Fusion(),
                              addend: UnsafePointer<Float>? = nil) {
        let k = [kernel.0, kernel.1, kernel.2], s = [stride.0, stride.1, stride.2]
        let o = [outputDims.0, outputDims.1, outputDims.2]
        let taps = (0..<3).map { (k[$0] + s[$0] - 1) / s[$0] }
        let dims = (0..<3).map { [PhaseDim(start: 0, count: o[$0], taps: taps[$0], offset: 0)] }
        let phases = s[0] * s[1] * s[2]
        let channels = cin * phases
        // W′[co, (ci, a, b, c), jd, jh, jw] = w[co, ci, a + sD·jd, b + sH·jh, c + sW·jw] (0 past the kernel).
        var virtual = VirtualInput(step: stride, front: front, replicate: replicate)
        if let secondInput { virtual.second = secondInput; virtual.split = firstChannels }
        precondition(fusion.statistics == nil || (phases == 1 && !replicate),
                     "DirectConvolution: fused statistics need a stride-1 zero-padded convolution")
        if phases == 1 {
            // Stride 1: W′ is w itself.
            run(input: x, channels: cin, inputDims: inputDims, virtual: virtual, dims: dims, outStride: (1, 1, 1),
                weights: [w], outChannels: cout, bias: bias, output: y, outputDims: outputDims, threads: threads,
                statistics: fusion.statistics, addend: addend)
            return
        }
        let tapCount = taps[0] * taps[1] * taps[2]
        var packed = [Float](repeating: 0, count: cout * channels * tapCount)
        func pack(_ put: (Int, Float) -> Void) {
            for co in 0..<cout { for ci in 0..<cin {
                for a in 0..<s[0] { for b in 0..<s[1] { for c in 0..<s[2] {
                    let cv = ((ci * s[0] + a) * s[1] + b) * s[2] + c
                    for jd in 0..<taps[0] { for jh in 0..<taps[1] { for jw in 0..<taps[2] {
                        let kd = a + s[0] * jd, kh = b + s[1] * jh, kw = c + s[2] * jw
                        guard kd < k[0] && kh < k[1] && kw < k[2] else { continue }
                        put(((co * channels + cv) * taps[0] + jd) * taps[1] * taps[2] + jh * taps[2] + jw,
                            w[(((co * cin + ci) * k[0] + kd) * k[1] + kh) * k[2] + kw])
                    }}}
                }}}
            }}
        }
        if pointerRepack { packed.withUnsafeMutableBufferPointer { p in pack { p[$0] = $1 } } } else { pack { packed[$0] = $1 } }
        packed.withUnsafeBufferPointer { p in
            run(input: x, channels: cin, inputDims: inputDims, virtual: virtual, dims: dims, outStride: (1, 1, 1),
                weights: [p.baseAddress!], outChannels: cout, bias: bias, output: y, outputDims: outputDims,
                threads: threads, addend: addend)
        }
    }

    /// `y = convTranspose3d(x, w) + bias` for one image and one group, like PyTorch `ConvTranspose3d`.
    /// `w` is [cin, cout, kD, kH, kW]; out = (in − 1)·stride − 2·padding + k + outputPadding (given).
    public static func convTranspose3d(input x: UnsafePointer<Float>, channels cin: Int, inputDims: (Int, Int, Int),
                                       weight w: UnsafePointer<Float>, weightOutChannels: Int, outChannels cout: Int,
                                       kernel: (Int, Int, Int), stride: (Int, Int, Int), padding: (Int, Int, Int),
                                       bias: UnsafePointer<Float>?, output y: UnsafeMutablePointer<Float>,
                                       outputDims: (Int, Int, Int), threads: Int) {
        let k = [kernel.0, kernel.1, kernel.2], s = [stride.0, stride.1, stride.2]
        let pad = [padding.0, padding.1, padding.2], o = [outputDims.0, outputDims.1, outputDims.2]
        // Per dim and phase φ: outputs o ≡ φ − pad (mod s); taps w[φ + s·j] read input q0 + p − j.
        // As a correlation over t = T−1−j: input index p + t + q0 − (T − 1), i.e. virtual index
        // p + t + offset with the input shifted by `margin` zeros.
        var raw: [[(start: Int, count: Int, taps: Int, shift: Int)]] = []
        var margin = [0, 0, 0]
        for d in 0..<3 {
            var list: [(Int, Int, Int, Int)] = []
            for phi in 0..<s[d] {
                let start = ((phi - pad[d]) % s[d] + s[d]) % s[d]
                let count = start < o[d] ? (o[d] - start + s[d] - 1) / s[d] : 0
                let taps = phi < k[d] ? (k[d] - phi + s[d] - 1) / s[d] : 0
                let q0 = (start + pad[d] - phi) / s[d]
                let shift = q0 - (taps - 1)
                margin[d] = max(margin[d], -shift)
                list.append((start, count, taps, shift))
            }
            raw.append(list)
        }
        let dims = (0..<3).map { d in raw[d].map { PhaseDim(start: $0.start, count: $0.count, taps: $0.taps, offset: $0.shift + margin[d]) } }
        // W′[phase][co, ci, td, th, tw] = w[ci, co, φd + sD·(TD−1−td), φh + sH·(TH−1−th), φw + sW·(TW−1−tw)].
        var packed: [[Float]] = []
        for pd in 0..<s[0] { for ph in 0..<s[1] { for pw in 0..<s[2] {
            let (td, th, tw) = (dims[0][pd].taps, dims[1][ph].taps, dims[2][pw].taps)
            let tapCount = td * th * tw
            var a = [Float](repeating: 0, count: max(1, cout * cin * tapCount))
            func pack(_ put: (Int, Float) -> Void) {
                for co in 0..<cout { for ci in 0..<cin {
                    for jd in 0..<td { for jh in 0..<th { for jw in 0..<tw {
                        let kd = pd + s[0] * (td - 1 - jd), kh = ph + s[1] * (th - 1 - jh), kw = pw + s[2] * (tw - 1 - jw)
                        put(((co * cin + ci) * td + jd) * th * tw + jh * tw + jw,
                            w[(((ci * weightOutChannels + co) * k[0] + kd) * k[1] + kh) * k[2] + kw])
                    }}}
                }}
            }
            if pointerRepack { a.withUnsafeMutableBufferPointer { p in pack { p[$0] = $1 } } } else { pack { a[$0] = $1 } }
            packed.append(a)
        }}}
        let virtual = VirtualInput(step: (1, 1, 1), front: (margin[0], margin[1], margin[2]), replicate: false)
        let pointers = packed.map { a in a.withUnsafeBufferPointer { $0.baseAddress! } }   // `packed` outlives the call
        withExtendedLifetime(packed) {
            run(input: x, channels: cin, inputDims: inputDims, virtual: virtual, dims: dims, outStride: stride,
                weights: pointers, outChannels: cout, bias: bias, output: y, outputDims: outputDims, threads: threads)
        }
    }

    /// Extra memory of one call, per worker: a ring of virtual planes plus one output-plane scratch.
    /// Returned for documentation and tests: floats per worker for a stride-1 k³ convolution.
    public static func scratchFloats(channels: Int, outChannels: Int, outputDims: (Int, Int, Int), kernel: Int) -> Int {
        let pitch = outputDims.2 + kernel - 1, rows = outputDims.1 + kernel - 1
        let plane = (rows * pitch + pitch + 48 + 16 + 15) / 16 * 16
        return (kernel + 1) * channels * plane + ((outChannels + 7) / 8 * 8) * ((outputDims.1 * pitch + 63) / 48 * 48 + 64)
    }

    /// The engine: every output plane od of every phase: fill the virtual planes it reads (ring),
    /// then for each (H, W) phase compute the flattened grid in tiles into a scratch plane, and
    /// add the bias (and `addend`, laid out like the output) while copying the valid positions to the output.
    static func run(input x: UnsafePointer<Float>, channels cin: Int, inputDims: (Int, Int, Int),
                    virtual: VirtualInput, dims: [[PhaseDim]], outStride: (Int, Int, Int),
                    weights: [UnsafePointer<Float>], outChannels cout: Int, bias: UnsafePointer<Float>?,
                    output y: UnsafeMutablePointer<Float>, outputDims: (Int, Int, Int), threads: Int,
                    statistics: UnsafeMutablePointer<Float>? = nil, addend: UnsafePointer<Float>? = nil) {
        let (sd, sh, sw) = virtual.step
        let channels = cin * sd * sh * sw
        let (outD, outH, outW) = outputDims
        let outPlane = outH * outW, outSpatial = outD * outPlane
        // Virtual plane size: every phase's reads fit.
        var rows = 1, pitch = 1, span = 1
        for p in dims[1] where p.count > 0 && p.taps > 0 { rows = max(rows, p.count + p.taps - 1 + p.offset) }
        for p in dims[2] where p.count > 0 && p.taps > 0 { pitch = max(pitch, p.count + p.taps - 1 + p.offset) }
        for p in dims[0] where p.count > 0 && p.taps > 0 { span = max(span, p.taps) }
        let stepOne = sd == 1 && sh == 1 && sw == 1
        if sharedPadColumns && stepOne && !virtual.replicate {
            // Columns past the data read the next row's left pad (zeros); the last row's read the
            // zero slack past the plane.
            let fw = virtual.front.2, w = inputDims.2
            if pitch > fw + w && pitch <= 2 * fw + w { pitch = fw + w }
        }
        // Output channels (padded to whole tiles) × positions computed, for a tile shape.
        func cost(_ t: Tile) -> Int {
            var positions = 0
            for dh in dims[1] where dh.count > 0 {
                positions += (dh.count * pitch + t.width - 1) / t.width * t.width * dims[2].filter { $0.count > 0 }.count
            }
            return (cout + t.rows - 1) / t.rows * t.rows * positions
        }
        let tile: Tile = cout < 4 ? .narrow1 : twelveRowTiles && cost(.wide12) < cost(.wide8) ? .wide12 : .wide8
        // Stride-1 zero-padded planes: the pads stay zero from the ring's first initialisation.
        let skipZeroPads = vectorRows && stepOne && !virtual.replicate
        let pipelined = overlapRows && dims[0].count == 1 && dims[1].count == 1 && dims[2].count == 1
            && dims[0][0].taps == 1 && dims[1][0].taps > 0 && dims[2][0].taps > 0
            && dims[1][0].count > 0 && dims[2][0].count > 0 && outStride == (1, 1, 1)
        let coutPadded = (cout + tile.rows - 1) / tile.rows * tile.rows
        let maxGrid = dims[1].map { $0.count }.max()! * pitch
        let scratchPitch = (maxGrid + tile.width - 1) / tile.width * tile.width
        // Tiles past the grid and the dropped columns read up to pitch + tile.width floats past the plane.
        let planeFloats = (rows * pitch + pitch + tile.width + 16 + 15) / 16 * 16
        // Weights padded to whole tiles of output channels, repacked [block][c′][tap][row].
        let phaseCount = dims[0].count * dims[1].count * dims[2].count
        var blocks: [[Float]] = []
        for ph in 0..<phaseCount {
            let (pd, rest) = ph.quotientAndRemainder(dividingBy: dims[1].count * dims[2].count)
            let (phh, pw) = rest.quotientAndRemainder(dividingBy: dims[2].count)
            let taps = dims[0][pd].taps * dims[1][phh].taps * dims[2][pw].taps
            var b = [Float](repeating: 0, count: max(1, coutPadded * channels * taps))
            let src = weights[ph]
            if pointerRepack {
                let ct = channels * taps, rowsT = tile.rows
                b.withUnsafeMutableBufferPointer { bp in
                    for co in 0..<cout {
                        let d = bp.baseAddress! + (co / rowsT) * ct * rowsT + co % rowsT, s = src + co * ct
                        for i in 0..<ct { d[i * rowsT] = s[i] }
                    }
                }
            } else {
                for co in 0..<cout { for c in 0..<channels { for t in 0..<taps {
                    let blk = co / tile.rows, r = co % tile.rows
                    b[((blk * channels + c) * taps + t) * tile.rows + r] = src[(co * channels + c) * taps + t]
                }}}
            }
            blocks.append(b)
        }
        // Output planes, in order, each with its D phase and grid index.
        var planes: [(pd: Int, p: Int)] = []
        for od in 0..<outD {
            for (pd, dim) in dims[0].enumerated() where od >= dim.start && (od - dim.start) % outStride.0 == 0 {
                let p = (od - dim.start) / outStride.0
                if p < dim.count { planes.append((pd, p)) }
            }
        }
        let workers = max(1, min(threads, planes.count))
        let ringSlots = span + 1
        var maxTaps = 1
        for a in dims[0] { for b in dims[1] { for c in dims[2] { maxTaps = max(maxTaps, a.taps * b.taps * c.taps) } } }
        let blockPointers = blocks.map { b in b.withUnsafeBufferPointer { $0.baseAddress! } }

        withExtendedLifetime(blocks) {
        let work = { (worker: Int) in
            let ring = UnsafeMutablePointer<Float>.allocate(capacity: ringSlots * channels * planeFloats)
            defer { ring.deallocate() }
            ring.initialize(repeating: 0, count: ringSlots * channels * planeFloats)
            var ringPlane = [Int](repeating: Int.min, count: ringSlots)
            let scratchPhase = coutPadded * scratchPitch   // one region per W phase
            let scratch = UnsafeMutablePointer<Float>.allocate(capacity: scratchPhase * max(2, dims[2].count) + 64)
            defer { scratch.deallocate() }
            let offsets = UnsafeMutablePointer<Int>.allocate(capacity: maxTaps)
            defer { offsets.deallocate() }
            let lo = planes.count * worker / workers, hi = planes.count * (worker + 1) / workers
            if pipelined {
                // One phase, one D tap: plane `item` reads virtual plane p + offset only. While its tiles
                // run, the next plane's fill and the previous plane's copy-out proceed a slice per tile
                // step (their loads and stores overlap the FMAs); two scratch planes alternate.
                let dd = dims[0][0], dh = dims[1][0], dw = dims[2][0]
                let taps = dh.taps * dw.taps
                let grid = dh.count * pitch
                let window = tile.width + (dh.taps - 1 + dh.offset) * pitch + dw.taps + dw.offset
                let chunk = channelChunkBytes <= 0 ? channels : max(1, min(channels, (channelChunkBytes / 4) / max(1, window + taps * coutPadded)))
                let band = max(tile.width, bandPositions / tile.width * tile.width)
                let steps = max(1, (grid + tile.width - 1) / tile.width * ((channels + chunk - 1) / chunk))
                func fill(_ v: Int, _ c0: Int, _ c1: Int) {
                    guard c0 < c1 else { return }
                    fillPlane(v, into: ring + (v & 1) * channels * planeFloats, planeFloats: planeFloats, rows: rows, pitch: pitch,
                              input: x, channels: cin, inputDims: inputDims, virtual: virtual, skipZeroPads: skipZeroPads,
                              channelRange: c0..<c1)
                }
                func copyOut(_ src: UnsafeMutablePointer<Float>, _ od: Int, _ c0: Int, _ c1: Int) {
                    for co in c0..<c1 {
                        let b = bias?[co] ?? 0
                        let offset = co * outSpatial + od * outPlane + dh.start * outW + dw.start
                        let s = src + co * scratchPitch, d = y + offset
                        for r in 0..<dh.count {
                            if let addend {
                                copyRow(d + r * outW, s + r * pitch, dw.count, adding: b, plus: addend + offset + r * outW)
                            } else if vectorRows { copyRow(d + r * outW, s + r * pitch, dw.count, adding: b) } else {
                                for c in 0..<dw.count { d[r * outW + c] = s[r * pitch + c] + b }
                            }
                        }
                        if let statistics {
                            let (sum, centred) = NormActivationAVX512.moments(y + co * outSpatial + od * outPlane, outPlane)
                            statistics[2 * (co * outD + od)] = sum; statistics[2 * (co * outD + od) + 1] = centred
                        }
                    }
                }
                var pending: (scratch: UnsafeMutablePointer<Float>, od: Int)? = nil
                if lo < hi { fill(planes[lo].p + dd.offset, 0, cin) }
                for item in lo..<hi {
                    let v = planes[item].p + dd.offset
                    let next = item + 1 < hi ? planes[item + 1].p + dd.offset : nil
                    for th in 0..<dh.taps { for tw in 0..<dw.taps {
                        offsets[th * dw.taps + tw] = (v & 1) * channels * planeFloats + (th + dh.offset) * pitch + tw + dw.offset
                    }}
                    let cur = scratch + ((item - lo) & 1) * scratchPhase
                    var step = 0, filled = 0, copied = 0
                    func background(_ step: Int) {
                        if let next { let t = cin * step / steps; fill(next, filled, t); filled = max(filled, t) }
                        if let pending { let t = cout * step / steps; copyOut(pending.scratch, pending.od, copied, t); copied = max(copied, t) }
                    }
                    var b0 = 0
                    while b0 < grid {
                        let b1 = min(grid, b0 + band)
                        var c0 = 0
                        while c0 < channels {
                            let cc = min(chunk, channels - c0)
                            var n0 = b0
                            while n0 < b1 {
                                for blk in 0..<(coutPadded / tile.rows) {
                                    let wb = blockPointers[0] + (blk * channels + c0) * taps * tile.rows
                                    let dst = cur + blk * tile.rows * scratchPitch + n0
                                    let src = ring + c0 * planeFloats + n0
                                    switch tile {
                                    case .wide8: kernel8x3(src, planeFloats, cc, offsets, taps, wb, dst, scratchPitch, c0 > 0)
                                    case .wide12: kernel12x2(src, planeFloats, cc, offsets, taps, wb, dst, scratchPitch, c0 > 0)
                                    case .narrow1: kernel1x4(src, planeFloats, cc, offsets, taps, wb, dst, scratchPitch, c0 > 0)
                                    }
                                }
                                step += 1
                                background(step)
                                n0 += tile.width
                            }
                            c0 += cc
                        }
                        b0 = b1
                    }
                    background(steps)
                    pending = (cur, dd.start + planes[item].p * outStride.0)
                }
                if let pending { copyOut(pending.scratch, pending.od, 0, cout) }
                return
            }
            for item in lo..<hi {
                let (pd, p) = planes[item]
                let dd = dims[0][pd]
                let od = dd.start + p * outStride.0
                let out = y + od * outPlane
                // Virtual planes read by this output plane.
                var slotOf = [Int](repeating: 0, count: max(1, dd.taps))
                for td in 0..<dd.taps {
                    let v = p + dd.offset + td
                    let slot = ((v % ringSlots) + ringSlots) % ringSlots
                    if ringPlane[slot] != v {
                        fillPlane(v, into: ring + slot * channels * planeFloats, planeFloats: planeFloats, rows: rows,
                                  pitch: pitch, input: x, channels: cin, inputDims: inputDims, virtual: virtual,
                                  skipZeroPads: skipZeroPads)
                        ringPlane[slot] = v
                    }
                    slotOf[td] = slot
                }
                for phh in 0..<dims[1].count {
                    // Two W phases that tile the output row (stride 2 in W, both with taps): computed
                    // first, then written out interleaved, whole rows at a time.
                    let pair = addend == nil && dd.taps > 0 && dims[1][phh].taps > 0
                        ? interleavablePair(dims[2], outW: outW, stride: outStride.2) : nil
                    for pw in 0..<dims[2].count {
                        let dh = dims[1][phh], dw = dims[2][pw]
                        guard dh.count > 0 && dw.count > 0 else { continue }
                        let phaseScratch = scratch + pw * scratchPhase
                        let phase = (pd * dims[1].count + phh) * dims[2].count + pw
                        let taps = dd.taps * dh.taps * dw.taps
                        let oh0 = dh.start, ow0 = dw.start
                        if taps == 0 {
                            for co in 0..<cout {
                                let b = bias?[co] ?? 0
                                for r in 0..<dh.count { for c in 0..<dw.count {
                                    let i = co * outSpatial + (oh0 + r * outStride.1) * outW + ow0 + c * outStride.2
                                    out[i] = b + (addend?[od * outPlane + i] ?? 0)
                                }}
                            }
                            continue
                        }
                        for td in 0..<dd.taps { for th in 0..<dh.taps { for tw in 0..<dw.taps {
                            offsets[(td * dh.taps + th) * dw.taps + tw] =
                                slotOf[td] * channels * planeFloats + (th + dh.offset) * pitch + tw + dw.offset
                        }}}
                        let grid = dh.count * pitch
                        let wts = blockPointers[phase]
                        // Channels in chunks whose input window and weights stay in L1 across the
                        // output-channel blocks of one tile.
                        let window = dd.taps * (tile.width + (dh.taps - 1 + dh.offset) * pitch + dw.taps + dw.offset)
                        let chunk = channelChunkBytes <= 0 ? channels : max(1, min(channels, (channelChunkBytes / 4) / max(1, window + taps * coutPadded)))
                        // Bands of tiles, channel chunk by chunk: within a band each chunk's input rows are
                        // read front to back (prefetcher-friendly), its weights stay in L1 across the band's
                        // tiles, and the band's partial sums stay in L1/L2.
                        let band = max(tile.width, bandPositions / tile.width * tile.width)
                        var b0 = 0
                        while b0 < grid {
                            let b1 = min(grid, b0 + band)
                            var c0 = 0
                            while c0 < channels {
                                let cc = min(chunk, channels - c0)
                                var n0 = b0
                                while n0 < b1 {
                                    for blk in 0..<(coutPadded / tile.rows) {
                                        let wb = wts + (blk * channels + c0) * taps * tile.rows
                                        let dst = phaseScratch + blk * tile.rows * scratchPitch + n0
                                        let src = ring + c0 * planeFloats + n0
                                        switch tile {
                                        case .wide8: kernel8x3(src, planeFloats, cc, offsets, taps, wb, dst, scratchPitch, c0 > 0)
                                        case .wide12: kernel12x2(src, planeFloats, cc, offsets, taps, wb, dst, scratchPitch, c0 > 0)
                                        case .narrow1: kernel1x4(src, planeFloats, cc, offsets, taps, wb, dst, scratchPitch, c0 > 0)
                                        }
                                    }
                                    n0 += tile.width
                                }
                                c0 += cc
                            }
                            b0 = b1
                        }
                        if pair != nil { continue }   // written below, with the other W phase
                        // Copy out with the bias.
                        for co in 0..<cout {
                            let b = bias?[co] ?? 0
                            let src = phaseScratch + co * scratchPitch
                            let dstC = out + co * outSpatial
                            for r in 0..<dh.count {
                                let s = src + r * pitch
                                let d = dstC + (oh0 + r * outStride.1) * outW + ow0
                                if let addend {
                                    let a = addend + (d - y)
                                    if outStride.2 == 1 { copyRow(d, s, dw.count, adding: b, plus: a); continue }
                                    for c in 0..<dw.count { d[c * outStride.2] = s[c] + b + a[c * outStride.2] }
                                    continue
                                }
                                if outStride.2 == 1 {
                                    if vectorRows { copyRow(d, s, dw.count, adding: b); continue }
                                    for c in 0..<dw.count { d[c] = s[c] + b }
                                } else {
                                    for c in 0..<dw.count { d[c * outStride.2] = s[c] + b }
                                }
                            }
                            if let statistics {   // one phase, stride 1: the plane is contiguous and in L1
                                let (sum, centred) = NormActivationAVX512.moments(dstC, outPlane)
                                statistics[2 * (co * outD + od)] = sum; statistics[2 * (co * outD + od) + 1] = centred
                            }
                        }
                    }
                    if let (even, odd) = pair, dims[1][phh].count > 0 {
                        let dh = dims[1][phh]
                        let ne = dims[2][even].count, no = dims[2][odd].count
                        for co in 0..<cout {
                            let b = bias?[co] ?? 0
                            let se = scratch + even * scratchPhase + co * scratchPitch
                            let so = scratch + odd * scratchPhase + co * scratchPitch
                            let dstC = out + co * outSpatial
                            for r in 0..<dh.count {
                                interleave(se + r * pitch, ne, so + r * pitch, no, bias: b,
                                           into: dstC + (dh.start + r * outStride.1) * outW)
                            }
                        }
                    }
                }
            }
        }
        if workers == 1 { work(0) } else { DispatchQueue.concurrentPerform(iterations: workers, execute: work) }
        }
    }

    /// The (even, odd) W phases when the output row is exactly their interleave: stride 2, phases
    /// starting at 0 and 1, both with taps.
    static func interleavablePair(_ dims: [PhaseDim], outW: Int, stride: Int) -> (Int, Int)? {
        guard stride == 2 && dims.count == 2 && dims.allSatisfy({ $0.taps > 0 && $0.count > 0 }) else { return nil }
        let even = dims[0].start == 0 ? 0 : 1, odd = 1 - even
        guard dims[even].start == 0 && dims[odd].start == 1 && dims[even].count + dims[odd].count == outW else { return nil }
        return (even, odd)
    }

    /// `d[2c] = e[c] + bias` for c < ne and `d[2c + 1] = o[c] + bias` for c < no (ne − no ∈ {0, 1}).
    @inline(__always)
    static func interleave(_ e: UnsafePointer<Float>, _ ne: Int, _ o: UnsafePointer<Float>, _ no: Int, bias: Float,
                           into d: UnsafeMutablePointer<Float>) {
        var c = 0
        let b = V(repeating: bias)
        while c + 16 <= no {
            var v = SIMD32<Float>()
            v.evenHalf = load(e + c) + b
            v.oddHalf = load(o + c) + b
            UnsafeMutableRawPointer(d + 2 * c).storeBytes(of: v, as: SIMD32<Float>.self)
            c += 16
        }
        for i in c..<no { d[2 * i] = e[i] + bias; d[2 * i + 1] = o[i] + bias }
        if ne > no { d[2 * no] = e[no] + bias }
    }

    /// `d[i] = s[i] + bias` for i < n, as 16/8/4-float vectors (the last one overlapping the previous).
    @inline(__always)
    static func copyRow(_ d: UnsafeMutablePointer<Float>, _ s: UnsafePointer<Float>, _ n: Int, adding bias: Float) {
        if n >= 16 {
            let b = V(repeating: bias)
            var c = 0
            while c + 16 <= n { store(d + c, load(s + c) + b); c += 16 }
            if c < n { store(d + n - 16, load(s + n - 16) + b) }
        } else if n >= 8 {
            let b = SIMD8<Float>(repeating: bias)
            let lo = UnsafeRawPointer(s).loadUnaligned(as: SIMD8<Float>.self) + b
            let hi = UnsafeRawPointer(s + n - 8).loadUnaligned(as: SIMD8<Float>.self) + b
            UnsafeMutableRawPointer(d).storeBytes(of: lo, as: SIMD8<Float>.self)
            UnsafeMutableRawPointer(d + n - 8).storeBytes(of: hi, as: SIMD8<Float>.self)
        } else {
            for i in 0..<n { d[i] = s[i] + bias }
        }
    }

    /// `d[i] = s[i] + bias + a[i]` for i < n, as 16-float vectors (the last one overlapping the previous:
    /// `d` must not overlap `a`), scalar below 16.
    @inline(__always)
    static func copyRow(_ d: UnsafeMutablePointer<Float>, _ s: UnsafePointer<Float>, _ n: Int, adding bias: Float,
                        plus a: UnsafePointer<Float>) {
        if n >= 16 {
            let b = V(repeating: bias)
            var c = 0
            while c + 16 <= n { store(d + c, load(s + c) + b + load(a + c)); c += 16 }
            if c < n { store(d + n - 16, load(s + n - 16) + b + load(a + n - 16)) }
        } else {
            for i in 0..<n { d[i] = s[i] + bias + a[i] }
        }
    }

    /// `d[i] = s[2i]` for i < n (the stride-2 phases of a row), 8 at a time from 16-float loads that stay
    /// within s[0...2(n−1)]; the rest scalar.
    @inline(__always)
    static func evenLanes(_ d: UnsafeMutablePointer<Float>, _ s: UnsafePointer<Float>, _ n: Int) {
        var i = 0
        while i + 9 <= n {
            UnsafeMutableRawPointer(d + i).storeBytes(of: load(s + 2 * i).evenHalf, as: SIMD8<Float>.self)
            i += 8
        }
        while i < n { d[i] = s[2 * i]; i += 1 }
    }

    /// `d[i] = s[i]` for i < n, as 16/8-float vectors (the last one overlapping the previous).
    @inline(__always)
    static func copyRow(_ d: UnsafeMutablePointer<Float>, _ s: UnsafePointer<Float>, _ n: Int) {
        if n >= 16 {
            var c = 0
            while c + 16 <= n { store(d + c, load(s + c)); c += 16 }
            if c < n { store(d + n - 16, load(s + n - 16)) }
        } else if n >= 8 {
            let lo = UnsafeRawPointer(s).loadUnaligned(as: SIMD8<Float>.self)
            let hi = UnsafeRawPointer(s + n - 8).loadUnaligned(as: SIMD8<Float>.self)
            UnsafeMutableRawPointer(d).storeBytes(of: lo, as: SIMD8<Float>.self)
            UnsafeMutableRawPointer(d + n - 8).storeBytes(of: hi, as: SIMD8<Float>.self)
        } else {
            for i in 0..<n { d[i] = s[i] }
        }
    }

    /// Builds virtual plane `v` (all C′ channels, `rows` × `pitch` each, channel stride `planeFloats`).
    /// `skipZeroPads` (stride 1, zero padding, a buffer that held only zeros or earlier fills of the same
    /// layout): only the data rows are written, as vectors; the pads are still zero.
    static func fillPlane(_ v: Int, into dst: UnsafeMutablePointer<Float>, planeFloats: Int, rows: Int, pitch: Int,
                          input x: UnsafePointer<Float>, channels cin: Int, inputDims: (Int, Int, Int),
                          virtual: VirtualInput, skipZeroPads: Bool = false, channelRange: Range<Int>? = nil) {
        let (d, h, w) = inputDims
        let (sd, sh, sw) = virtual.step
        let (fd, fh, fw) = virtual.front
        let channelRange = channelRange ?? 0..<cin
        if skipZeroPads && v - fd >= 0 && v - fd < d {
            // Rows fh..<fh + h, columns fw..<fw + w (within the pitch: the data always fits).
            let iz = v - fd
            let cols = min(w, pitch - fw), r1 = min(rows, fh + h)
            for ci in channelRange {
                let src = virtual.channel(x, ci, volume: d * h * w) + iz * h * w
                let plane = dst + ci * planeFloats + fw
                if cols > 0 && r1 > max(0, fh) {
                    for r in max(0, fh)..<r1 { copyRow(plane + r * pitch, src + (r - fh) * w, cols) }
                }
            }
            return
        }
        for ci in channelRange {
            for a in 0..<sd {
                var iz = v * sd + a - fd
                let zeroPlane = iz < 0 || iz >= d
                if zeroPlane && virtual.replicate { iz = min(max(iz, 0), d - 1) }
                for b in 0..<sh {
                    for c in 0..<sw {
                        let cv = ((ci * sd + a) * sh + b) * sw + c
                        let plane = dst + cv * planeFloats
                        if zeroPlane && !virtual.replicate { plane.update(repeating: 0, count: rows * pitch); continue }
                        let src = virtual.channel(x, ci, volume: d * h * w) + iz * h * w
                        for r in 0..<rows {
                            var iy = r * sh + b - fh
                            let row = plane + r * pitch
                            if iy < 0 || iy >= h {
                                if !virtual.replicate { row.update(repeating: 0, count: pitch); continue }
                                iy = min(max(iy, 0), h - 1)
                            }
                            let line = src + iy * w
                            // Columns: ix = col·sw + c − fw; interior where 0 ≤ ix < w.
                            let first = max(0, (fw - c + sw - 1) / sw)                  // first col with ix ≥ 0
                            let last = w - 1 - c + fw                                    // col·sw ≤ last ⇔ ix < w
                            let end = last < 0 ? 0 : min(pitch, max(first, last / sw + 1))
                            let edgeLo: Float = virtual.replicate ? line[0] : 0
                            let edgeHi: Float = virtual.replicate ? line[w - 1] : 0
                            for col in 0..<min(first, pitch) { row[col] = edgeLo }
                            if first < end {
                                if sw == 1 {
                                    (row + first).update(from: line + (first + c - fw), count: end - first)
                                } else if sw == 2 && vectorRows {
                                    evenLanes(row + first, line + (2 * first + c - fw), end - first)
                                } else {
                                    for col in first..<end { row[col] = line[col * sw + c - fw] }
                                }
                            }
                            for col in min(pitch, max(end, first))..<pitch { row[col] = edgeHi }
                        }
                    }
                }
            }
        }
    }
}
