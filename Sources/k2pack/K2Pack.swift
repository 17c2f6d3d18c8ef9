import ArgumentParser

@main
struct K2Pack: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "k2pack",
        abstract: "Inspect, verify, convert, shard and check Kimi K2.5-class MoE checkpoints.",
        version: "0.1.0",
        subcommands: [InspectCommand.self, VerifyCommand.self, ConvertCommand.self, ExportCommand.self, ParityCommand.self, CompareCommand.self, QuantizeCommand.self, DequantizeCommand.self, ShardCommand.self, TokenizeCommand.self]
    )
}
