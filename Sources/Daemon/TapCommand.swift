import ArgumentParser
import Foundation
import Stages
import Wire

extension TumorD {
    /// `tumord tap ENDPOINT`: subscribes to a stage's tap (PUB), prints one line per patch and
    /// optionally saves the CT and label of each as NIfTI. The tap drops messages for a slow
    /// subscriber; it never slows the pipeline.
    struct Tap: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Watch (and optionally save) the patches a stage emits.")

        @Argument(help: "The stage's tap endpoint, e.g. tcp://127.0.0.1:5621.")
        var endpoint: String

        @Option(name: .long, help: "Stop after this many patches.")
        var count: Int?

        @Option(name: .long, help: "Save each patch's CT and label as NIfTI into this directory.")
        var save: String?

        @Option(name: .long, help: "Give up after this many seconds without a patch (default: wait forever).")
        var timeout: Double?

        func validate() throws {
            if let count, count < 1 { throw ValidationError("--count must be at least 1, got \(count)") }
            do { try StageEndpoints.validate(endpoint) } catch { throw ValidationError("\(error)") }
        }

        func run() throws {
            do {
                try tap()
            } catch {
                reportAndExit(error)
            }
        }

        private func tap() throws {
            if let save { try FileManager.default.createDirectory(atPath: save, withIntermediateDirectories: true) }
            let writer = save.map { PatchFiles(directory: $0, huInt16: false) }
            let context = try ZMQContext()
            let socket = try ZMQSocket(context: context, type: .sub)
            defer {
                socket.close(lingerMilliseconds: 0)
                try? context.close()
            }
            try socket.set([.linger(milliseconds: 0), .subscribe([]), .receiveHighWaterMark(4)])
            if let timeout { try socket.set(.receiveTimeout(milliseconds: Int(timeout * 1000))) }
            try socket.connect(StageEndpoints.connectable(endpoint))
            var seen = 0
            var bad = 0
            while count.map({ seen < $0 }) ?? true {
                guard let frames = try socket.receive() else {
                    FileHandle.standardError.write(Data("tumord tap: no patch within \(timeout ?? 0) s\n".utf8))
                    throw ExitCode(2)
                }
                let patch: PatchMessage
                do {
                    patch = try PatchMessage.decode(frames: frames)
                } catch {
                    bad += 1
                    FileHandle.standardError.write(Data("tumord tap: skipped a bad message: \(error)\n".utf8))
                    continue
                }
                if patch.endOfStream { print("end-of-stream (sender sent \(patch.patchID))"); continue }
                seen += 1
                var line = PatchDescription.line(patch)
                if let writer {
                    let files = try writer.write(patch)
                    line += " saved=\(files.joined(separator: ","))"
                }
                print(line)
                fflush(stdout)
            }
        }
    }
}
