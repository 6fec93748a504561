import Foundation

/// Hyper-parameters of MONAI's `UNet` (spatial_dims 3, kernel 3, up-kernel 3, PReLU, instance
/// norm without affine, no dropout). The reference: channels 16-32-64-128-256, strides 2×4,
/// 2 residual units, 1 input channel, 3 classes.
public struct UNetConfig: Codable, Equatable, Sendable {
    public var inChannels: Int
    public var outChannels: Int
    public var channels: [Int]
    public var strides: [Int]
    public var numResUnits: Int

    public init(inChannels: Int = 1, outChannels: Int = 3, channels: [Int] = [16, 32, 64, 128, 256],
                strides: [Int] = [2, 2, 2, 2], numResUnits: Int = 2) {
        precondition(channels.count >= 2 && strides.count == channels.count - 1,
                     "UNet: \(channels.count) channel counts need \(channels.count - 1) strides, got \(strides)")
        self.inChannels = inChannels; self.outChannels = outChannels
        self.channels = channels; self.strides = strides; self.numResUnits = numResUnits
    }

    /// The reference's segmentation U-Net (DiffTumor STEP3, `unet_synt_*_tumors.pt`).
    public static let reference = UNetConfig()

    /// Input sizes must be multiples of this (the product of the strides).
    public var sizeMultiple: Int { strides.reduce(1, *) }
}

/// MONAI's `UNet` with MONAI's parameter names (`model.0.conv.unit0.conv.weight`,
/// `model.1.submodule.0.residual.weight`, `model.2.0.adn.A.weight`, …), so a MONAI state dict
/// loads unchanged. Forward runs on a `Tape` so training gets gradients.
public struct UNet {
    public struct ParameterSpec: Equatable {
        public var name: String
        public var shape: [Int]
        /// PyTorch's fan-in for the default init (0 for PReLU slopes).
        public var fanIn: Int
    }

    public let config: UNetConfig
    /// Parameter names in MONAI's `state_dict()` order.
    public let specs: [ParameterSpec]
    /// Parameter values by name.
    public var parameters: [String: Tensor]

    /// PyTorch's default init: conv weights and biases U(−1/√fan_in, 1/√fan_in), PReLU 0.25.
    public init(config: UNetConfig = .reference, seed: UInt64 = 0) {
        self.config = config
        var specs: [ParameterSpec] = []
        var walker = Walker(config: config, mode: .declare)
        _ = walker.model(Variable(id: -1))
        specs = walker.specs
        self.specs = specs
        var rng = SplitMix64(seed: seed)
        var params: [String: Tensor] = [:]
        for s in specs {
            if s.fanIn == 0 { params[s.name] = Tensor(shape: s.shape, repeating: 0.25); continue }
            let bound = 1 / Double(s.fanIn).squareRoot()
            let values = (0..<Tensor.elementCount(s.shape)).map { _ in Float((rng.nextUnit() * 2 - 1) * bound) }
            params[s.name] = Tensor(shape: s.shape, data: values)
        }
        self.parameters = params
    }

    public var parameterCount: Int { specs.reduce(0) { $0 + Tensor.elementCount($1.shape) } }

    /// The parameters as an ordered state dict.
    public func stateDict() -> [(String, Tensor)] { specs.map { ($0.name, parameters[$0.name]!) } }

    /// Loads a state dict; strict: every key present, no unknown key, every shape equal.
    public mutating func load(stateDict: [String: Tensor], strict: Bool = true) throws {
        for s in specs {
            guard let t = stateDict[s.name] else {
                if strict { throw UNetLoadError(key: s.name, problem: "missing from the state dict") }
                continue
            }
            guard t.shape == s.shape else {
                throw UNetLoadError(key: s.name, problem: "has shape \(t.shape), the UNet needs \(s.shape)")
            }
            parameters[s.name] = t
        }
        if strict {
            let known = Set(specs.map(\.name))
            if let extra = stateDict.keys.sorted().first(where: { !known.contains($0) }) {
                throw UNetLoadError(key: extra, problem: "is not a parameter of this UNet (config \(config))")
            }
        }
    }

