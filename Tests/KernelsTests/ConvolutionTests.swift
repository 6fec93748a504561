import XCTest
import Kernels

/// Direct 3D convolution: seven nested loops over an explicitly padded index.
func naiveConv3d(_ x: Tensor, _ w: Tensor, _ bias: Tensor?, stride s: [Int], front: [Int], back: [Int],
                 replicate: Bool, groups: Int) -> Tensor {
    let (n, cin, d, h, wd) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3], x.shape[4])
    let (cout, k) = (w.shape[0], Array(w.shape[2...]))
    let inSize = [d, h, wd]
    var o: [Int] = [0, 0, 0]
    for i in 0..<3 { let padded: Int = inSize[i] + front[i] + back[i]; o[i] = (padded - k[i]) / s[i] + 1 }
    let (o0, o1, o2) = (o[0], o[1], o[2])
    let xs = x.scalars, ws = w.scalars, bs = bias?.scalars
    let (k0, k1, k2) = (k[0], k[1], k[2])
    let cinG = cin / groups, coutG = cout / groups
    var y = [Float](repeating: 0, count: n * cout * o[0] * o[1] * o[2])
    func read(_ b: Int, _ c: Int, _ p: [Int]) -> Double {
        var q = p
        for i in 0..<3 where q[i] < 0 || q[i] >= inSize[i] {
            if !replicate { return 0 }
            q[i] = min(max(q[i], 0), inSize[i] - 1)
        }
        return Double(xs[(((b * cin + c) * d + q[0]) * h + q[1]) * wd + q[2]])
    }
    for b in 0..<n { for co in 0..<cout { let g = co / coutG
        for z in 0..<o[0] { for yy in 0..<o[1] { for xx in 0..<o[2] {
            var acc = Double(bs?[co] ?? 0)
            for ci in 0..<cinG { for a in 0..<k[0] { for bb in 0..<k[1] { for c in 0..<k[2] {
                let p = [z * s[0] - front[0] + a, yy * s[1] - front[1] + bb, xx * s[2] - front[2] + c]
                let wi: Int = ((co * cinG + ci) * k0 + a) * k1 + bb
                acc += read(b, g * cinG + ci, p) * Double(ws[wi * k2 + c])
            }}}}
            let plane: Int = (b * cout + co) * o0 + z
            y[(plane * o1 + yy) * o2 + xx] = Float(acc)
        }}}
    }}
    return Tensor(shape: [n, cout] + o, data: y)
}

/// Transposed convolution by its scatter definition: y[co, i·s − p + k] += x[ci, i]·w[ci, co, k].
func naiveConvTranspose3d(_ x: Tensor, _ w: Tensor, _ bias: Tensor?, stride s: [Int], padding p: [Int],
                          outputPadding op: [Int], groups: Int) -> Tensor {
    let (n, cin) = (x.shape[0], x.shape[1])
    let inS = Array(x.shape[2...]), k = Array(w.shape[2...])
    let coutG = w.shape[1], cout = coutG * groups, cinG = cin / groups
    var o: [Int] = [0, 0, 0]
    for i in 0..<3 { let grown: Int = (inS[i] - 1) * s[i] + k[i]; o[i] = grown - 2 * p[i] + op[i] }
    let (o0, o1, o2) = (o[0], o[1], o[2])
    let (k0, k1, k2) = (k[0], k[1], k[2])
    let xs = x.scalars, ws = w.scalars
    var y = [Double](repeating: 0, count: n * cout * o[0] * o[1] * o[2])
    for b in 0..<n { for ci in 0..<cin { let g = ci / cinG
        for z in 0..<inS[0] { for yy in 0..<inS[1] { for xx in 0..<inS[2] {
            let v = Double(xs[(((b * cin + ci) * inS[0] + z) * inS[1] + yy) * inS[2] + xx])
            for co in 0..<coutG { for a in 0..<k[0] { for bb in 0..<k[1] { for c in 0..<k[2] {
                let q = [z * s[0] - p[0] + a, yy * s[1] - p[1] + bb, xx * s[2] - p[2] + c]
                if (0..<3).contains(where: { q[$0] < 0 || q[$0] >= o[$0] }) { continue }
                let oc = g * coutG + co
                let plane: Int = (b * cout + oc) * o0 + q[0]
                let wi: Int = ((ci * coutG + co) * k0 + a) * k1 + bb
                y[(plane * o1 + q[1]) * o2 + q[2]] += v * Double(ws[wi * k2 + c])
            }}}}
        }}}
    }}
    if let bias {
        let bs = bias.scalars, inner = o.reduce(1, *)
        for b in 0..<n { for c in 0..<cout { for i in 0..<inner { y[(b * cout + c) * inner + i] += Double(bs[c]) } } }
    }
    return Tensor(shape: [n, cout] + o, data: y.map { Float($0) })
}

