import Foundation
import XCTest
import Kernels

final class PickleReaderTests: XCTestCase {
    func testAutoencoderCheckpointMatchesSafetensors() throws {
        let ckpt = try TorchCheckpoint(path: Fixtures.difftumor("autoencoder.ckpt"))
        let sd = try ckpt.modelStateDict()
        let ref = try Safetensors.read(path: Fixtures.difftumor("autoencoder.safetensors"))
        XCTAssertFalse(ref.keys.isEmpty)
        for k in ref.keys {
            let a = try sd.tensor(k), b = try ref.tensor(k)
            XCTAssertEqual(a.shape, b.shape, k)
            XCTAssertEqual(a.scalars, b.scalars, k)
        }
        // Training-only keys are present in the file but the OmegaConf hyper-parameters were skipped.
        XCTAssertTrue(sd.keys.contains { $0.hasPrefix("image_discriminator.") || $0.hasPrefix("perceptual_model.") })
        if case .opaque = ckpt.value(at: ["hyper_parameters"]) ?? .none {} else if let hp = ckpt.value(at: ["hyper_parameters"]) {
            XCTAssertNotNil(hp.asDict, "hyper_parameters should be an opaque object or a dict, got \(hp.typeName)")
        }
    }

    func testDiffusionCheckpointEMAMatchesSafetensors() throws {
        let ckpt = try TorchCheckpoint(path: Fixtures.difftumor("diffusion_early.pt"))
        let ema = try ckpt.modelStateDict()
        XCTAssertEqual(ema.shape("betas"), [4])
        let unet = ema.subdict(prefix: "denoise_fn.")
        let ref = try Safetensors.read(path: Fixtures.difftumor("unet_early.safetensors"))
        XCTAssertEqual(Set(unet.keys), Set(ref.keys))
        for k in ref.keys {
            XCTAssertEqual(try unet.tensor(k).scalars, try ref.tensor(k).scalars, k)
        }
        XCTAssertTrue(ema.keys.contains("vqgan.codebook.embeddings"))
    }

    func testTruncatedAndBitFlippedFilesGiveErrorsNotCrashes() throws {
        let url = URL(fileURLWithPath: Fixtures.difftumor("diffusion_early.pt"))
        let original = try Data(contentsOf: url)
        // Truncations: inside the pickle, inside the storages, inside the central directory.
        for cut in [0, 10, 100, 20_000, original.count / 2, original.count - 30, original.count - 1] {
            let d = original.prefix(cut)
            XCTAssertThrowsError(try Self.loadEverything(Data(d)), "truncated to \(cut)")
        }
        // Bit flips inside the pickle (the first entry): must either load or throw.
        let archive = try ZipArchive(data: original)
        let pkl = archive.entries[0]
        let range = try archive.byteRange(of: pkl)
        var rng = SystemRandomNumberGenerator()
        var failures = 0
        for _ in 0..<80 {
            var d = original
            for _ in 0..<3 {
                let i = Int.random(in: range, using: &rng)
                d[i] ^= UInt8(1 << Int.random(in: 0..<8, using: &rng))
            }
            do { try Self.loadEverything(d) } catch { failures += 1; XCTAssertFalse("\(error)".isEmpty) }
        }
        // Flipping pickle bytes at random breaks most files; the point is that none of them crashed.
        XCTAssertGreaterThan(failures, 0)
        // Random garbage.
        for n in [22, 100, 5000] {
            var g = Data(count: n)
            for i in 0..<n { g[i] = UInt8.random(in: 0...255, using: &rng) }
            XCTAssertThrowsError(try Self.loadEverything(g))
        }
    }

    func testHandWrittenPickles() throws {
        // {'a': [1, -2, 3.5, True, None], 'b': ('x', 300, 70000)} in protocol 2, with memo traffic.
        var p: [UInt8] = [0x80, 0x02, 0x7D, 0x71, 0x00, 0x28]
        p += [0x58, 1, 0, 0, 0, UInt8(ascii: "a"), 0x5D, 0x71, 0x01, 0x28, 0x4B, 1, 0x4A] + [0xFE, 0xFF, 0xFF, 0xFF]
        p += [0x47] + withUnsafeBytes(of: (3.5).bitPattern.bigEndian, Array.init) + [0x88, 0x4E, 0x65]
        p += [0x58, 1, 0, 0, 0, UInt8(ascii: "b"), 0x58, 1, 0, 0, 0, UInt8(ascii: "x"), 0x4D, 0x2C, 0x01, 0x8A, 3, 0x70, 0x11, 0x01, 0x87]
        p += [0x75, 0x68, 0x01, 0x30, 0x2E]
        let (v, _) = try Unpickler.load(p)
        guard let d = v.asDict else { return XCTFail("not a dict: \(v.typeName)") }
        guard case .list(let l)? = d["a"] else { return XCTFail("a is not a list") }
        XCTAssertEqual(l.items.count, 5)
        XCTAssertEqual(l.items[1].asInt, -2)
        if case .float(let f) = l.items[2] { XCTAssertEqual(f, 3.5) } else { XCTFail("3.5") }
        XCTAssertEqual(d["b"]?.asTuple?.count, 3)
        XCTAssertEqual(d["b"]?.asTuple?[2].asInt, 70000)
        // An unknown class called through REDUCE becomes opaque; nothing runs.
        let evil: [UInt8] = [0x80, 0x02, 0x63] + Array("os\nsystem\n".utf8) + [0x58, 2, 0, 0, 0] + Array("ls".utf8) + [0x85, 0x52, 0x2E]
        let (e, _) = try Unpickler.load(evil)
        if case .opaque(let name) = e { XCTAssertEqual(name, "os.system") } else { XCTFail("expected opaque, got \(e.typeName)") }
        // Stack underflow, bad memo, unknown opcode.
        XCTAssertThrowsError(try Unpickler.load([0x80, 0x02, 0x74, 0x2E]))
        XCTAssertThrowsError(try Unpickler.load([0x80, 0x02, 0x68, 0x05, 0x2E]))
        XCTAssertThrowsError(try Unpickler.load([0x80, 0x02, 0xFF]))
        XCTAssertThrowsError(try Unpickler.load([0x80, 0x02, 0x58, 0xFF, 0xFF, 0xFF, 0x7F]))
    }

    /// Opens a checkpoint from memory and materialises every tensor in it.
    static func loadEverything(_ data: Data) throws {
        let ckpt = try TorchCheckpoint(archive: try ZipArchive(data: data))
        let sd = ckpt.stateDict(of: ckpt.root)
        for k in sd.keys { _ = try sd.tensor(k) }
    }
}
