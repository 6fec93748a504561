import ArgumentParser
import Foundation
import Logging
import Stages

/// Options shared by `run`, `stage` and `check-config`.
struct ConfigOptions: ParsableArguments {
    @Option(name: .long, help: "Pipeline config (YAML), e.g. conf/default.yaml.")
    var config: String

    @Option(name: .long, help: "Stop the loader after this many patches; the graph then drains and exits 0.")
    var maxPatches: Int?

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "notice"

    func validate() throws {
        if let maxPatches, maxPatches < 1 { throw ValidationError("--max-patches must be at least 1, got \(maxPatches)") }
        if Logger.Level(rawValue: logLevel) == nil {
            throw ValidationError("--log-level must be one of \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", "))")
        }
    }

    /// The config with command-line overrides applied.
    func load() throws -> PipelineConfig {
        var c = try ConfigLoader.load(path: config)
        if let maxPatches { c.data.maxPatches = maxPatches }
        return c
    }

    func logger(_ label: String) -> Logger {
        var logger = Logger(label: label) { StreamLogHandler.standardError(label: $0) }
        logger.logLevel = Logger.Level(rawValue: logLevel) ?? .notice
        return logger
    }
}

/// Prints a config or runtime error as one sentence on stderr and exits non-zero.
struct DaemonFailure: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}

func reportAndExit(_ error: Error) -> Never {
    if let code = error as? ExitCode { exit(code.rawValue) }
    FileHandle.standardError.write(Data("tumord: error: \(error)\n".utf8))
    exit(1)
}
