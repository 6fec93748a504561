import Dispatch

/// The backward rules, one entry per op (tinygrad's `pm_gradient` table): given the op, its
/// input values, its output and the gradient of the output (`g`), the gradient of each input
/// (nil where `needs` says no input wants it).
extension Tape {
    static func gradients(_ op: Op, inputs x: [Tensor], output y: Tensor, gradOutput g: Tensor,
                          needs: [Bool]) -> [Tensor?] {
        func need(_ k: Int) -> Bool { k < needs.count && needs[k] }
        switch op {
        case .leaf:
            return []
        case .conv3d(let geo):          // x, W, b
            return [need(0) ? timed("dX conv", geo) { geo.inputGradient(weight: x[1], gradOutput: g) } : nil,
                    need(1) ? timed("dW conv", geo) { geo.weightGradient(input: x[0], gradOutput: g) } : nil,
                    need(2) ? g.channelSums() : nil]
        case .convTranspose3d(let geo): // x, W, b: the adjoint of conv(geo)
            return [need(0) ? timed("dX convT", geo) { geo.forward(g, weight: x[1], bias: nil) } : nil,
                    need(1) ? timed("dW convT", geo) { geo.weightGradient(input: g, gradOutput: x[0]) } : nil,
                    need(2) ? g.channelSums() : nil]
        case .instanceNorm(_, let rstd): // dx = rstd·(g − mean(g) − x̂·mean(g·x̂))
            return [instanceNormBackward(normalized: y, rstd: rstd, gradOutput: g)]
        case .prelu:                     // dx = g·(x > 0 ? 1 : a); da = Σ g·min(0, x)
            return preluBackward(x: x[0], weight: x[1], gradOutput: g)
        case .leakyReLU(let s):
            return [zipMap(g, x[0]) { gi, xi in xi > 0 ? gi : gi * s }]
        case .add:
            return [g, g]
        case .concat(let channels):
            return splitChannels(g, channels)
        case .softmax:                   // dx = y·(g − Σ_c y·g)
            return [softmaxBackward(y: y, gradOutput: g)]
        case .diceCE(let saved):         // the logits gradient was computed with the value
            var d = saved.gradient
            let s = g.scalars[0]
            if s != 1 { d.withUnsafeMutableBufferPointer { p in for i in 0..<p.count { p[i] *= s } } }
            return [d]
        }
    }

    /// Runs `body`; with `Tape.profiling` on, adds its seconds to the per-layer profile under
    /// `what` and the geometry (`layers` keys: "dW conv 16→32 k3 s2 @96³").
    static func timed(_ what: String, _ geo: ConvGeometry, _ body: () -> Tensor) -> Tensor {
        guard Tape.profiling else { return body() }
        let t0 = DispatchTime.now().uptimeNanoseconds
        let r = body()
        Tape.layerProfile["\(what) \(geo.summary)", default: 0] += Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        return r
    }

    static func zipMap(_ a: Tensor, _ b: Tensor, _ f: (Float, Float) -> Float) -> Tensor {
        var out = a
        b.withUnsafeBufferPointer { bp in out.withUnsafeMutableBufferPointer { p in for i in 0..<p.count { p[i] = f(p[i], bp[i]) } } }
        return out
    }

    static func instanceNormBackward(normalized xhat: Tensor, rstd: [Float], gradOutput g: Tensor) -> Tensor {
        let inner = g.count / rstd.count
        // Into a fresh tensor: `g` is still referenced by the tape walk, so writing it in place
        // would first copy it.
        var dx = Tensor(uninitialized: g.shape)
        xhat.withUnsafeBufferPointer { hp in g.withUnsafeBufferPointer { gp in dx.withUnsafeMutableBufferPointer { dp in
            let hb = hp.baseAddress!, gb = gp.baseAddress!, db = dp.baseAddress!
            AutogradParallel.forEach(rstd.count) { j in
                let h = hb + j * inner, gj = gb + j * inner, d = db + j * inner
                let (sg, sgh) = Tensor.sumAndDot(gj, h, count: inner)
                let mg = Float(sg / Double(inner)), mgh = Float(sgh / Double(inner)), r = rstd[j]
                for i in 0..<inner { d[i] = r * (gj[i] - mg - h[i] * mgh) }
            }
        }}}
        return dx
    }

