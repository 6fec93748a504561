import COpenBLAS
import Foundation

/// Linear layers, (batched) matrix products and softmax.
extension Tensor {
    /// PyTorch `Linear`: `y = x·Wᵀ + b` over the last axis; `weight` is [out, in], `bias` [out] or nil.
    public func linear(weight: Tensor, bias: Tensor? = nil) -> Tensor {
        precondition(rank >= 1 && weight.rank == 2 && weight.shape[1] == shape[rank - 1],
                     "linear: input \(shape) and weight \(weight.shape) do not match")
        let inF = weight.shape[1], outF = weight.shape[0]
        precondition(bias == nil || bias!.count == outF, "linear: bias \(bias!.shape) for \(outF) outputs")
        let rows = count / max(inF, 1)
        var outShape = shape
        outShape[rank - 1] = outF
        var out = Tensor(zeros: outShape)
        if let bias {
            let b = bias.scalars
            out.withMutablePointer { y in for r in 0..<rows { for j in 0..<outF { y[r * outF + j] = b[j] } } }
        }
        guard rows > 0, inF > 0, outF > 0 else { return out }
        withPointer { x in
            weight.withPointer { w in
                out.withMutablePointer { y in
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(rows), Int32(outF), Int32(inF),
                                1, x, Int32(inF), w, Int32(inF), 1, y, Int32(outF))
                }
            }
        }
        return out
    }

    /// Batched matrix product `alpha · op(a) · op(b)` over the last two axes (`op` = optional transpose).
    /// Leading (batch) axes must be equal, or one operand may be rank 2 (shared by every batch).
    public static func matmul(_ a: Tensor, _ b: Tensor, transposeA: Bool = false, transposeB: Bool = false,
                              alpha: Float = 1) -> Tensor {
        precondition(a.rank >= 2 && b.rank >= 2, "matmul: operands \(a.shape) and \(b.shape) need rank ≥ 2")
        let aBatch = Array(a.shape.dropLast(2)), bBatch = Array(b.shape.dropLast(2))
        precondition(aBatch == bBatch || aBatch.isEmpty || bBatch.isEmpty,
                     "matmul: batch axes of \(a.shape) and \(b.shape) differ")
        let (ar, ac) = (a.shape[a.rank - 2], a.shape[a.rank - 1])
        let (br, bc) = (b.shape[b.rank - 2], b.shape[b.rank - 1])
        let m = transposeA ? ac : ar, k = transposeA ? ar : ac
        let kb = transposeB ? bc : br, n = transposeB ? br : bc
        precondition(k == kb, "matmul: inner sizes of \(a.shape)\(transposeA ? "ᵀ" : "") and \(b.shape)\(transposeB ? "ᵀ" : "") differ")
        let batchShape = aBatch.isEmpty ? bBatch : aBatch
        let batch = batchShape.reduce(1, *)
        var out = Tensor(zeros: batchShape + [m, n])
        guard m > 0, n > 0, k > 0 else { return out }
        let aStride = aBatch.isEmpty ? 0 : ar * ac, bStride = bBatch.isEmpty ? 0 : br * bc
        a.withPointer { ap in
            b.withPointer { bp in
                out.withMutablePointer { cp in
                    let work = { (i: Int) in
                        cblas_sgemm(CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans,
                                    transposeB ? CblasTrans : CblasNoTrans, Int32(m), Int32(n), Int32(k), alpha,
                                    ap + i * aStride, Int32(ac), bp + i * bStride, Int32(bc), 0, cp + i * m * n, Int32(n))
                    }
                    // Many small products: split the batch over our threads, one BLAS thread each.
                    if batch >= KernelContext.threads && m * n * k < 1 << 20 && KernelContext.threads > 1 {
                        let saved = BLASThreads.count
                        BLASThreads.count = 1
                        KernelContext.parallelFor(batch) { r in for i in r { work(i) } }
                        BLASThreads.count = saved
                    } else {
                        for i in 0..<batch { work(i) }
                    }
                }
            }
        }
        return out
    }

    /// Softmax along `axis` (negative counts from the end), numerically stable (max subtracted).
    public func softmax(axis: Int) -> Tensor {
        let ax = axis < 0 ? axis + rank : axis
        precondition(ax >= 0 && ax < rank, "softmax: axis \(axis) out of range for \(shape)")
        let len = shape[ax]
        let inner = shape[(ax + 1)...].reduce(1, *)
        let outer = shape[..<ax].reduce(1, *)
        var out = Tensor(uninitialized: shape)
        guard len > 0 else { return out }
        withPointer { x in
            out.withMutablePointer { y in
                KernelContext.parallelFor(outer * inner, minimumChunk: 64) { r in
                    for job in r {
                        let o = job / inner, i = job % inner
                        let base = o * len * inner + i
                        var mx = -Float.infinity
                        for j in 0..<len { mx = max(mx, x[base + j * inner]) }
                        var s: Float = 0
                        for j in 0..<len { let e = expf(x[base + j * inner] - mx); y[base + j * inner] = e; s += e }
                        let inv = 1 / s
                        for j in 0..<len { y[base + j * inner] *= inv }
                    }
                }
            }
        }
        return out
    }
}
