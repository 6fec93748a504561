import Kernels

// Release-mode benchmarks; each prints ratios against a baseline measured in the same run.
#if DEBUG
print("!!! tumorbench is a DEBUG build: numbers are meaningless. Use `swift run -c release tumorbench`. !!!")
#endif
let arguments = Array(CommandLine.arguments.dropFirst())
print("usage: tumorbench [kernels|networks|imaging|synthesis|wire|trainer]  (args: \(arguments))")
if arguments.first == "kernels" { KernelsBenchmark.run(arguments: Array(arguments.dropFirst())) }
if arguments.first == "networks" { try NetworksBenchmark.main(Array(arguments.dropFirst())) }
