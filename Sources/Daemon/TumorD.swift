import ArgumentParser

@main
struct TumorD: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tumord",
        abstract: "TumorStream: synthesizes tumors into healthy CT and streams the patches into segmentation training.",
        version: "0.1.0",
        subcommands: [
            Version.self,
            PredictCommand.self,
            EvalCommand.self,
            MetricsCommand.self,
        ]
    )
}
