import ArgumentParser
import BlobClient
import BlobCore
import Foundation
#if canImport(Glibc)
    import Glibc
#endif

/// `blobctl put LOCAL|- PATH`, `blobctl put --recursive DIR PREFIX`
struct PutCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "put", _superCommandName: "blobctl",
        abstract: "Store a local file (or standard input, or every file under a directory) at a path in the cluster.",
        discussion: """
            Chunks the file by content, sends only the chunks the cluster lacks (a second put of the \
            same file sends nothing; an interrupted put, run again, sends only what is missing), \
            each compressed once and sent once, then commits the new version. With --recursive, \
            every regular file under LOCAL is put at PATH/<its path below LOCAL>, --parallel at once, \
            in one process and over one connection pool.
            """
    )

    @Argument(help: "Local file to read, - for standard input, or a directory with --recursive.")
    var source: String

    @Argument(help: "Path in the cluster, e.g. videos/intro.mp4; with --recursive, the prefix the files go under.")
    var path: String

    @Flag(
        name: [.customShort("r"), .long],
        help: "LOCAL is a directory: put every regular file under it (symbolic links and special files are skipped).")
    var recursive = false

    @Option(help: "With --recursive, files put at once (1...16; each holds up to ~13 MiB while it puts a large file).")
    var parallel: Int = 8

    @Option(help: "Content type stored with the file (default: from the extension).")
    var contentType: String?

    @Option(help: "Chunks compressed or in flight at once.")
    var inFlight: Int = 8

    @Option(help: "Average chunk size, a power of two (K, M suffixes); chunks are a quarter to four times it.")
    var chunkSize: String?

    @Option(help: "zstd level, 1 (fastest) to 19.")
    var compressionLevel: Int?

    @OptionGroup var cluster: ClusterOptions

    struct Output: Encodable {
        var path: String
        var size: Int64
        var storedBytes: Int64
        var sentBytes: Int64
        var chunks: Int
        var newChunks: Int
        /// Plain bytes of the chunks sent.
        var newBytes: Int64
        var sha256: String
        var version: Int64
        var contentType: String
        var seconds: Double
    }

    func run() async throws {
        let json = cluster.json
        if recursive { return try await runRecursive(json: json) }
        let blobPath: BlobPath
        do {
            blobPath = try BlobPath(path)
            guard (1...64).contains(inFlight) else { throw CLIError(.usage, "--in-flight must be 1...64") }
        } catch {
            throw CLIError.exit(error, json: json)
        }
        let input: PutSource
        var total: Int64?
        if source == "-" {
            input = .standardInput
        } else {
            var info = Glibc.stat()
            let fd = open(source, O_RDONLY | O_CLOEXEC)
            guard fd >= 0, fstat(fd, &info) == 0 else {
                throw CLIError.exit(
                    CLIError(
                        errno == ENOENT ? .notFound : .failure,
                        "cannot read \(source): \(String(cString: strerror(errno))); check the local path"), json: json)
            }
            close(fd)
            guard (info.st_mode & S_IFMT) != S_IFDIR else {
                throw CLIError.exit(
                    CLIError(
                        .usage, "\(source) is a directory; add --recursive to put every file under it at \(path)/..."),
                    json: json)
            }
            guard (info.st_mode & S_IFMT) == S_IFREG else {
                throw CLIError.exit(
                    CLIError(
                        .usage,
                        "\(source) is not a regular file; put a file, a directory with --recursive, "
                            + "or - for standard input"
                    ),
                    json: json)
            }
            input = .file(source)
            total = Int64(info.st_size)
        }
        let options: PutOptions
        do {
            options = try putOptions(contentType: contentType ?? ContentTypes.forPath(path), inFlight: inFlight)
        } catch {
            throw CLIError.exit(error, json: json)
        }
        let bar = ProgressBar(label: "put", total: total, enabled: !json)
        let start = ContinuousClock.now
        let result = try await cluster.withClient { client in
            try await client.put(input, to: blobPath, options: options) { bar.update($0) }
        }
        bar.finish()
        let seconds = (ContinuousClock.now - start).inSeconds
        let output = Output(result, seconds: seconds)
        if json {
            try printJSON(output)
        } else {
            print(
                """
                put \(output.path) (version \(output.version)): \
                \(HumanSize.format(output.size)) in \(output.chunks) chunks, \
                \(output.newChunks) new, \(HumanSize.format(output.storedBytes)) written to disks, \
                \(HumanSize.rate(Double(output.size) / max(seconds, 0.001)))
                """)
        }
    }
}