/// Runs `body` once per convolution lowering: the portable tiled im2col + sgemm path, the
/// whole-output im2col GEMM taken for every shape it can hold, and (on a CPU with AVX-512F) the direct
/// AVX-512 kernels forced for every shape and the whole-output im2col on the AVX-512 panel GEMM (both
/// work splits). Restores the settings after.
func forEachConvolutionPath(_ body: (String) -> Void) {
    let saved = (KernelContext.useAVX512, KernelContext.forceDirectConvolution, KernelContext.wholeIm2colMaxPlane)
    defer {
        KernelContext.useAVX512 = saved.0; KernelContext.forceDirectConvolution = saved.1
        KernelContext.wholeIm2colMaxPlane = saved.2
    }
    KernelContext.useAVX512 = false
    KernelContext.forceDirectConvolution = false
    KernelContext.wholeIm2colMaxPlane = 0
    body("gemm")
    KernelContext.wholeIm2colMaxPlane = Int.max
    body("whole im2col")
    KernelContext.wholeIm2colMaxPlane = saved.2
    guard CPUFeatures.hasAVX512F else { return }
    KernelContext.useAVX512 = true
    KernelContext.forceDirectConvolution = true
    body("avx512")
    // The whole-output im2col on the AVX-512 panel GEMM: split by columns with the default K blocks,
    // and split by output-channel rows with K blocks of 7 (partial blocks, several per row).
    KernelContext.forceDirectConvolution = false
    KernelContext.wholeIm2colMaxPlane = Int.max
    let panel = (WholeIm2col.panelGEMM, WholeIm2col.panelSplit, WholeIm2col.panelKBlock)
    defer { WholeIm2col.panelGEMM = panel.0; WholeIm2col.panelSplit = panel.1; WholeIm2col.panelKBlock = panel.2 }
    WholeIm2col.panelGEMM = true
    WholeIm2col.panelSplit = 0
    body("whole im2col avx512 columns")
    WholeIm2col.panelSplit = 1
    WholeIm2col.panelKBlock = 7
    body("whole im2col avx512 rows k7")
}

final class ConvolutionTests: XCTestCase {
    override func setUp() { KernelContext.threads = 2 }

    func testAVX512SwitchFollowsTheCPUAndTheEnvironment() {
        XCTAssertTrue(CPUFeatures.avx512Allowed(environment: [:]))
        XCTAssertTrue(CPUFeatures.avx512Allowed(environment: ["TUMORSTREAM_NO_AVX512": "0"]))
        XCTAssertFalse(CPUFeatures.avx512Allowed(environment: ["TUMORSTREAM_NO_AVX512": "1"]))
        let saved = KernelContext.useAVX512
        defer { KernelContext.useAVX512 = saved }
        KernelContext.useAVX512 = true
        XCTAssertEqual(KernelContext.useAVX512, CPUFeatures.hasAVX512F, "cannot be switched on without AVX-512F")
        KernelContext.useAVX512 = false
        XCTAssertFalse(KernelContext.useAVX512)
        // The flags are read from /proc/cpuinfo: on Linux x86-64 they always include sse2.
        XCTAssertTrue(CPUFeatures.flags.contains("sse2"), "cpuinfo flags not read")
    }

