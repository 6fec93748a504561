import XCTest
import Kernels

/// Deterministic SplitMix64 generator for test inputs.
struct SeededRandom {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func uniform() -> Float { Float(next() >> 40) / Float(1 << 24) * 2 - 1 }
    mutating func tensor(_ shape: [Int], scale: Float = 1) -> Tensor {
        Tensor(shape: shape, data: (0..<Tensor.elementCount(shape)).map { _ in uniform() * scale })
    }
}

/// Checks shape first, then |a − e| ≤ atol + rtol·|e| for every element.
func assertClose(_ actual: Tensor, _ expected: Tensor, rtol: Float = 1e-4, atol: Float = 1e-5,
                 _ message: String = "", file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(actual.shape, expected.shape, "shape \(message)", file: file, line: line)
    guard actual.shape == expected.shape else { return }
    let a = actual.scalars, e = expected.scalars
    var worst = 0, worstErr: Float = -1
    for i in 0..<a.count {
        let err = abs(a[i] - e[i]) - (atol + rtol * abs(e[i]))
        if err > worstErr || a[i].isNaN { worstErr = a[i].isNaN ? .infinity : err; worst = i }
    }
    if worstErr > 0 {
        XCTFail("element \(worst): \(a[worst]) vs expected \(e[worst]) \(message)", file: file, line: line)
    }
}

func dot(_ a: Tensor, _ b: Tensor) -> Double {
    zip(a.scalars, b.scalars).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
}

/// Runs `body` on the portable path, then (if the CPU has it) on the AVX-512 path; restores the setting.
func onBothKernelPaths(_ body: () throws -> Void) rethrows {
    let saved = KernelContext.useAVX512
    defer { KernelContext.useAVX512 = saved }
    KernelContext.useAVX512 = false
    try body()
    KernelContext.useAVX512 = true
    if KernelContext.useAVX512 { try body() }
}