extension PutCommand {
    /// Chunking, compression and window options from the flags; throws a usage error naming a bad one.
    func putOptions(contentType: String, inFlight: Int, placementBatch: Int = 8) throws -> PutOptions {
        var options = PutOptions(contentType: contentType, maxChunksInFlight: inFlight, placementBatch: placementBatch)
        if let chunkSize {
            guard let average = ByteCountParser.parse(chunkSize) else {
                throw CLIError(.usage, "--chunk-size \(chunkSize) is not a size; use e.g. 512K or 1M")
            }
            options.chunker = .contentDefined(
                minByteCount: average / 4, averageByteCount: average,
                maxByteCount: min(average * 4, Limits.maxChunkByteCount))
            try options.chunker.validate()
        }
        if let compressionLevel {
            guard (1...19).contains(compressionLevel) else {
                throw CLIError(.usage, "--compression-level must be 1...19")
            }
            options.compression.level = Int32(compressionLevel)
        }
        return options
    }
}

extension PutCommand.Output {
    init(_ result: PutResult, seconds: Double) {
        self.init(
            path: result.file.path.value, size: result.file.size, storedBytes: result.storedBytes,
            sentBytes: result.sentBytes, chunks: result.chunkCount, newChunks: result.newChunkCount,
            newBytes: result.newBytes, sha256: result.file.sha256, version: result.file.version,
            contentType: result.file.contentType, seconds: seconds)
    }
}

/// `blobctl get PATH LOCAL|-`
struct GetCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "get", _superCommandName: "blobctl",
        abstract: "Read a file (or a byte range of it) from the cluster to a local file or standard output.",
        discussion: """
            Every chunk is checked against its SHA-256 id, and a whole-file get against the file's \
            SHA-256; a failed or corrupt replica is skipped for the next one. A local file appears \
            only when complete (written beside it, then renamed).
            """
    )

    @Argument(help: "Path in the cluster.")
    var path: String

    @Argument(help: "Local file to write, or - for standard output.")
    var destination: String

    @Option(help: "Bytes START-END (inclusive), START- or -LAST.")
    var range: String?

    @Option(help: "Chunks fetched ahead.")
    var readAhead: Int = 8

    @Flag(help: "Fsync the local file before renaming it into place (survives a power cut).")
    var fsync = false

    @OptionGroup var cluster: ClusterOptions

    struct Output: Encodable {
        var path: String
        var version: Int64
        var size: Int64
        var offset: Int64
        var bytes: Int64
        var chunks: Int
        var failovers: Int
        var sha256: String
        var seconds: Double
    }

    func run() async throws {
        let json = cluster.json
        let blobPath: BlobPath
        let byteRange: ByteRange?
        do {
            blobPath = try BlobPath(path)
            byteRange = try range.map { try ByteRange(parsing: $0) }
            guard (1...64).contains(readAhead) else { throw CLIError(.usage, "--read-ahead must be 1...64") }
        } catch {
            throw CLIError.exit(error, json: json)
        }
        let target: GetDestination = destination == "-" ? .standardOutput : .file(destination)
        let bar = ProgressBar(label: "get", total: nil, enabled: !json && destination != "-")
        let start = ContinuousClock.now
        let options = GetOptions(readAhead: readAhead, range: byteRange, fsync: fsync)
        let result = try await cluster.withClient { client in
            try await client.get(blobPath, to: target, options: options) { done, total in bar.update(done, total: total)
            }
        }
        bar.finish()
        let seconds = (ContinuousClock.now - start).inSeconds
        let output = Output(
            path: result.file.path.value, version: result.file.version, size: result.file.size,
            offset: result.offset, bytes: result.byteCount, chunks: result.chunkCount,
            failovers: result.failovers, sha256: result.file.sha256, seconds: seconds)
        if json {
            // With --json and standard output as the destination, the report goes to stderr.
            if destination == "-" {
                FileHandle.standardError.write(try snakeCaseJSONEncoder().encode(output) + Data("\n".utf8))
            } else {
                try printJSON(output)
            }
        } else if destination != "-" {
            print(
                """
                got \(output.path) (version \(output.version)): \(HumanSize.format(output.bytes)) to \(destination), \
                \(HumanSize.rate(Double(output.bytes) / max(seconds, 0.001)))\
                \(output.failovers > 0 ? ", \(output.failovers) replica failovers" : "")
                """)
        }
    }
}

