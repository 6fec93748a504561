import ArgumentParser
import Stages

extension TumorD {
    /// `tumord check-config`: reads and validates a config, prints the graph it describes.
    struct CheckConfig: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "check-config", abstract: "Validate a pipeline config and print the graph it describes.")

        @OptionGroup var options: ConfigOptions

        func run() throws {
            let config: PipelineConfig
            do {
                config = try options.load()
            } catch {
                reportAndExit(error)
            }
            print("config \(options.config): ok")
            print("pipeline: \(config.pipeline.map(\.rawValue).joined(separator: " -> "))")
            for name in config.pipeline {
                let s = config.stage(name)
                print("  \(name.rawValue): replicas \(s.replicas), threads \(s.threads), input \(s.input ?? "-"), hwm \(s.hwm),"
                      + " tap \(s.tap ?? "-"), control \(s.control ?? "-")")
            }
            print("data: \(config.data.source.rawValue), organ \(config.data.organ)"
                  + (config.data.maxPatches.map { ", max \($0) patches" } ?? ""))
            print("engine: \(config.synthesis.engine.rawValue)")
            print("queue bound: \(StandardStages.memoryBoundDescription(config))")
        }
    }
}
