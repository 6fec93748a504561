import ArgumentParser

struct TumorD: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tumord",
        abstract: "TumorStream: synthesizes tumors into healthy CT and streams the patches into segmentation training.",
        version: "0.1.0",
        subcommands: [
            Version.self,
            Inspect.self,
            Phantom.self,
            Model.self,
            Synth.self,
            Run.self,
            Stage.self,
            Tap.self,
            Status.self,
            CheckConfig.self,
            PredictCommand.self,
            EvalCommand.self,
            MetricsCommand.self,
        ]
    )
}
