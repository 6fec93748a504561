import Kernels
import Stages
import Wire
import XCTest

/// The procedural stages called directly on phantom volumes: patches not chosen for synthesis
/// cross encoder, sampler and blender untouched; synthesized ones get tumor label 2 inside a
/// changed CT; the same seed gives the same bytes.
final class SynthesisStagesTests: XCTestCase {
    static func config(probability: Double) -> PipelineConfig {
        var c = PipelineConfig()
        c.seed = 99
        c.data.phantomCases = 1
        c.data.phantomShape = [112, 104, 104]
        c.data.patchesPerCase = 100
        c.synthesis.synthesizeProbability = probability
        return c
    }

    func run(_ config: PipelineConfig, patches: Int) throws -> [(crop: PatchMessage, out: PatchMessage)] {
        let provider = try PhantomCases(cases: 1, seed: 5, organ: "liver", shape: config.data.phantomShape)
        let loader = try LoaderStage(provider: provider, config: config, replica: 0, replicas: 1)
        let cropper = try CropperStage(config: config)
        let rest: [PatchProcessor] = [try EncoderStage(config: config), try SamplerStage(config: config), try BlenderStage(config: config)]
        var results: [(PatchMessage, PatchMessage)] = []
        for _ in 0..<patches {
            let volume = try XCTUnwrap(try loader.next())
            var p = try XCTUnwrap(try cropper.process(volume))
            let crop = p
            for s in rest { p = try XCTUnwrap(try s.process(p)) }
            results.append((crop, p))
        }
        return results
    }

    func testUnchosenPatchesPassUntouchedAndChosenOnesGetATumor() throws {
        let none = try run(Self.config(probability: 0), patches: 2)
        for (crop, out) in none {
            XCTAssertFalse(out.synthesize)
            XCTAssertEqual(out.tensor(Payload.ct)?.scalars, crop.tensor(Payload.ct)?.scalars, "CT untouched")
            XCTAssertEqual(out.bytes(Payload.label)?.bytes, crop.bytes(Payload.label)?.bytes, "label untouched")
            XCTAssertEqual(out.provenance.count, 0, "stages called directly add no provenance")
        }
        let all = try run(Self.config(probability: 1), patches: 2)
        for (crop, out) in all {
            XCTAssertTrue(out.synthesize)
            XCTAssertNotEqual(out.tumorType, .none)
            let label = try XCTUnwrap(out.bytes(Payload.label)?.bytes)
            let mask = try XCTUnwrap(out.bytes(Payload.tumorMask)?.bytes)
            let tumorVoxels = label.filter { $0 == 2 }.count
            XCTAssertGreaterThan(tumorVoxels, 0)
            XCTAssertEqual(tumorVoxels, mask.filter { $0 != 0 }.count, "label 2 exactly where the mask is")
            XCTAssertNotEqual(out.tensor(Payload.ct)?.scalars, crop.tensor(Payload.ct)?.scalars, "texture painted")
        }
    }

    func testSameSeedSameBytes() throws {
        let a = try run(Self.config(probability: 1), patches: 1)[0].out
        let b = try run(Self.config(probability: 1), patches: 1)[0].out
        XCTAssertEqual(a.seed, b.seed)
        XCTAssertEqual(a.patchOrigin, b.patchOrigin)
        XCTAssertEqual(a.tensor(Payload.ct)?.scalars, b.tensor(Payload.ct)?.scalars)
        XCTAssertEqual(a.bytes(Payload.label)?.bytes, b.bytes(Payload.label)?.bytes)
        var other = Self.config(probability: 1)
        other.seed = 100
        let c = try run(other, patches: 1)[0].out
        XCTAssertNotEqual(a.seed, c.seed)
        XCTAssertNotEqual(a.bytes(Payload.label)?.bytes, c.bytes(Payload.label)?.bytes, "another run seed, another tumor")
    }

    func testBadPayloadIsARejectionWithReason() throws {
        let cropper = try CropperStage(config: Self.config(probability: 1))
        var p = PatchMessage(patchID: 1, seed: 1, synthesize: true)
        p.setPayload(Payload.ct, .float32(Tensor(zeros: [8, 8, 8])))
        XCTAssertThrowsError(try cropper.process(p)) { error in
            XCTAssertEqual((error as? StageRejection)?.reason, "bad-payload", "\(error)")
        }
        var nan = p
        nan.setPayload(Payload.ct, .float32(Tensor(shape: [8, 8, 8], repeating: .nan)))
        nan.setPayload(Payload.label, .uint8([UInt8](repeating: 1, count: 512), shape: [8, 8, 8]))
        XCTAssertThrowsError(try cropper.process(nan)) { error in
            XCTAssertEqual((error as? StageRejection)?.reason, "nan-voxels", "\(error)")
        }
    }
}