    static func preluBackward(x: Tensor, weight: Tensor, gradOutput g: Tensor) -> [Tensor?] {
        let a = weight.scalars
        let (n, c) = (x.shape[0], x.shape[1]), inner = x.count / (n * c)
        var dx = Tensor(uninitialized: g.shape)
        var partial = [Double](repeating: 0, count: n * c)  // Σ g·min(0, x) per (n, c)
        x.withUnsafeBufferPointer { xp in g.withUnsafeBufferPointer { gp in dx.withUnsafeMutableBufferPointer { dp in
            partial.withUnsafeMutableBufferPointer { pp in
                let xb = xp.baseAddress!, gb = gp.baseAddress!, db = dp.baseAddress!, pb = pp.baseAddress!
                AutogradParallel.forEach(n * c) { j in
                    let s = a.count == 1 ? a[0] : a[j % c]
                    let xs = xb + j * inner, gs = gb + j * inner, ds = db + j * inner
                    // 16 voxels at a time (compare + select, no branches), then the tail.
                    var accV = SIMD16<Float>()
                    var i = 0
                    while i + 16 <= inner {
                        let v = UnsafeRawPointer(xs + i).loadUnaligned(as: SIMD16<Float>.self)
                        let gv = UnsafeRawPointer(gs + i).loadUnaligned(as: SIMD16<Float>.self)
                        let neg = v .< 0
                        accV += (gv * v).replacing(with: 0, where: .!neg)
                        UnsafeMutableRawPointer(ds + i).storeBytes(of: gv.replacing(with: gv * s, where: neg), as: SIMD16<Float>.self)
                        i += 16
                    }
                    var acc = accV.sum()
                    while i < inner {
                        let v = xs[i], gv = gs[i]
                        let neg = v < 0
                        acc += neg ? gv * v : 0
                        ds[i] = neg ? gv * s : gv
                        i += 1
                    }
                    pb[j] = Double(acc)
                }
            }
        }}}
        var da = [Double](repeating: 0, count: a.count)
        for j in 0..<(n * c) { da[a.count == 1 ? 0 : j % c] += partial[j] }
        return [dx, Tensor(shape: weight.shape, data: da.map { Float($0) })]
    }

    static func splitChannels(_ g: Tensor, _ channels: [Int]) -> [Tensor?] {
        let n = g.shape[0], total = g.shape[1], spatial = Array(g.shape[2...]), inner = spatial.reduce(1, *)
        var offset = 0
        return channels.map { c in
            var part = Tensor(uninitialized: [n, c] + spatial)
            g.withUnsafeBufferPointer { gp in part.withUnsafeMutableBufferPointer { pp in
                for b in 0..<n {
                    (pp.baseAddress! + b * c * inner).update(from: gp.baseAddress! + (b * total + offset) * inner, count: c * inner)
                }
            }}
            offset += c
            return part
        }
    }

    static func softmaxBackward(y: Tensor, gradOutput g: Tensor) -> Tensor {
        let (n, c) = (y.shape[0], y.shape[1]), inner = y.count / (n * c)
        var dx = g
        y.withUnsafeBufferPointer { yp in dx.withUnsafeMutableBufferPointer { dp in
            for b in 0..<n {
                let yb = yp.baseAddress! + b * c * inner, db = dp.baseAddress! + b * c * inner
                for i in 0..<inner {
                    var dot: Float = 0
                    for ch in 0..<c { dot += yb[ch * inner + i] * db[ch * inner + i] }
                    for ch in 0..<c { db[ch * inner + i] = yb[ch * inner + i] * (db[ch * inner + i] - dot) }
                }
            }
        }}
        return dx
    }
}
