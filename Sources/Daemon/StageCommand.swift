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
                                                host: ProcessInfo.processInfo.hostName, roles: StandardStages.role)
            } catch {
                reportAndExit(error)
            }
            BLASThreads.count = config.stage(stage).threads
            let logger = options.logger("tumord.\(name)")
            let runner = PipelineRunner(specs: specs, statusInterval: config.runtime.statusInterval, logger: logger,
                                        wholeGraph: false)
            let outcome: PipelineRunner.Outcome
            do {
                outcome = try await runner.run()
            } catch {
                reportAndExit(error)
            }
            for line in PipelineRunner.summaryLines(outcome, source: nil, sink: nil) { print(line) }
        }
    }
}
