/// Concatenation and slicing along an axis (channels by default).
extension Tensor {
    /// Joins tensors whose shapes agree except on `axis` (PyTorch `torch.cat`).
    public static func concat(_ tensors: [Tensor], axis: Int = 1) -> Tensor {
        precondition(!tensors.isEmpty, "concat: no tensors")
        let first = tensors[0]
        let ax = axis < 0 ? axis + first.rank : axis
        precondition(ax >= 0 && ax < first.rank, "concat: axis \(axis) out of range for \(first.shape)")
        for t in tensors {
            precondition(t.rank == first.rank && (0..<t.rank).allSatisfy { $0 == ax || t.shape[$0] == first.shape[$0] },
                         "concat: shapes \(tensors.map { $0.shape }) differ outside axis \(ax)")
        }
        var outShape = first.shape
        outShape[ax] = tensors.reduce(0) { $0 + $1.shape[ax] }
        let outer = first.shape[..<ax].reduce(1, *)
        let inner = first.shape[(ax + 1)...].reduce(1, *)
        let outRow = outShape[ax] * inner
        var out = Tensor(uninitialized: outShape)
        out.withMutablePointer { y in
            var offset = 0
            for t in tensors {
                let row = t.shape[ax] * inner
                t.withPointer { x in
                    KernelContext.parallelFor(outer) { r in
                        for o in r { (y + o * outRow + offset).update(from: x + o * row, count: row) }
                    }
                }
                offset += row
            }
        }
        return out
    }

    /// Elements `range` of `axis` (PyTorch `x[:, range]` for axis 1), as a new contiguous tensor.
    public func slice(axis: Int = 1, _ range: Range<Int>) -> Tensor {
        let ax = axis < 0 ? axis + rank : axis
        precondition(ax >= 0 && ax < rank && range.lowerBound >= 0 && range.upperBound <= shape[ax],
                     "slice: range \(range) of axis \(axis) out of bounds for \(shape)")
        var outShape = shape
        outShape[ax] = range.count
        let outer = shape[..<ax].reduce(1, *)
        let inner = shape[(ax + 1)...].reduce(1, *)
        let inRow = shape[ax] * inner, outRow = range.count * inner
        var out = Tensor(uninitialized: outShape)
        withPointer { x in
            out.withMutablePointer { y in
                KernelContext.parallelFor(outer) { r in
                    for o in r { (y + o * outRow).update(from: x + o * inRow + range.lowerBound * inner, count: outRow) }
                }
            }
        }
        return out
    }

    /// Splits `axis` into consecutive pieces of the given sizes (PyTorch `torch.split`).
    public func split(axis: Int = 1, sizes: [Int]) -> [Tensor] {
        let ax = axis < 0 ? axis + rank : axis
        precondition(sizes.reduce(0, +) == shape[ax], "split: sizes \(sizes) do not add up to axis \(ax) of \(shape)")
        var start = 0
        return sizes.map { s in defer { start += s }; return slice(axis: ax, start..<(start + s)) }
    }
}
