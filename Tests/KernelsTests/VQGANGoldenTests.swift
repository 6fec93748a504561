import Foundation
import XCTest
import Kernels

/// The VQ-GAN loaded from the Lightning checkpoint through the pickle reader, against the
/// reference's intermediate and final tensors (16³ input, 4³ latent).
final class VQGANGoldenTests: XCTestCase {
    static let model: Result<VQGAN3D, Error> = Result {
        try VQGAN3D(stateDict: try TorchCheckpoint(path: Fixtures.difftumor("autoencoder.ckpt")).modelStateDict())
    }

    func testArchitectureIsInferredFromShapes() throws {
        let a = try Self.model.get().architecture
        XCTAssertEqual(a.hiddens, 16)
        XCTAssertEqual(a.levels, 2)
        XCTAssertEqual(a.embeddingDim, 8)
        XCTAssertEqual(a.codes, 16384)
        XCTAssertEqual(a.imageChannels, 1)
    }

    func testEncoderLayersAndOutput() throws {
        let g = try Fixtures.golden
        let vq = try Self.model.get()
        var taps: [String: Tensor] = [:]
        let z = vq.encode(try g.tensor("vqgan.encode.input"), taps: { taps[$0] = $1 })
        for name in ["conv_first", "block0.down", "block0.res", "block1.down", "block1.res", "final_block"] {
            guard let t = taps[name] else { XCTFail("no tap \(name)"); continue }
            assertClose(t, try g.tensor("vqgan.encode.\(name)"), rel: 1e-5, "encode.\(name)")
        }
        assertClose(z, try g.tensor("vqgan.encode.output"), rel: 1e-5, "encode.output")
    }

    func testCodebookSnapAndNormalisationRange() throws {
        let g = try Fixtures.golden
        let vq = try Self.model.get()
        let z = try g.tensor("vqgan.encode.output")
        let idx = vq.quantize(z)
        let ref = try Safetensors.readInt64(path: Fixtures.difftumor("golden.safetensors"), key: "vqgan.quantize.indices")
        XCTAssertEqual(idx.map(Int64.init), ref.values)
        forEachSnapPath { path in XCTAssertEqual(vq.quantize(z).map(Int64.init), ref.values, "\(path) snap") }
        let emb = vq.embed(idx, shape: [1, 4, 4, 4])
        // The reference stores the straight-through value (e − z) + z: equal to e up to rounding.
        assertClose(emb, try g.tensor("vqgan.quantize.embeddings"), rel: 1e-6, "quantize.embeddings")
        XCTAssertEqual(vq.codebookMin, try g.tensor("vqgan.codebook.min").scalars[0])
        XCTAssertEqual(vq.codebookMax, try g.tensor("vqgan.codebook.max").scalars[0])
    }

    func testDecoderLayersAndOutput() throws {
        let g = try Fixtures.golden
        let vq = try Self.model.get()
        var taps: [String: Tensor] = [:]
        let out = vq.decode(try g.tensor("vqgan.encode.output"), taps: { taps[$0] = $1 })
        for name in ["post_vq_conv", "final_block", "block0.up", "block0.res1", "block0.res2", "block1.up", "block1.res1", "block1.res2"] {
            guard let t = taps[name] else { XCTFail("no tap \(name)"); continue }
            assertClose(t, try g.tensor("vqgan.decode.\(name)"), rel: 1e-5, "decode.\(name)")
        }
        assertClose(out, try g.tensor("vqgan.decode.output"), rel: 1e-4, "decode.output")
    }

    func testMissingAndMisshapedKeysAreNamed() throws {
        let sd = try TorchCheckpoint(path: Fixtures.difftumor("autoencoder.ckpt")).modelStateDict()
        var broken = StateDict(file: "test")
        for k in sd.keys where k != "decoder.conv_last.conv.bias" { broken.add(k, sd.entry(k)!) }
        XCTAssertThrowsError(try VQGAN3D(stateDict: broken)) { e in
            XCTAssertTrue("\(e)".contains("decoder.conv_last.conv.bias"), "\(e)")
        }
        var misshaped = StateDict(file: "test")
        for k in sd.keys { misshaped.add(k, sd.entry(k)!) }
        misshaped.add("encoder.conv_blocks.1.res.conv1.conv.weight", tensor: Tensor(zeros: [64, 64, 3, 3, 1]))
        XCTAssertThrowsError(try VQGAN3D(stateDict: misshaped)) { e in
            XCTAssertTrue("\(e)".contains("encoder.conv_blocks.1.res.conv1.conv.weight"), "\(e)")
        }
    }
}