    func testDirectKernelsAgreeWithGEMMPathOnMidSizeShapes() throws {
        try XCTSkipUnless(CPUFeatures.hasAVX512F, "no AVX-512F on this CPU")
        var rng = SeededRandom(seed: 11)
        // (cin, cout, input, kernel, stride, padding mode): both tile shapes (cout < 4, cout 9 padded
        // to two 8-blocks), channel chunks (many channels), stride-2 space-to-depth, k1.
        let cases: [(Int, Int, [Int], [Int], [Int], PaddingMode)] = [
            (5, 9, [11, 12, 13], [3, 3, 3], [1, 1, 1], .replicate),
            (24, 2, [9, 10, 21], [3, 3, 3], [1, 1, 1], .zero),
            (40, 16, [6, 7, 9], [3, 3, 3], [1, 1, 1], .replicate),
            (6, 8, [12, 10, 14], [4, 4, 4], [2, 2, 2], .replicate),
            (16, 8, [5, 9, 11], [1, 1, 1], [1, 1, 1], .zero),
        ]
        let saved = (KernelContext.directChannelChunkBytes, KernelContext.useAVX512, KernelContext.directBandPositions)
        defer {
            KernelContext.directChannelChunkBytes = saved.0; KernelContext.useAVX512 = saved.1
            KernelContext.directBandPositions = saved.2
        }
        for (cin, cout, size, k, s, mode) in cases {
            let x = rng.tensor([1, cin] + size)
            let w = rng.tensor([cout, cin] + k, scale: 0.3)
            let bias = rng.tensor([cout])
            let pad = Padding3d.same(kernel: k, stride: s, mode: mode)
            var results: [String: Tensor] = [:]
            forEachConvolutionPath { path in
                results[path] = x.conv3d(weight: w, bias: bias, stride: s, padding: pad)
            }
            KernelContext.useAVX512 = true
            KernelContext.forceDirectConvolution = true
            for chunk in [1, 0] {   // one channel per chunk; no chunking
                KernelContext.directChannelChunkBytes = chunk
                results["chunk \(chunk)"] = x.conv3d(weight: w, bias: bias, stride: s, padding: pad)
                KernelContext.directBandPositions = 48   // bands of one tile: chunks sweep several bands
                results["chunk \(chunk) band 48"] = x.conv3d(weight: w, bias: bias, stride: s, padding: pad)
                KernelContext.directBandPositions = saved.2
            }
            KernelContext.forceDirectConvolution = false
            KernelContext.directChannelChunkBytes = saved.0
            let reference = results["gemm"]!
            for (name, y) in results where name != "gemm" {
                assertClose(y, reference, rtol: 1e-4, atol: 1e-4, "\(name) cin \(cin) cout \(cout) k\(k) s\(s) \(mode)")
            }
        }
        // Transposed: the VQ-GAN upsampling and the Unet's (1,4,4) one, against the GEMM path.
        for (cin, cout, size, k, s, p) in [(12, 10, [5, 6, 7], [4, 4, 4], [2, 2, 2], [3, 3, 3]),
                                           (9, 3, [3, 6, 5], [1, 4, 4], [1, 2, 2], [0, 1, 1])] {
            let x = rng.tensor([1, cin] + size).padded(.uniform(1, mode: .replicate))
            let w = rng.tensor([cin, cout] + k, scale: 0.3)
            var results: [String: Tensor] = [:]
            forEachConvolutionPath { path in results[path] = x.convTranspose3d(weight: w, bias: nil, stride: s, padding: p) }
            assertClose(results["avx512"]!, results["gemm"]!, rtol: 1e-4, atol: 1e-4, "convT k\(k) s\(s)")
            KernelContext.useAVX512 = true
            KernelContext.forceDirectConvolution = true
            KernelContext.directBandPositions = 48
            let banded = x.convTranspose3d(weight: w, bias: nil, stride: s, padding: p)
            KernelContext.directBandPositions = saved.2
            KernelContext.forceDirectConvolution = false
            assertClose(banded, results["gemm"]!, rtol: 1e-4, atol: 1e-4, "convT k\(k) s\(s) band 48")
        }
    }