/// `blobctl ls [PREFIX] [-l]`
struct ListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ls", _superCommandName: "blobctl",
        abstract: "List files whose path starts with a prefix, in byte order.")

    @Argument(help: "Path prefix (all files when omitted).")
    var prefix: String = ""

    @Flag(name: .short, help: "Long format: size, time, version, content type.")
    var long = false

    @OptionGroup var cluster: ClusterOptions

    struct Entry: Encodable {
        var path: String
        var size: Int64
        var version: Int64
        var contentType: String
        var sha256: String
        var created: String
        var chunks: Int
    }

    func run() async throws {
        let json = cluster.json
        let long = self.long
        let prefix = self.prefix
        try await cluster.withClient { client in
            var after: String?
            var first = true
            if json { writeStandardOutput("{\"files\":[") }
            let encoder = snakeCaseJSONEncoder()
            for _ in 0..<Int.max {
                let page = try await client.list(prefix: prefix, after: after, limit: 1000)
                var text = ""
                for file in page.files {
                    let created = UTCTime.iso8601(milliseconds: file.createdAtMilliseconds)
                    if json {
                        let entry = Entry(
                            path: file.path.value, size: file.size, version: file.version,
                            contentType: file.contentType, sha256: file.sha256, created: created,
                            chunks: file.chunkCount)
                        text += (first ? "" : ",") + String(decoding: try encoder.encode(entry), as: UTF8.self)
                        first = false
                    } else if long {
                        text +=
                            "\(HumanSize.format(file.size).padding(toLength: 10, withPad: " ", startingAt: 0))  "
                            + "\(created)  v\(file.version)  "
                            + "\(file.contentType.padding(toLength: 24, withPad: " ", startingAt: 0))  "
                            + "\(file.path.value)\n"
                    } else {
                        text += file.path.value + "\n"
                    }
                }
                writeStandardOutput(text)
                guard let next = page.next else { break }
                after = next
            }
            if json { writeStandardOutput("]}\n") }
        }
    }
}

