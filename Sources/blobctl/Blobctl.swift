import ArgumentParser

/// The one binary of Blobstore: every role and every command.
@main
struct Blobctl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "blobctl",
        abstract: "Blobstore: a distributed file and blob store.",
        version: "0.1.0",
        subcommands: [
            PutCommand.self, GetCommand.self, ListCommand.self, StatCommand.self, RemoveCommand.self,
            ClusterCommand.self, DevCommand.self, MasterCommand.self, ChunkServerCommand.self, RingCommand.self,
            NodeCommand.self, RebalanceCommand.self, GCCommand.self, FsckCommand.self, GatewayCommand.self, KeyCommand.self,
            BucketCommand.self, BenchCommand.self,
        ]
    )
}