    /// Puts every parameter on the tape; returns the handles by name.
    public func bind(to tape: Tape) -> [String: Variable] {
        var out: [String: Variable] = [:]
        for s in specs { out[s.name] = tape.parameter(parameters[s.name]!) }
        return out
    }

    /// Logits [N, outChannels, D, H, W] for input [N, inChannels, D, H, W] (sizes multiples of
    /// `config.sizeMultiple`).
    public func forward(_ x: Variable, on tape: Tape, parameters bound: [String: Variable]) -> Variable {
        let shape = tape[x].shape
        precondition(shape.count == 5 && shape[1] == config.inChannels
                     && shape[2...].allSatisfy { $0 % config.sizeMultiple == 0 },
                     "UNet: input \(shape) needs \(config.inChannels) channels and sizes divisible by \(config.sizeMultiple)")
        var walker = Walker(config: config, mode: .run(tape, bound))
        return walker.model(x)
    }

    /// Inference without gradients: logits for `input`.
    public func predict(_ input: Tensor) -> Tensor {
        let tape = Tape(recording: false)
        let bound = bind(to: tape)
        return tape[forward(tape.constant(input), on: tape, parameters: bound)]
    }

    /// One walk of MONAI's module tree: declares the parameters, or runs the ops on a tape.
    struct Walker {
        enum Mode { case declare; case run(Tape, [String: Variable]) }
        let config: UNetConfig
        let mode: Mode
        var specs: [ParameterSpec] = []

        init(config: UNetConfig, mode: Mode) { self.config = config; self.mode = mode }

        mutating func model(_ x: Variable) -> Variable {
            level(x, prefix: "model.", inC: config.inChannels, outC: config.outChannels,
                  channels: config.channels, strides: config.strides, isTop: true)
        }

        /// `nn.Sequential(down, SkipConnection(sub), up)` (MONAI `UNet._create_block`).
        mutating func level(_ x: Variable, prefix: String, inC: Int, outC: Int, channels: [Int], strides: [Int],
                            isTop: Bool) -> Variable {
            let c = channels[0], s = strides[0]
            let down = downLayer(x, prefix: prefix + "0.", inC: inC, outC: c, stride: s)
            let sub: Variable, upC: Int
            if channels.count > 2 {
                sub = level(down, prefix: prefix + "1.submodule.", inC: c, outC: c,
                            channels: Array(channels.dropFirst()), strides: Array(strides.dropFirst()), isTop: false)
                upC = 2 * c
            } else {
                sub = downLayer(down, prefix: prefix + "1.submodule.", inC: c, outC: channels[1], stride: 1)
                upC = c + channels[1]
            }
            let skip = concat([down, sub])
            return upLayer(skip, prefix: prefix + "2.", inC: upC, outC: outC, stride: s, isTop: isTop)
        }

        mutating func downLayer(_ x: Variable, prefix: String, inC: Int, outC: Int, stride: Int) -> Variable {
            if config.numResUnits > 0 {
                return residualUnit(x, prefix: prefix, inC: inC, outC: outC, stride: stride,
                                    subunits: config.numResUnits, lastConvOnly: false)
            }
            return convolution(x, prefix: prefix, inC: inC, outC: outC, stride: stride, convOnly: false, transposed: false)
        }

        mutating func upLayer(_ x: Variable, prefix: String, inC: Int, outC: Int, stride: Int, isTop: Bool) -> Variable {
            if config.numResUnits > 0 {
                let up = convolution(x, prefix: prefix + "0.", inC: inC, outC: outC, stride: stride, convOnly: false, transposed: true)
                return residualUnit(up, prefix: prefix + "1.", inC: outC, outC: outC, stride: 1, subunits: 1, lastConvOnly: isTop)
            }
            return convolution(x, prefix: prefix, inC: inC, outC: outC, stride: stride, convOnly: isTop, transposed: true)
        }