/// `blobctl stat PATH`
struct StatCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stat", _superCommandName: "blobctl",
        abstract: "Show a file's current version, its chunks and where their replicas are.")

    @Argument(help: "Path in the cluster.")
    var path: String

    @OptionGroup var cluster: ClusterOptions

    struct ChunkOutput: Encodable {
        var id: String
        var offset: Int64
        var size: Int64
        var storedSize: Int64?
        var replicas: [String]
    }

    struct Output: Encodable {
        var path: String
        var version: Int64
        var size: Int64
        var contentType: String
        var sha256: String
        var created: String
        /// Bytes the file's chunks take on disks, every listed replica counted.
        var storedBytes: Int64
        var chunks: [ChunkOutput]
    }

    func run() async throws {
        let json = cluster.json
        let blobPath: BlobPath
        do { blobPath = try BlobPath(path) } catch { throw CLIError.exit(error, json: json) }
        let plan = try await cluster.withClient { client in try await client.readPlan(blobPath) }
        let chunks = plan.chunks.map {
            ChunkOutput(
                id: $0.chunk.chunkID.hex, offset: $0.chunk.offset, size: $0.chunk.length,
                storedSize: $0.storedByteCount, replicas: $0.replicas.map(\.id).sorted())
        }
        let stored = chunks.reduce(Int64(0)) { $0 + ($1.storedSize ?? 0) * Int64($1.replicas.count) }
        let created = UTCTime.iso8601(milliseconds: plan.file.createdAtMilliseconds)
        let output = Output(
            path: plan.file.path.value, version: plan.file.version, size: plan.file.size,
            contentType: plan.file.contentType, sha256: plan.file.sha256, created: created,
            storedBytes: stored, chunks: chunks)
        if json {
            try printJSON(output)
            return
        }
        let ratio =
            output.size > 0
            ? " (" + HumanSize.fixed(Double(stored) / Double(output.size), digits: 2) + "x of the size)" : ""
        print(
            """
            path:         \(output.path)
            version:      \(output.version)
            size:         \(HumanSize.format(output.size)) (\(output.size) bytes)
            content type: \(output.contentType)
            sha256:       \(output.sha256)
            created:      \(created)
            on disks:     \(HumanSize.format(stored)) in all replicas\(ratio)
            chunks:       \(chunks.count)
            """)
        for chunk in chunks.prefix(20) {
            print(
                "  \(chunk.id.prefix(16))…  @\(chunk.offset)  \(HumanSize.format(chunk.size))  "
                    + "on \(chunk.replicas.joined(separator: ", "))"
            )
        }
        if chunks.count > 20 { print("  … \(chunks.count - 20) more (--json lists all)") }
    }
}

/// `blobctl rm PATH`
struct RemoveCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rm", _superCommandName: "blobctl",
        abstract: "Delete a file: a tombstone version; its chunks go when garbage collection finds them unused.")

    @Argument(help: "Path in the cluster.")
    var path: String

    @OptionGroup var cluster: ClusterOptions

    struct Output: Encodable {
        var path: String
        var version: Int64
        var deleted: Bool
    }

    func run() async throws {
        let json = cluster.json
        let blobPath: BlobPath
        do { blobPath = try BlobPath(path) } catch { throw CLIError.exit(error, json: json) }
        let tombstone = try await cluster.withClient { client in try await client.delete(blobPath) }
        if json {
            try printJSON(Output(path: tombstone.path.value, version: tombstone.version, deleted: true))
        } else {
            print("removed \(tombstone.path.value) (tombstone version \(tombstone.version))")
        }
    }
}

/// `blobctl cluster status`
struct ClusterCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cluster", abstract: "Inspect the cluster.", subcommands: [ClusterStatusCommand.self])
}

