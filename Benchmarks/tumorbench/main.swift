import Foundation
import Kernels

// Release-mode benchmarks; each prints ratios against a baseline measured in the same run.
#if DEBUG
print("!!! tumorbench is a DEBUG build: numbers are meaningless. Use `swift run -c release tumorbench`. !!!")
#endif
let arguments = Array(CommandLine.arguments.dropFirst())
let rest = Array(arguments.dropFirst())
do {
    switch arguments.first {
    case "kernels": KernelsBenchmark.run(arguments: rest)
    case "networks": try NetworksBenchmark.main(rest)
    case "imaging": try ImagingBenchmark.run(rest)
    case "synthesis": try SynthesisBenchmark.main(rest)
    case "wire": try WireBenchmark.run(rest)
    case "wire-send": try WireSend.run(rest)
    case "daemon": try await DaemonBenchmark.main(rest)
    case "trainer": TrainerBenchmark.run(rest)
    case "trainer-learn": TrainerLearningRun.run(rest)
    case "attn-core": AttentionCoreBenchmark.run(rest)
    default:
        print("usage: tumorbench kernels|networks|imaging|synthesis|wire|wire-send|daemon|trainer|trainer-learn|attn-core [options]")
        exit(arguments.isEmpty ? 0 : 2)
    }
} catch {
    // A missing fixture or checkpoint (e.g. run from outside the package root, where ../shared does not resolve)
    // is a one-line error, not a crash.
    FileHandle.standardError.write(Data("tumorbench: \(error)\n".utf8))
    exit(1)
}
