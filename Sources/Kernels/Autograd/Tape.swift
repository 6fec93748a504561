import Dispatch

/// A handle to one value recorded on a `Tape`.
public struct Variable: Hashable, Sendable {
    public let id: Int
}

/// Reverse-mode automatic differentiation by a tape (a Wengert list): every op appends a node
/// holding its forward value, its inputs and what its backward rule needs; `gradients(of:)`
/// walks the nodes backwards applying the rules of `Tape+Gradients.swift`, one per op.
///
/// A tape lives for one forward/backward pass. Values are kept until the tape is released, so
/// the peak memory is the activations of one pass. A tape made with `recording: false` keeps no
/// history (inference): each op's inputs may be freed as soon as the caller drops them.
public final class Tape {
    /// The ops with a backward rule; associated values are what the rule needs besides the
    /// input and output values.
    enum Op {
        case leaf
        case conv3d(ConvGeometry)
        case convTranspose3d(ConvGeometry)
        case instanceNorm(mean: [Float], rstd: [Float])
        case prelu
        case leakyReLU(slope: Float)
        case add
        case concat(channels: [Int])
        case softmax
        case diceCE(DiceCEGradient)
    }

    struct Node {
        var op: Op
        var inputs: [Int]
        var value: Tensor?
        var requiresGrad: Bool
    }

    public let recording: Bool
    var nodes: [Node] = []

    /// Per-op seconds (forward: time since the previous recorded op; backward: the rule), kept
    /// when `profiling` is on; for benchmarks.
    nonisolated(unsafe) public static var profiling = false
    nonisolated(unsafe) public static var profile: [String: Double] = [:]
    /// Per-layer seconds of the convolution products (forward, dX, dW), keyed by geometry.
    nonisolated(unsafe) public static var layerProfile: [String: Double] = [:]
    var lastAppend = DispatchTime.now().uptimeNanoseconds

    static func kind(_ op: Op) -> String {
        switch op {
        case .leaf: return "leaf"
        case .conv3d: return "conv3d"
        case .convTranspose3d: return "convTranspose3d"
        case .instanceNorm: return "instanceNorm"
        case .prelu: return "prelu"
        case .leakyReLU: return "leakyReLU"
        case .add: return "add"
        case .concat: return "concat"
        case .softmax: return "softmax"
        case .diceCE: return "diceCE"
        }
    }

    public init(recording: Bool = true) { self.recording = recording }

    /// A value that receives no gradient (input data).
    public func constant(_ t: Tensor) -> Variable { append(.leaf, [], t, requiresGrad: false) }

    /// A value whose gradient `gradients(of:)` returns (a parameter).
    public func parameter(_ t: Tensor) -> Variable { append(.leaf, [], t, requiresGrad: recording) }

    public subscript(_ v: Variable) -> Tensor {
        guard let t = nodes[v.id].value else { preconditionFailure("value \(v.id) was released") }
        return t
    }

    func append(_ op: Op, _ inputs: [Variable], _ value: Tensor, requiresGrad: Bool? = nil) -> Variable {
        if Tape.profiling {
            let now = DispatchTime.now().uptimeNanoseconds
            if case .leaf = op {} else { Tape.profile["fwd " + Tape.kind(op), default: 0] += Double(now - lastAppend) / 1e9 }
            lastAppend = now
        }
        let needs = requiresGrad ?? (recording && inputs.contains { nodes[$0.id].requiresGrad })
        nodes.append(Node(op: recording ? op : .leaf, inputs: recording ? inputs.map(\.id) : [],
                          value: value, requiresGrad: needs))
        return Variable(id: nodes.count - 1)
    }

    /// Drops the stored value of `v` (inference: a value no later op reads).
    public func release(_ v: Variable) {
        precondition(!recording, "values of a recording tape are needed by the backward pass")
        nodes[v.id].value = nil
    }

    /// Gradients of `loss` with respect to every parameter it depends on. `seed` is the
    /// gradient of the output (default: 1 for a scalar loss).
    public func gradients(of loss: Variable, seed: Tensor? = nil) -> [Variable: Tensor] {
        precondition(recording, "gradients(of:) needs a recording tape")
        precondition(seed != nil || self[loss].count == 1, "gradients(of:) without a seed needs a scalar, got \(self[loss].shape)")
        precondition(seed == nil || seed!.shape == self[loss].shape, "gradients(of:): seed \(seed!.shape) for output \(self[loss].shape)")
        var grads = [Tensor?](repeating: nil, count: nodes.count)
        grads[loss.id] = seed ?? Tensor(shape: self[loss].shape, repeating: 1)
        var result: [Variable: Tensor] = [:]
        for id in stride(from: loss.id, through: 0, by: -1) {
            guard let g = grads[id], nodes[id].requiresGrad else { continue }
            let node = nodes[id]
            if case .leaf = node.op { result[Variable(id: id)] = g; continue }
            grads[id] = nil
            let needs = node.inputs.map { nodes[$0].requiresGrad }
            let t0 = Tape.profiling ? DispatchTime.now().uptimeNanoseconds : 0
            let inputGrads = Tape.gradients(node.op, inputs: node.inputs.map { nodes[$0].value! },
                                            output: node.value!, gradOutput: g, needs: needs)
            if Tape.profiling { Tape.profile["bwd " + Tape.kind(node.op), default: 0] += Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9 }
            for (k, input) in node.inputs.enumerated() where needs[k] {
                guard let ig = inputGrads[k] else { continue }
                if grads[input] == nil { grads[input] = ig } else { grads[input]!.accumulate(ig) }
            }
        }
        return result
    }
}