    func testConv3dMatchesNaiveForKernelsStridesAndPaddings() {
        forEachConvolutionPath { path in
            var rng = SeededRandom(seed: 1)
            // (cin, cout, groups, input D,H,W, kernel, stride, front, back)
            let cases: [(Int, Int, Int, [Int], [Int], [Int], [Int], [Int])] = [
                (3, 5, 1, [5, 6, 7], [3, 3, 3], [1, 1, 1], [1, 1, 1], [1, 1, 1]),
                (2, 4, 1, [7, 5, 6], [4, 4, 4], [2, 2, 2], [1, 1, 1], [1, 1, 1]),
                (3, 2, 1, [3, 9, 8], [1, 3, 3], [1, 1, 1], [0, 1, 1], [0, 1, 1]),
                (2, 3, 1, [3, 11, 9], [1, 7, 7], [1, 1, 1], [0, 3, 3], [0, 3, 3]),
                (4, 2, 1, [2, 9, 7], [1, 4, 4], [1, 2, 2], [0, 1, 1], [0, 1, 1]),
                (5, 3, 1, [4, 3, 5], [1, 1, 1], [1, 1, 1], [0, 0, 0], [0, 0, 0]),
                (2, 3, 1, [9, 8, 9], [7, 7, 7], [1, 1, 1], [3, 3, 3], [3, 3, 3]),
                (4, 6, 2, [5, 5, 6], [3, 3, 3], [1, 2, 1], [2, 0, 1], [0, 2, 1]),
                (1, 2, 1, [6, 7, 5], [2, 3, 4], [2, 3, 1], [1, 2, 0], [0, 1, 3]),
                // Tap-stacked path (D, H unstrided, Cin·kW ≥ 8) with asymmetric padding, W stride, groups.
                (3, 4, 1, [5, 6, 9], [3, 3, 3], [1, 1, 2], [2, 0, 1], [0, 2, 1]),
                (6, 6, 3, [4, 5, 7], [3, 2, 4], [1, 1, 1], [1, 1, 2], [1, 0, 1]),
                (9, 5, 1, [3, 4, 4], [1, 3, 3], [1, 1, 1], [0, 1, 1], [0, 1, 1]),
                (4, 3, 1, [7, 3, 3], [4, 4, 4], [1, 1, 1], [2, 2, 2], [1, 1, 1]),
                // The Unet's deepest level: (1,3,3) on 3×3 planes (the default dispatch's whole-im2col shape).
                (12, 7, 1, [4, 3, 3], [1, 3, 3], [1, 1, 1], [0, 1, 1], [0, 1, 1]),
            ]
            for (cin, cout, groups, size, k, s, f, b) in cases {
                for mode in [PaddingMode.zero, .replicate] {
                    let x = rng.tensor([2, cin] + size)
                    let w = rng.tensor([cout, cin / groups] + k, scale: 0.5)
                    let bias = rng.tensor([cout])
                    let pad = Padding3d(front: f, back: b, mode: mode)
                    let y = x.conv3d(weight: w, bias: bias, stride: s, padding: pad, groups: groups)
                    let e = naiveConv3d(x, w, bias, stride: s, front: f, back: b, replicate: mode == .replicate, groups: groups)
                    assertClose(y, e, rtol: 1e-4, atol: 1e-4, "\(path): k\(k) s\(s) pad \(f)/\(b) \(mode) groups \(groups)")
                }
            }
        }
    }

    /// The whole-im2col path's shifted-row build ((1,k,k) "same" zero padding, one D tap) and its
    /// im2col-free 1×1 case against the element-by-element gather and the naive definition, on both
    /// the portable and the AVX-512 dispatch; layers not of that form (replicate padding, stride, D taps)
    /// fall back to the gather.
    func testWholeIm2colShiftedRowsMatchGather() {
        let saved = (KernelContext.wholeIm2colMaxPlane, WholeIm2col.shiftedRows, KernelContext.useAVX512)
        defer {
            KernelContext.wholeIm2colMaxPlane = saved.0; WholeIm2col.shiftedRows = saved.1
            KernelContext.useAVX512 = saved.2
        }
        KernelContext.wholeIm2colMaxPlane = Int.max
        var rng = SeededRandom(seed: 44)
        // (cin, cout, input D,H,W, kernel, stride, front, back, bias)
        let cases: [(Int, Int, [Int], [Int], [Int], [Int], [Int], Bool)] = [
            (12, 7, [4, 3, 3], [1, 3, 3], [1, 1, 1], [0, 1, 1], [0, 1, 1], true),
            (5, 9, [3, 6, 6], [1, 3, 3], [1, 1, 1], [0, 1, 1], [0, 1, 1], false),
            (3, 4, [2, 5, 7], [1, 3, 3], [1, 1, 1], [0, 1, 1], [0, 1, 1], true),
            (2, 3, [3, 7, 5], [1, 5, 5], [1, 1, 1], [0, 2, 2], [0, 2, 2], true),
            (6, 5, [5, 3, 3], [1, 1, 1], [1, 1, 1], [0, 0, 0], [0, 0, 0], true),
            (4, 8, [2, 6, 6], [1, 1, 1], [1, 1, 1], [0, 0, 0], [0, 0, 0], false),
            (3, 4, [4, 3, 4], [1, 3, 3], [1, 1, 1], [0, 2, 0], [0, 0, 2], true),   // one-sided: still shifts
            (3, 4, [4, 6, 6], [1, 4, 4], [1, 2, 2], [0, 1, 1], [0, 1, 1], true),   // strided: gather
            (3, 4, [4, 3, 3], [3, 3, 3], [1, 1, 1], [1, 1, 1], [1, 1, 1], true),   // D taps: gather
        ]
        for avx in CPUFeatures.hasAVX512F ? [false, true] : [false] {
            KernelContext.useAVX512 = avx
            for (cin, cout, size, k, s, f, b, hasBias) in cases {
                for mode in [PaddingMode.zero, .replicate] {
                    let x = rng.tensor([2, cin] + size)
                    let w = rng.tensor([cout, cin] + k, scale: 0.5)
                    let bias = hasBias ? rng.tensor([cout]) : nil
                    let pad = Padding3d(front: f, back: b, mode: mode)
                    WholeIm2col.shiftedRows = false
                    let gathered = x.conv3d(weight: w, bias: bias, stride: s, padding: pad)
                    WholeIm2col.shiftedRows = true
                    let shifted = x.conv3d(weight: w, bias: bias, stride: s, padding: pad)
                    let e = naiveConv3d(x, w, bias, stride: s, front: f, back: b, replicate: mode == .replicate, groups: 1)
                    let label = "avx512 \(avx): \(cin)→\(cout) \(size) k\(k) s\(s) pad \(f)/\(b) \(mode)"
                    assertClose(shifted, gathered, rtol: 1e-6, atol: 1e-6, label)
                    assertClose(shifted, e, rtol: 1e-4, atol: 1e-4, label)
                }
            }
        }
    }

