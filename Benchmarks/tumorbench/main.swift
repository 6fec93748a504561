import Foundation
import Kernels

// Release-mode benchmarks; each prints ratios against a baseline measured in the same run.
#if DEBUG
print("!!! tumorbench is a DEBUG build: numbers are meaningless. Use `swift run -c release tumorbench`. !!!")
#endif
let arguments = Array(CommandLine.arguments.dropFirst())
if arguments.first == "wire" { try WireBenchmark.run(Array(arguments.dropFirst())); exit(0) }
if arguments.first == "wire-send" { try WireSend.run(Array(arguments.dropFirst())); exit(0) }
print("usage: tumorbench [kernels|networks|imaging|synthesis|wire|trainer]  (args: \(arguments))")
if arguments.first == "imaging" { try ImagingBenchmark.run(Array(arguments.dropFirst())) }
if arguments.first == "kernels" { KernelsBenchmark.run(arguments: Array(arguments.dropFirst())) }
if arguments.first == "daemon" { try await DaemonBenchmark.main(Array(arguments.dropFirst())) }
if arguments.first == "networks" { try NetworksBenchmark.main(Array(arguments.dropFirst())) }
if arguments.first == "trainer" { TrainerBenchmark.run(Array(arguments.dropFirst())) }
if arguments.first == "synthesis" { try SynthesisBenchmark.main(Array(arguments.dropFirst())) }
if arguments.first == "imaging" { try ImagingBenchmark.run(Array(arguments.dropFirst())) }
if arguments.first == "kernels" { KernelsBenchmark.run(arguments: Array(arguments.dropFirst())) }
if arguments.first == "trainer-learn" { TrainerLearningRun.run(Array(arguments.dropFirst())) }
