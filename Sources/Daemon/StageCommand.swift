import ArgumentParser
import Foundation
import Kernels
import Stages

extension TumorD {
    /// `tumord stage NAME`: one stage of the graph in this process, on the endpoints the config
    /// names (tcp for several processes or machines). Without `--replica` every replica of the
    /// stage runs here as a thread; `--replica K` runs replica K only (its endpoints are derived
    /// from the configured ones, see docs/daemon.md).
    struct Stage: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run one stage of the pipeline in this process.")

        @Argument(help: "The stage: \(StageName.allCases.map(\.rawValue).joined(separator: ", ")).")
        var name: String

        @OptionGroup var options: ConfigOptions

        @Option(name: .long, help: "Serve Prometheus metrics of this process at http://HOST:PORT/metrics (e.g. 127.0.0.1:9464).")
        var metrics: String?

        @Option(name: .long, help: "Run only this replica (0-based) of the stage.")
        var replica: Int?

        func validate() throws {
            guard StageName(rawValue: name) != nil else {
                throw ValidationError("unknown stage '\(name)'; stages: \(StageName.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            if let replica, replica < 0 { throw ValidationError("--replica must be 0 or more, got \(replica)") }
        }

        func run() async throws {
            let stage = StageName(rawValue: name)!
            MallocTuning.apply()
            let config: PipelineConfig
            let specs: [StageSpec]
            do {
                config = try options.load()
                specs = try PipelineGraph.specs(config, selection: .stage(stage, replica: replica),
                                                host: ProcessInfo.processInfo.hostName,
                                                stateDirectory: config.runtime.stateDirectory ?? Self.defaultStateDirectory(options.config),
                                                roles: StandardStages.role)
            } catch {
                reportAndExit(error)
            }
            // This process runs one stage: its budget is the process's (OpenBLAS threads and the
            // chunk count of our own loops, both process-wide; see docs/daemon.md).
            StageThreads.apply(config.stage(stage).threads)
            print("tumord stage \(name): replica \(replica.map(String.init) ?? "0..<\(config.stage(stage).replicas)"),"
                  + " threads \(config.stage(stage).threads) (OpenBLAS \(BLASThreads.count)),"
                  + " state \(specs.first?.stateDirectory ?? "-")")
            fflush(stdout)
            let logger = options.logger("tumord.\(name)")
            let runner = PipelineRunner(specs: specs, statusInterval: config.runtime.statusInterval, logger: logger,
                                        wholeGraph: false, metrics: metrics)
            let outcome: PipelineRunner.Outcome
            do {
                outcome = try await runner.run()
            } catch {
                reportAndExit(error)
            }
            for line in PipelineRunner.summaryLines(outcome, source: nil, sink: nil) { print(line) }
        }

        /// `runtime.state_dir` when unset: one directory per config file (absolute path) under
        /// the temporary directory, so that the stage processes of one graph find their journals
        /// and two graphs never share them.
        static func defaultStateDirectory(_ configPath: String) -> String {
            let absolute = URL(fileURLWithPath: configPath).standardizedFileURL.path
            var h: UInt64 = 0xcbf2_9ce4_8422_2325
            for b in absolute.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
            let base = (ProcessInfo.processInfo.environment["TMPDIR"] ?? "/tmp") as NSString
            return base.appendingPathComponent("tumord-state-\(getuid())/\(String(h, radix: 16))")
        }
    }
}