    /// `pointwiseConv3d` on the AVX-512 panel GEMM (whole 48-column panels read in place, the leftover
    /// columns copied into a padded panel) against the naive definition, with K blocks of 7 (several
    /// partial blocks), runs per worker with and without leftovers, 8-row tiles and single rows.
    func testPointwisePanelGEMMMatchesNaive() throws {
        try XCTSkipUnless(CPUFeatures.hasAVX512F, "no AVX-512F on this CPU")
        let saved = (KernelContext.useAVX512, WholeIm2col.panelPointwise, WholeIm2col.panelKBlock)
        defer { KernelContext.useAVX512 = saved.0; WholeIm2col.panelPointwise = saved.1; WholeIm2col.panelKBlock = saved.2 }
        KernelContext.useAVX512 = true
        var rng = SeededRandom(seed: 45)
        for (cin, cout, size, hasBias) in [(20, 11, [3, 13, 17], true), (9, 16, [2, 24, 24], false), (3, 17, [1, 5, 7], true)] {
            let x = rng.tensor([2, cin] + size)
            let w = rng.tensor([cout, cin, 1, 1, 1], scale: 0.5)
            let bias = hasBias ? rng.tensor([cout]) : nil
            let e = naiveConv3d(x, w, bias, stride: [1, 1, 1], front: [0, 0, 0], back: [0, 0, 0], replicate: false, groups: 1)
            for kb in [7, 0] {
                WholeIm2col.panelPointwise = true
                WholeIm2col.panelKBlock = kb
                let y = x.pointwiseConv3d(weight: w, bias: bias)
                assertClose(y, e, rtol: 1e-4, atol: 1e-4, "panel kb \(kb) \(cin)→\(cout) \(size)")
            }
            WholeIm2col.panelPointwise = false
            assertClose(x.pointwiseConv3d(weight: w, bias: bias), e, rtol: 1e-4, atol: 1e-4, "OpenBLAS \(cin)→\(cout) \(size)")
        }
    }

