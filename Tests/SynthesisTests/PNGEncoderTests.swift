import XCTest
import Kernels
import Synthesis

final class PNGEncoderTests: XCTestCase {
    func testChecksums() {
        XCTAssertEqual(PNGEncoder.crc32(Array("123456789".utf8)), 0xCBF4_3926)   // the CRC-32 check value
        XCTAssertEqual(PNGEncoder.adler32(Array("Wikipedia".utf8)), 0x11E6_0398)
    }

    func testStructure() {
        let png = PNGEncoder.encodeRGB(width: 2, height: 2, rgb: [255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9])
        XCTAssertEqual(Array(png.prefix(8)), [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
        XCTAssertEqual(Array(png[12..<16]), Array("IHDR".utf8))
        XCTAssertEqual(Array(png.suffix(8).prefix(4)), Array("IEND".utf8))
    }

    /// The preview outlines the tumor in red and shows three views per tumor.
    func testPreviewOutlinesTumor() {
        var label = TestOrgans.liver
        let tumor = TestOrgans.ellipsoid(size: .patch, center: [50, 40, 45], radii: [6, 6, 6])
        for i in 0..<label.voxels.count where tumor.voxels[i] != 0 { label.voxels[i] = 2 }
        let img = PreviewImage.render(ct: TestOrgans.ct(for: TestOrgans.liver), label: label, centers: [[50, 40, 45]])
        var red = 0
        for i in stride(from: 0, to: img.rgb.count, by: 3) where img.rgb[i] == 255 && img.rgb[i + 1] == 40 { red += 1 }
        XCTAssertGreaterThan(red, 3 * 30 * 9, "an outline in each of the three views")
        XCTAssertEqual(PreviewImage.viewCenter(near: [0, 0, 0], label: label).map { abs($0[0] - 50) <= 6 }, true)
    }
}
