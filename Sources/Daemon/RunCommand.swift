import ArgumentParser
import Foundation
import Kernels
import Stages

extension TumorD {
    /// `tumord run`: the whole graph in this process, one thread per stage replica, inproc (or
    /// whatever the config names) edges.
    struct Run: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run the whole pipeline in this process.",
            discussion: "Stops by itself after --max-patches (the graph drains, exit 0) or on SIGINT/SIGTERM (the loader stops, the other stages drain and flush, exit 0).")

        @OptionGroup var options: ConfigOptions

        @Option(name: .long, help: "Serve Prometheus metrics of this process at http://HOST:PORT/metrics (e.g. 127.0.0.1:9464).")
        var metrics: String?

        func run() async throws {
            MallocTuning.apply()
            let config: PipelineConfig
            let specs: [StageSpec]
            do {
                config = try options.load()
                specs = try PipelineGraph.specs(config, selection: .all, roles: StandardStages.role)
            } catch {
                reportAndExit(error)
            }
            // One process for every stage: the budgets are process-wide, so the largest applies.
            StageThreads.apply(config.pipeline.map { config.stage($0).threads }.max() ?? 1)
            let logger = options.logger("tumord")
            print("tumord run: \(config.pipeline.map(\.rawValue).joined(separator: " -> "))"
                  + (config.data.maxPatches.map { ", max \($0) patches" } ?? ", until stopped")
                  + ", engine \(config.synthesis.engine.rawValue)"
                  + ", queue bound \(StandardStages.memoryBoundDescription(config))")
            fflush(stdout)
            let runner = PipelineRunner(specs: specs, statusInterval: config.runtime.statusInterval, logger: logger,
                                        wholeGraph: true, metrics: metrics)
            let outcome: PipelineRunner.Outcome
            do {
                outcome = try await runner.run()
            } catch {
                reportAndExit(error)
            }
            for line in PipelineRunner.summaryLines(outcome, source: config.pipeline.first?.rawValue,
                                                    sink: config.pipeline.last?.rawValue) {
                print(line)
            }
        }
    }
}