    func testSamePaddingMatchesReferenceSamePadConv3d() {
        forEachConvolutionPath { path in
            // SamePadConv3d: total k − s, front = ceil(total/2) (F.pad's first element is p//2 + p%2).
            XCTAssertEqual(Padding3d.same(kernel: [4, 4, 4], stride: [2, 2, 2]),
                           Padding3d(front: [1, 1, 1], back: [1, 1, 1], mode: .replicate))
            XCTAssertEqual(Padding3d.same(kernel: [3, 3, 3], stride: [1, 1, 1]).front, [1, 1, 1])
            XCTAssertEqual(Padding3d.same(kernel: [4, 4, 4], stride: [1, 1, 1]).front, [2, 2, 2])
            XCTAssertEqual(Padding3d.same(kernel: [4, 4, 4], stride: [1, 1, 1]).back, [1, 1, 1])
            XCTAssertEqual(Padding3d.same(kernel: [1, 1, 1], stride: [1, 1, 1]), Padding3d(front: [0, 0, 0], back: [0, 0, 0], mode: .replicate))
            var rng = SeededRandom(seed: 2)
            let x = rng.tensor([1, 2, 8, 8, 8])
            let w = rng.tensor([3, 2, 4, 4, 4])
            let y = x.conv3d(weight: w, stride: [2, 2, 2], padding: .same(kernel: [4, 4, 4], stride: [2, 2, 2]))
            XCTAssertEqual(y.shape, [1, 3, 4, 4, 4])
            // Same as explicit replicate pad then an unpadded conv.
            let explicit = x.padded(Padding3d(front: [1, 1, 1], back: [1, 1, 1], mode: .replicate))
                .conv3d(weight: w, stride: [2, 2, 2])
            assertClose(y, explicit, rtol: 1e-5, atol: 1e-5)
        }
    }

    func testSmallTileBudgetGivesTheSameResult() {
        forEachConvolutionPath { path in
            var rng = SeededRandom(seed: 3)
            let x = rng.tensor([1, 3, 7, 6, 5])
            let w = rng.tensor([4, 3, 3, 3, 3])
            let full = x.conv3d(weight: w, padding: .uniform(1))
            let w2 = rng.tensor([4, 3, 4, 4, 4])
            let full2 = x.conv3d(weight: w2, stride: [2, 2, 2], padding: .uniform(1, mode: .replicate))
            let wT = rng.tensor([3, 2, 4, 4, 4])
            let fullT = x.convTranspose3d(weight: wT, stride: [2, 2, 2], padding: [1, 1, 1])
            let saved = KernelContext.im2colTileBytes
            KernelContext.im2colTileBytes = 1
            let tiled = x.conv3d(weight: w, padding: .uniform(1))
            let tiled2 = x.conv3d(weight: w2, stride: [2, 2, 2], padding: .uniform(1, mode: .replicate))
            let tiledT = x.convTranspose3d(weight: wT, stride: [2, 2, 2], padding: [1, 1, 1])
            KernelContext.im2colTileBytes = saved
            assertClose(tiled, full, rtol: 1e-5, atol: 1e-5)
            assertClose(tiled2, full2, rtol: 1e-5, atol: 1e-5)
            XCTAssertEqual(tiledT.shape, [1, 2, 14, 12, 10])
            assertClose(tiledT, fullT, rtol: 1e-5, atol: 1e-5)
            // One thread gives the same result as two.
            KernelContext.threads = 1
            let single = x.conv3d(weight: w, padding: .uniform(1))
            let singleT = x.convTranspose3d(weight: wT, stride: [2, 2, 2], padding: [1, 1, 1])
            KernelContext.threads = 2
            assertClose(single, full, rtol: 1e-5, atol: 1e-5)
            assertClose(singleT, fullT, rtol: 1e-5, atol: 1e-5)
        }
    }

    func testHugePageOutputsGiveTheSameResult() {
        // Outputs of 8 MiB (past the 4 MiB threshold): advised huge pages or not, same numbers.
        forEachConvolutionPath { path in
            var rng = SeededRandom(seed: 11)
            let x = rng.tensor([1, 4, 32, 32, 32])
            let w = rng.tensor([4, 8, 4, 4, 4])
            let w3 = rng.tensor([8, 4, 3, 3, 3])
            let w1 = rng.tensor([8, 8, 1, 1, 1])
            let saved = KernelContext.hugePageOutputs
            KernelContext.hugePageOutputs = true
            let hugeT = x.convTranspose3d(weight: w, stride: [2, 2, 2], padding: [1, 1, 1])
            let huge = hugeT.conv3d(weight: w1)
            let huge3 = x.padded(.uniform(16)).conv3d(weight: w3, padding: .uniform(1, mode: .replicate))
            KernelContext.hugePageOutputs = false
            let plainT = x.convTranspose3d(weight: w, stride: [2, 2, 2], padding: [1, 1, 1])
            let plain = plainT.conv3d(weight: w1)
            let plain3 = x.padded(.uniform(16)).conv3d(weight: w3, padding: .uniform(1, mode: .replicate))
            KernelContext.hugePageOutputs = saved
            XCTAssertEqual(hugeT.shape, [1, 8, 64, 64, 64])
            XCTAssertEqual(huge3.shape, [1, 8, 64, 64, 64])
            assertClose(hugeT, plainT, rtol: 0, atol: 0)
            assertClose(huge, plain, rtol: 0, atol: 0)
            assertClose(huge3, plain3, rtol: 0, atol: 0)
        }
    }

