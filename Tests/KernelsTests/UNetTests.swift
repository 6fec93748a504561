import XCTest
import Kernels

final class UNetTests: XCTestCase {
    /// Names, order and shapes of MONAI's UNet(16-32-64-128-256, strides 2, 2 residual units)
    /// state dict, as scripts/trainer_expected.py read them from the monai package.
    func testReferenceStateDictMatchesMONAI() {
        let net = UNet(config: .reference)
        XCTAssertEqual(net.specs.map(\.name), ReferenceUNetExpected.keys)
        XCTAssertEqual(net.specs.map(\.shape), ReferenceUNetExpected.shapes)
        XCTAssertEqual(net.parameterCount, ReferenceUNetExpected.parameterCount)
    }

    /// The forward pass of a small UNet against MONAI's on the same weights and input.
    func testSmallUNetForwardMatchesMONAI() throws {
        var net = UNet(config: UNetConfig(channels: [4, 8, 16], strides: [2, 2]))
        XCTAssertEqual(net.specs.map(\.name), SmallUNetExpected.keys)
        XCTAssertEqual(net.specs.map(\.shape), SmallUNetExpected.shapes)
        var dict: [String: Tensor] = [:]
        for (k, s) in net.specs.enumerated() {
            if s.name.hasSuffix("adn.A.weight") { dict[s.name] = Tensor(shape: s.shape, repeating: 0.25); continue }
            dict[s.name] = Tensor(shape: s.shape, data: (0..<Tensor.elementCount(s.shape)).map { i in
                Float(0.2 * sin(1.3 * Double(i) + 0.7 * Double(k)))
            })
        }
        try net.load(stateDict: dict)
        let shape = SmallUNetExpected.inputShape
        let x = Tensor(shape: shape, data: (0..<Tensor.elementCount(shape)).map { i in
            Float(sin(0.05 * Double(i)) + 0.3 * cos(0.11 * Double(i)))
        })
        let y = net.predict(x)
        XCTAssertEqual(y.shape, SmallUNetExpected.outputShape)
        let v = y.scalars.map(Double.init)
        XCTAssertEqual(v.reduce(0, +), SmallUNetExpected.outputSum, accuracy: 1e-3 * SmallUNetExpected.outputAbsSum / 100)
        XCTAssertEqual(v.map(abs).reduce(0, +), SmallUNetExpected.outputAbsSum, accuracy: 1e-4 * SmallUNetExpected.outputAbsSum)
        for (i, e) in zip(SmallUNetExpected.sampleIndices, SmallUNetExpected.sampleValues) {
            XCTAssertEqual(v[i], e, accuracy: 1e-4 * max(1, abs(e)), "voxel \(i)")
        }
    }

    func testStrictLoadNamesTheBadKey() {
        var net = UNet(config: UNetConfig(channels: [2, 4], strides: [2]))
        var dict = Dictionary(uniqueKeysWithValues: net.stateDict())
        dict["model.0.residual.weight"] = Tensor(zeros: [1])
        XCTAssertThrowsError(try net.load(stateDict: dict)) { e in
            XCTAssertTrue("\(e)".contains("model.0.residual.weight") && "\(e)".contains("shape"), "\(e)")
        }
        dict = Dictionary(uniqueKeysWithValues: net.stateDict())
        dict["model.9.weight"] = Tensor(zeros: [1])
        XCTAssertThrowsError(try net.load(stateDict: dict)) { e in XCTAssertTrue("\(e)".contains("model.9.weight")) }
    }

    /// Gradients of a tiny UNet's parameters through the whole network (conv, transposed conv,
    /// instance norm, PReLU, residual add, skip concat) against finite differences. The PReLU
    /// slopes are set to 1 so that the network is smooth: with kinks, central differences over
    /// this many layers do not converge at Float32 step sizes (the PReLU rule itself is checked
    /// away from its kink in AutogradTests). The conv biases right before an instance norm have an
    /// exactly zero gradient, so their central difference is pure Float32 rounding noise of the
    /// objective (measured ≈ 3e-5) over 2·eps: eps 1e-2 keeps that noise below atol on every
    /// convolution lowering (at 1e-3 it passed or failed by the summation order of the lowering).
    func testTinyUNetGradients() {
        var net = UNet(config: UNetConfig(channels: [2, 4], strides: [2], numResUnits: 2), seed: 3)
        for s in net.specs where s.name.hasSuffix("adn.A.weight") { net.parameters[s.name] = Tensor(shape: [1], data: [1]) }
        let names = net.specs.map(\.name)
        let x = random([1, 1, 8, 8, 8], seed: 21)
        for avx in bothPaths() {
            KernelContext.useAVX512 = avx
            gradCheck(inputs: [x] + names.map { net.parameters[$0]! }, "tiny UNet avx512 \(avx)", eps: 1e-2, rtol: 3e-2, atol: 5e-3) { t, v in
                let bound = Dictionary(uniqueKeysWithValues: zip(names, v.dropFirst()))
                return net.forward(v[0], on: t, parameters: bound)
            }
        }
    }
}

final class UNetCheckpointTests: XCTestCase {
    /// A MONAI UNet checkpoint saved by torch ({"state_dict": …}, as the reference's
    /// `unet_synt_*_tumors.pt`), read with the PyTorch reader, config inferred from the shapes.
    func testLoadsMONAICheckpointAndMatchesForward() throws {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/trainer/small_monai_unet.pt").path
        let dict = try TorchCheckpoint(path: path).modelStateDict()
        var shapes: [String: [Int]] = [:]
        for k in dict.keys { shapes[k] = dict.shape(k) }
        let config = try UNetConfig.infer(fromShapes: shapes)
        XCTAssertEqual(config, UNetConfig(channels: [4, 8, 16], strides: [2, 2]))
        var net = UNet(config: config)
        var tensors: [String: Tensor] = [:]
        for k in dict.keys { tensors[k] = try dict.tensor(k) }
        try net.load(stateDict: tensors)
        let shape = SmallUNetExpected.inputShape
        let x = Tensor(shape: shape, data: (0..<Tensor.elementCount(shape)).map { i in
            Float(sin(0.05 * Double(i)) + 0.3 * cos(0.11 * Double(i)))
        })
        let y = net.predict(x).scalars.map(Double.init)
        for (i, e) in zip(SmallUNetExpected.sampleIndices, SmallUNetExpected.sampleValues) {
            XCTAssertEqual(y[i], e, accuracy: 1e-4 * max(1, abs(e)), "voxel \(i)")
        }
        XCTAssertEqual(try UNetConfig.infer(fromShapes: Dictionary(uniqueKeysWithValues: UNet(config: .reference).specs.map { ($0.name, $0.shape) })),
                       .reference)
    }
}
