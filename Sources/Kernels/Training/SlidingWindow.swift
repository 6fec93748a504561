import Foundation

/// MONAI's `sliding_window_inference` for one volume (sw_batch 1): windows of `roiSize` at an
/// interval of roi·(1 − overlap), the last window of each axis moved back to end at the border
/// (`dense_patch_slices`), volumes smaller than the window padded with zeros on both sides, and
/// window logits blended with a Gaussian importance map (σ = 0.125·roi): by default MONAI 0.9's
/// `compute_importance_map(mode="gaussian")` (erf-integrated kernel, the version the reference
/// pins), optionally MONAI ≥ 1.0's sampled form (`GaussianForm`).
public struct SlidingWindow: Sendable {
    public var roiSize: [Int]
    public var overlap: Double
    public var sigmaScale: Double
    public var gaussianForm: GaussianForm

    public init(roiSize: [Int] = [96, 96, 96], overlap: Double = 0.5, sigmaScale: Double = 0.125,
                gaussianForm: GaussianForm = .erf) {
        precondition(roiSize.count == 3 && (0..<1).contains(overlap), "SlidingWindow: roi \(roiSize), overlap \(overlap)")
        self.roiSize = roiSize; self.overlap = overlap; self.sigmaScale = sigmaScale; self.gaussianForm = gaussianForm
    }

    /// Window start offsets along one axis of `size` (≥ roi).
    public static func starts(size: Int, roi: Int, overlap: Double) -> [Int] {
        if roi >= size { return [0] }
        let interval = max(1, Int(Double(roi) * (1 - overlap)))
        var out: [Int] = []
        var i = 0
        while true {
            let s = i * interval
            out.append(min(s, size - roi))
            if s + roi >= size { break }
            i += 1
        }
        return out
    }

    /// How the Gaussian importance map is built.
    public enum GaussianForm: String, Sendable {
        /// MONAI ≤ 0.9 (the version the reference pins): a unit impulse at `roi / 2` filtered by
        /// `GaussianFilter(sigma = sigma_scale·roi)` (erf kernel `0.5·(erf((x+½)/(σ√2)) −
        /// erf((x−½)/(σ√2)))`, truncated at int(max(4σ, 0.5) + 0.5), zero padding), divided by
        /// its maximum, zeros raised to the smallest nonzero value.
        case erf
        /// MONAI ≥ 1.0: sampled `exp(−x²/2σ²)` on x = −(n−1)/2 … (n−1)/2 per axis (not
        /// normalised), clamped below at max(min, 1e-3).
        case sampled
    }

    /// The blending weights of one window, [D·H·W], as MONAI's `compute_importance_map(mode="gaussian")`.
    public func importanceMap(form: GaussianForm = .erf) -> [Float] {
        let axes: [[Double]] = roiSize.map { n in
            let sigma = sigmaScale * Double(n)
            switch form {
            case .erf:
                // In Float32 as torch evaluates it (the tails are differences of erf values near 1).
                let sigma = Float(sigmaScale * Double(n))
                let tail = Int(max(Double(sigma) * 4, 0.5) + 0.5), c = n / 2
                let t = Float(0.70710678) / sigma
                return (0..<n).map { i in
                    let x = Float(i - c)
                    guard abs(i - c) <= tail else { return 0 }
                    return Double(max(0, 0.5 * (erf(t * (x + 0.5)) - erf(t * (x - 0.5)))))
                }
            case .sampled:
                return (0..<n).map { i in
                    let x = Double(i) - Double(n - 1) / 2
                    return exp(x * x / (-2 * sigma * sigma))
                }
            }
        }
        let count = roiSize.reduce(1, *)
        var w = [Double](repeating: 0, count: count)
        var i = 0
        for a in axes[0] { for b in axes[1] { for c in axes[2] { w[i] = a * b * c; i += 1 } } }
        switch form {
        case .erf:
            let m = w.max()!
            for j in 0..<count { w[j] /= m }
            let floor = w.filter { $0 > 0 }.min() ?? 1
            return w.map { Float(max($0, floor)) }
        case .sampled:
            let floor = max(w.min()!, 1e-3)
            return w.map { Float(max($0, floor)) }
        }
    }

