import ArgumentParser
import BlobCore
#if canImport(Glibc)
    import Glibc
#endif

/// The one binary of Blobstore: every role and every command.
struct Blobctl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "blobctl",
        abstract: "Blobstore: a distributed file and blob store.",
        version: Blobstore.version,
        subcommands: [
            PutCommand.self, GetCommand.self, ListCommand.self, StatCommand.self, RemoveCommand.self,
            ClusterCommand.self, DevCommand.self, MasterCommand.self, ChunkServerCommand.self, RingCommand.self,
            NodeCommand.self, RebalanceCommand.self, GCCommand.self, FsckCommand.self, GatewayCommand.self,
            KeyCommand.self,
            BucketCommand.self, BenchCommand.self, MetadataCommand.self,
        ]
    )

    /// The per-file commands a script runs once per file, parsed on their own.
    ///
    /// ArgumentParser reflects over every command it walks and, for a root command, parses the
    /// arguments twice more looking for completion-script flags; for `put` and `get` of a small
    /// file that was a fifth of the process's CPU. These commands carry `_superCommandName:
    /// "blobctl"`, so parsed alone they still print `blobctl get ...` in usage and help, and
    /// parsed as subcommands (`blobctl help get`) nothing changes.
    static let parsedAlone: [String: any AsyncParsableCommand.Type] = [
        "put": PutCommand.self, "get": GetCommand.self, "ls": ListCommand.self,
        "stat": StatCommand.self, "rm": RemoveCommand.self,
    ]
}

@main
enum BlobctlMain {
    static func main() async {
        // A reader that goes away (`blobctl ls | head`) is an EPIPE to handle, not a signal that
        // kills the process; NIO ignores SIGPIPE too, but only once it has started.
        signal(SIGPIPE, SIG_IGN)
        let arguments = Array(CommandLine.arguments.dropFirst())
        // A client command's requests all carry one request id, which its errors print: the
        // servers' logs of that command are found by it. Servers give each request its own.
        let servers: Set<String> = ["master", "chunkserver", "gateway", "bench", "dev"]
        let id = arguments.first.map { servers.contains($0) } == true ? nil : RequestID.make()
        await RequestID.$current.withValue(id) {
            if let name = arguments.first, let command = Blobctl.parsedAlone[name] {
                await command.main(Array(arguments.dropFirst()))
            } else {
                await Blobctl.main(arguments)
            }
        }
    }
}