    func testConvTranspose3dMatchesScatterDefinition() {
        forEachConvolutionPath { path in
            var rng = SeededRandom(seed: 4)
            // (cin, coutG, groups, input, kernel, stride, padding, outputPadding)
            let cases: [(Int, Int, Int, [Int], [Int], [Int], [Int], [Int])] = [
                (3, 2, 1, [3, 4, 5], [4, 4, 4], [2, 2, 2], [1, 1, 1], [0, 0, 0]),
                (2, 3, 1, [5, 4, 3], [4, 4, 4], [2, 2, 2], [3, 3, 3], [0, 0, 0]),   // SamePadConvTranspose3d core
                (4, 2, 1, [3, 5, 6], [1, 4, 4], [1, 2, 2], [0, 1, 1], [0, 0, 0]),   // Unet Upsample
                (2, 2, 1, [3, 3, 4], [3, 3, 3], [1, 1, 1], [1, 1, 1], [0, 0, 0]),
                (2, 1, 2, [3, 4, 3], [3, 2, 5], [3, 2, 2], [1, 0, 2], [2, 1, 0]),
                // Output rows of 37 and 40: the two W phases are written interleaved, 16 pairs at a time.
                (3, 2, 1, [2, 3, 18], [4, 4, 4], [2, 2, 2], [1, 1, 1], [0, 0, 1]),
                (2, 9, 1, [2, 2, 20], [4, 4, 4], [2, 2, 2], [1, 1, 1], [1, 0, 0]),
            ]
            for (cin, coutG, groups, size, k, s, p, op) in cases {
                let x = rng.tensor([2, cin] + size)
                let w = rng.tensor([cin, coutG] + k, scale: 0.5)
                let bias = rng.tensor([coutG * groups])
                let y = x.convTranspose3d(weight: w, bias: bias, stride: s, padding: p, outputPadding: op, groups: groups)
                let e = naiveConvTranspose3d(x, w, bias, stride: s, padding: p, outputPadding: op, groups: groups)
                assertClose(y, e, rtol: 1e-4, atol: 1e-4, "\(path): k\(k) s\(s) p\(p) op\(op)")
            }
        }
    }

    /// The whole-im2col transposed convolution keeps each weight tensor's phase matrices between calls
    /// (`Tensor.transposedPhaseWeightCache`): a hit gives exactly the uncached floats, and a weight tensor
    /// written after it was cached (copy-on-write: a new storage) is never served stale matrices.
    func testTransposedPhaseWeightCacheIsExactAndNeverStale() {
        let saved = (KernelContext.wholeIm2colMaxPlane, Tensor.transposedPhaseWeightCache)
        defer { KernelContext.wholeIm2colMaxPlane = saved.0; Tensor.transposedPhaseWeightCache = saved.1 }
        KernelContext.wholeIm2colMaxPlane = Int.max
        var rng = SeededRandom(seed: 41)
        for (cin, cout, size) in [(8, 8, [3, 3, 3]), (5, 7, [2, 6, 6]), (16, 16, [4, 3, 3])] {
            let x = rng.tensor([1, cin] + size)
            var w = rng.tensor([cin, cout, 1, 4, 4], scale: 0.5)
            let bias = rng.tensor([cout])
            func run(_ cached: Bool) -> Tensor {
                Tensor.transposedPhaseWeightCache = cached
                return x.convTranspose3d(weight: w, bias: bias, stride: [1, 2, 2], padding: [0, 1, 1])
            }
            let plain = run(false), miss = run(true), hit = run(true)
            assertClose(miss, plain, rtol: 0, atol: 0, "miss cin \(cin)")
            assertClose(hit, plain, rtol: 0, atol: 0, "hit cin \(cin)")
            assertClose(hit, naiveConvTranspose3d(x, w, bias, stride: [1, 2, 2], padding: [0, 1, 1], outputPadding: [0, 0, 0], groups: 1),
                        rtol: 1e-4, atol: 1e-4, "naive cin \(cin)")
            w[flat: 5] += 1   // written while cached: must not reuse the old matrices
            let changed = run(true)
            assertClose(changed, naiveConvTranspose3d(x, w, bias, stride: [1, 2, 2], padding: [0, 1, 1], outputPadding: [0, 0, 0], groups: 1),
                        rtol: 1e-4, atol: 1e-4, "after write cin \(cin)")
            XCTAssertGreaterThan(zip(changed.scalars, hit.scalars).map { abs($0 - $1) }.max()!, 1e-3)
        }
        // More weight tensors than the cache holds: every call still correct.
        let x = rng.tensor([1, 4, 2, 3, 3])
        Tensor.transposedPhaseWeightCache = true
        for i in 0..<12 {
            let w = rng.tensor([4, 3, 1, 4, 4])
            let y = x.convTranspose3d(weight: w, stride: [1, 2, 2], padding: [0, 1, 1])
            assertClose(y, naiveConvTranspose3d(x, w, nil, stride: [1, 2, 2], padding: [0, 1, 1], outputPadding: [0, 0, 0], groups: 1),
                        rtol: 1e-4, atol: 1e-4, "weights \(i)")
        }
    }