    /// Blended logits [classes, D, H, W] for `volume` [D, H, W] (or [1, D, H, W]); `model`
    /// maps a [1, 1, roi…] window to [1, classes, roi…] logits.
    public func infer(volume: Tensor, classes: Int, model: (Tensor) -> Tensor) -> Tensor {
        let size = Array(volume.shape.suffix(3))
        precondition(volume.count == size.reduce(1, *), "SlidingWindow: volume \(volume.shape) must be one channel")
        // Pad to at least the window (MONAI pads symmetrically, extra voxel at the end).
        let padded = (0..<3).map { max(size[$0], roiSize[$0]) }
        let front = (0..<3).map { (padded[$0] - size[$0]) / 2 }
        var input = Tensor(zeros: padded)
        let src = volume.scalars
        input.withUnsafeMutableBufferPointer { p in
            for d in 0..<size[0] { for h in 0..<size[1] {
                let o = ((d + front[0]) * padded[1] + h + front[1]) * padded[2] + front[2]
                for w in 0..<size[2] { p[o + w] = src[(d * size[1] + h) * size[2] + w] }
            }}
        }
        let imp = importanceMap(form: gaussianForm)
        let n = padded.reduce(1, *)
        var acc = [Float](repeating: 0, count: classes * n), norm = [Float](repeating: 0, count: n)
        let roi = roiSize
        for sd in SlidingWindow.starts(size: padded[0], roi: roi[0], overlap: overlap) {
            for sh in SlidingWindow.starts(size: padded[1], roi: roi[1], overlap: overlap) {
                for sw in SlidingWindow.starts(size: padded[2], roi: roi[2], overlap: overlap) {
                    var window = Tensor(uninitialized: [1, 1] + roi)
                    input.withUnsafeBufferPointer { ip in window.withUnsafeMutableBufferPointer { wp in
                        for d in 0..<roi[0] { for h in 0..<roi[1] {
                            (wp.baseAddress! + (d * roi[1] + h) * roi[2])
                                .update(from: ip.baseAddress! + ((sd + d) * padded[1] + sh + h) * padded[2] + sw, count: roi[2])
                        }}
                    }}
                    let logits = model(window)
                    precondition(logits.shape == [1, classes] + roi, "SlidingWindow: model gave \(logits.shape) for window \(roi)")
                    let lv = logits.scalars
                    let roiCount = roi.reduce(1, *)
                    for d in 0..<roi[0] { for h in 0..<roi[1] { for w in 0..<roi[2] {
                        let k = (d * roi[1] + h) * roi[2] + w
                        let o = ((sd + d) * padded[1] + sh + h) * padded[2] + sw + w
                        norm[o] += imp[k]
                        for c in 0..<classes { acc[c * n + o] += imp[k] * lv[c * roiCount + k] }
                    }}}
                }
            }
        }
        // Normalise and crop the padding away.
        var out = Tensor(uninitialized: [classes] + size)
        out.withUnsafeMutableBufferPointer { p in
            var i = 0
            for c in 0..<classes { for d in 0..<size[0] { for h in 0..<size[1] { for w in 0..<size[2] {
                let o = ((d + front[0]) * padded[1] + h + front[1]) * padded[2] + w + front[2]
                p[i] = acc[c * n + o] / norm[o]; i += 1
            }}}}
        }
        return out
    }

    /// Argmax over the class axis of [classes, D, H, W] logits.
    public static func argmax(_ logits: Tensor) -> [UInt8] {
        let c = logits.shape[0], n = logits.count / c
        let v = logits.scalars
        return (0..<n).map { i in
            var best = 0
            for k in 1..<c where v[k * n + i] > v[best * n + i] { best = k }
            return UInt8(best)
        }
    }
}
