import ArgumentParser
import Kernels
import Wire

extension TumorD {
    struct Version: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print versions of tumord and the linked libraries.")

        func run() throws {
            print("tumord 0.1.0")
            print("libzmq \(Wire.zmqVersion)")
            print("OpenBLAS threads \(BLASThreads.count)")
        }
    }
}