    func testConvTransposeIsTheAdjointOfConvolution() {
        forEachConvolutionPath { path in
            // <conv(x; W), y> == <x, convT(y; W)> for zero padding, the same W and stride.
            var rng = SeededRandom(seed: 5)
            let cases: [([Int], [Int], [Int], [Int])] = [   // input, kernel, stride, padding
                ([8, 8, 8], [4, 4, 4], [2, 2, 2], [1, 1, 1]),
                ([3, 8, 10], [1, 4, 4], [1, 2, 2], [0, 1, 1]),
                ([5, 6, 7], [3, 3, 3], [1, 1, 1], [1, 1, 1]),
                ([9, 7, 8], [4, 3, 4], [2, 2, 3], [2, 0, 1]),
            ]
            for (size, k, s, p) in cases {
                let x = rng.tensor([1, 3] + size)
                let w = rng.tensor([4, 3] + k)
                let cx = x.conv3d(weight: w, stride: s, padding: .symmetric(p))
                let y = rng.tensor(cx.shape)
                // Output padding recovers the input size lost to the floor in the conv size formula.
                var op: [Int] = [0, 0, 0]
                for i in 0..<3 { let full: Int = (cx.shape[2 + i] - 1) * s[i] + k[i]; op[i] = size[i] - (full - 2 * p[i]) }
                let ty = y.convTranspose3d(weight: w, stride: s, padding: p, outputPadding: op)
                XCTAssertEqual(ty.shape, x.shape)
                let lhs = dot(cx, y), rhs = dot(x, ty)
                XCTAssertEqual(lhs, rhs, accuracy: 1e-4 * max(1, abs(lhs)), "\(path): k\(k) s\(s) p\(p)")
            }
        }
    }

    func testReferenceSamePadConvTransposeDoublesTheSize() {
        forEachConvolutionPath { path in
            var rng = SeededRandom(seed: 6)
            let x = rng.tensor([1, 2, 5, 6, 7])
            let w = rng.tensor([2, 3, 4, 4, 4])
            let y = x.padded(.uniform(1, mode: .replicate)).convTranspose3d(weight: w, stride: [2, 2, 2], padding: [3, 3, 3])
            XCTAssertEqual(y.shape, [1, 3, 10, 12, 14])
        }
    }

    func testPaddedMatchesDefinition() {
        var rng = SeededRandom(seed: 7)
        let x = rng.tensor([1, 2, 3, 4, 5])
        for mode in [PaddingMode.zero, .replicate] {
            let pad = Padding3d(front: [2, 0, 1], back: [1, 3, 0], mode: mode)
            let y = x.padded(pad)
            XCTAssertEqual(y.shape, [1, 2, 6, 7, 6])
            // padded == conv with a 1×1×1 identity kernel over the padding.
            let id = Tensor(shape: [2, 2, 1, 1, 1], data: [1, 0, 0, 1])
            assertClose(y, naiveConv3d(x, id, nil, stride: [1, 1, 1], front: pad.front, back: pad.back,
                                       replicate: mode == .replicate, groups: 1), rtol: 0, atol: 0)
        }
    }
}