struct ClusterStatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status", abstract: "Chunk servers with their state and usage, the ring epoch, and totals.")

    @OptionGroup var cluster: ClusterOptions

    struct Server: Encodable {
        var id: String
        var address: String
        var zone: String
        var weight: Double
        var state: String
        var inRing: Bool
        var usedBytes: Int64?
        var logicalBytes: Int64?
        var capacityBytes: Int64?
        var freeDiskBytes: Int64?
        var chunks: Int64?
        var secondsSinceHeartbeat: Double?
    }

    struct Master: Encodable {
        var id: String
        var address: String
        var reachable: Bool
        var leader: Bool
        var secondsSinceSeen: Double
    }

    struct Leader: Encodable {
        var id: String
        var address: String
        var term: Int64
        var leaseAgeSeconds: Double
        var expiresInSeconds: Double
    }

    struct Output: Encodable {
        var master: String
        var ringEpoch: UInt64?
        var replicas: Int
        var masters: [Master]
        var leader: Leader?
        var servers: [Server]
        var logicalBytes: Int64
        var storedBytes: Int64
        /// The master that answered, and its repair counters since it started (a follower runs
        /// no repair pass).
        var answeredBy: String?
        var repair: RepairActivity?
        /// The PostgreSQL nodes of the metadata as the answering master found them; nil on SQLite.
        var metadataNodes: [MetadataNodeStatus]?
    }

    func run() async throws {
        let json = cluster.json
        let status = try await cluster.withClient { client in try await client.clusterStatus() }
        let master = (try? cluster.address().masterURL) ?? ""
        let servers = status.servers.map { s in
            Server(
                id: s.id, address: s.address, zone: s.zone, weight: s.weight, state: s.state.rawValue, inRing: s.inRing,
                usedBytes: s.usage?.usedBytes, logicalBytes: s.usage?.logicalBytes, capacityBytes: s.capacityBytes,
                freeDiskBytes: s.usage?.freeDiskBytes, chunks: s.usage?.chunkCount,
                secondsSinceHeartbeat: s.millisecondsSinceHeartbeat.map { Double($0) / 1000 })
        }
        let masters = (status.masters ?? []).map {
            Master(
                id: $0.id, address: $0.address, reachable: $0.reachable, leader: $0.isLeader,
                secondsSinceSeen: Double($0.millisecondsSinceSeen) / 1000)
        }
        let leader = status.leader.map {
            Leader(
                id: $0.id, address: $0.address, term: $0.term, leaseAgeSeconds: Double($0.leaseAgeMilliseconds) / 1000,
                expiresInSeconds: Double($0.expiresInMilliseconds) / 1000)
        }
        let output = Output(
            master: master, ringEpoch: status.ringEpoch, replicas: status.replicaCount, masters: masters,
            leader: leader, servers: servers,
            logicalBytes: servers.reduce(0) { $0 + ($1.logicalBytes ?? 0) },
            storedBytes: servers.reduce(0) { $0 + ($1.usedBytes ?? 0) }, answeredBy: status.answeredBy,
            repair: status.repair, metadataNodes: status.metadataNodes)
        if json {
            try printJSON(output)
            return
        }
        let alive = servers.filter { $0.state == "alive" }.count
        print(
            "master \(master), ring epoch \(status.ringEpoch.map(String.init) ?? "none"), "
                + "\(status.replicaCount) replicas, \(alive) of \(servers.count) servers alive")
        print(
            "stored \(HumanSize.format(output.storedBytes)) on disks "
                + "for \(HumanSize.format(output.logicalBytes)) of chunks"
        )
        if let leader {
            print(
                "leader \(leader.address) (term \(leader.term)), lease renewed "
                    + String(format: "%.1f s ago, ", leader.leaseAgeSeconds)
                    + (leader.expiresInSeconds >= 0
                        ? String(format: "expires in %.1f s", leader.expiresInSeconds) : "expired: no leader now"))
        }
        if !masters.isEmpty {
            var masterRows = [["MASTER", "ADDRESS", "ROLE", "REACHABLE", "SEEN"]]
            for m in masters {
                masterRows.append([
                    String(m.id.prefix(8)), m.address, m.leader ? "leader" : "follower", m.reachable ? "yes" : "no",
                    String(format: "%.1f s ago", m.secondsSinceSeen),
                ])
            }
            print(columns(masterRows))
        }
        if let nodes = status.metadataNodes, !nodes.isEmpty {
            var nodeRows = [["DATABASE", "ROLE", "WAL", "BEHIND", "READS"]]
            for node in nodes {
                nodeRows.append([
                    node.endpoint, node.role, node.position ?? "-", node.bytesBehind.map(HumanSize.format) ?? "-",
                    node.role == "primary" ? "yes" : (node.servesReads ? "yes" : "no"),
                ])
            }
            print(columns(nodeRows))
        }
        var rows = [["SERVER", "ADDRESS", "ZONE", "STATE", "RING", "CHUNKS", "USED", "CAPACITY"]]
        for s in servers {
            rows.append([
                s.id, s.address, s.zone, s.state, s.inRing ? "yes" : "no", s.chunks.map(String.init) ?? "-",
                s.usedBytes.map(HumanSize.format) ?? "-", s.capacityBytes.map(HumanSize.format) ?? "disk",
            ])
        }
        print(columns(rows))
    }
}