        /// MONAI `ResidualUnit`: `conv.unit{i}` Convolutions plus a `residual` conv when the
        /// stride or channel count changes (3³ with the stride, or 1³ when only channels change).
        mutating func residualUnit(_ x: Variable, prefix: String, inC: Int, outC: Int, stride: Int,
                                   subunits: Int, lastConvOnly: Bool) -> Variable {
            var h = x, c = inC
            for su in 0..<max(1, subunits) {
                h = convolution(h, prefix: prefix + "conv.unit\(su).", inC: c, outC: outC, stride: su == 0 ? stride : 1,
                                convOnly: lastConvOnly && su == subunits - 1, transposed: false)
                c = outC
            }
            var res = x
            if stride != 1 || inC != outC {
                let k = stride == 1 ? 1 : 3
                res = conv(x, prefix: prefix + "residual.", inC: inC, outC: outC, kernel: k, stride: stride, padding: k / 2)
            }
            return add(h, res)
        }

        /// MONAI `Convolution`: `conv` then `adn` (InstanceNorm, Dropout(0), PReLU `adn.A`).
        mutating func convolution(_ x: Variable, prefix: String, inC: Int, outC: Int, stride: Int,
                                  convOnly: Bool, transposed: Bool) -> Variable {
            var y = transposed
                ? convT(x, prefix: prefix + "conv.", inC: inC, outC: outC, stride: stride)
                : conv(x, prefix: prefix + "conv.", inC: inC, outC: outC, kernel: 3, stride: stride, padding: 1)
            if !convOnly {
                let a = param(prefix + "adn.A.weight", [1], fanIn: 0)
                if case .run(let tape, _) = mode { y = tape.prelu(tape.instanceNorm(y), weight: a) }
            }
            return y
        }

        mutating func conv(_ x: Variable, prefix: String, inC: Int, outC: Int, kernel k: Int, stride: Int, padding: Int) -> Variable {
            let fan = inC * k * k * k
            let w = param(prefix + "weight", [outC, inC, k, k, k], fanIn: fan)
            let b = param(prefix + "bias", [outC], fanIn: fan)
            guard case .run(let tape, _) = mode else { return x }
            return tape.conv3d(x, weight: w, bias: b, stride: [stride, stride, stride], padding: [padding, padding, padding])
        }

        mutating func convT(_ x: Variable, prefix: String, inC: Int, outC: Int, stride: Int) -> Variable {
            let fan = outC * 27  // PyTorch takes fan-in from weight dim 1 for ConvTranspose
            let w = param(prefix + "weight", [inC, outC, 3, 3, 3], fanIn: fan)
            let b = param(prefix + "bias", [outC], fanIn: fan)
            guard case .run(let tape, _) = mode else { return x }
            let s = [stride, stride, stride]
            return tape.convTranspose3d(x, weight: w, bias: b, stride: s, padding: [1, 1, 1],
                                        outputPadding: s.map { $0 - 1 })
        }

        mutating func param(_ name: String, _ shape: [Int], fanIn: Int) -> Variable {
            switch mode {
            case .declare:
                specs.append(ParameterSpec(name: name, shape: shape, fanIn: fanIn))
                return Variable(id: -1)
            case .run(_, let bound):
                guard let v = bound[name] else { preconditionFailure("UNet: parameter \(name) not bound") }
                return v
            }
        }

        func concat(_ parts: [Variable]) -> Variable {
            guard case .run(let tape, _) = mode else { return parts[0] }
            return tape.concat(parts)
        }

        func add(_ a: Variable, _ b: Variable) -> Variable {
            guard case .run(let tape, _) = mode else { return a }
            return tape.add(a, b)
        }
    }
}

public struct UNetLoadError: Error, CustomStringConvertible {
    public var key: String
    public var problem: String
    public var description: String { "UNet state dict: key \(key) \(problem)" }
}

