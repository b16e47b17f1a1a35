import ArgumentParser
import AsyncHTTPClient
import BlobCore
import BlobMaster
import Foundation
import Logging
import NIOCore

/// `blobctl bench metadata`: a real master process, measured over HTTP on 127.0.0.1.
struct BenchMetadataCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "metadata",
        abstract: "Commit rate, stat and list latency, and master memory with many files and chunk references.",
        discussion: """
            Bulk-loads --files one-chunk files and --chunk-refs chunk references (in files of \
            --chunks-per-file chunks) straight into a fresh master database, starts a real \
            `blobctl master` process on it, then measures over HTTP: commits per second of new \
            one-chunk files from --clients concurrent clients; p50/p99 of stat of random files and of \
            1,000-entry list pages from random cursors; and the master's peak RSS (VmHWM). Build in \
            release first.
            """
    )

    @Option(help: "One-chunk files loaded before measuring stat and list.")
    var files: Int = 1_000_000

    @Option(help: "Chunk references loaded (as large files) before measuring memory.")
    var chunkRefs: Int = 10_000_000

    @Option(help: "Chunks per file for the chunk-reference load.")
    var chunksPerFile: Int = 1000

    @Option(help: "Commits measured.")
    var commits: Int = 20_000

    @Option(help: "Concurrent committing clients.")
    var clients: Int = 8

    @Option(help: "Masters sharing the database (more than one needs PostgreSQL); client i talks to master i mod N.")
    var masters: Int = 1

    @Option(
        help: ArgumentHelp(
            "Where the master keeps its metadata: postgres://USER@HOST:PORT/DATABASE (an empty database) or "
                + "sqlite:PATH; default a fresh DIR/master/master.sqlite.", valueName: "location"))
    var metadata: String?

    @Option(help: "File holding the PostgreSQL password (else env BLOBCTL_METADATA_PASSWORD).")
    var metadataPasswordFile: String?

    @Option(
        help: ArgumentHelp(
            "PostgreSQL hot standbys the masters read from (the master's --metadata-replicas); read plans then "
                + "carry the position of the last commit, as a client that wrote does.", valueName: "location"))
    var metadataReplicas: String?

    @Option(help: "Directory for the master's data (a fresh temporary one by default).")
    var dir: String?

    @Flag(help: "Print JSON instead of a table.")
    var json = false

    struct Results: Codable {
        var files: Int
        var chunkRefs: Int
        var loadSeconds: Double
        var commitsPerSecond: Double
        var commitP50Milliseconds: Double
        var commitP99Milliseconds: Double
        var statP50Milliseconds: Double
        var statP99Milliseconds: Double
        var listP50Milliseconds: Double
        var listP99Milliseconds: Double
        var masterPeakRSSMebibytes: Double
        var databaseMebibytes: Double
        var backend: String
        var masters: Int
        var readPlansPerSecond: Double
        var readPlansFromStandbys: Int
    }

    func run() async throws {
        guard files >= 1000, chunkRefs >= 0, chunksPerFile >= 1, commits >= 1, clients >= 1 else {
            throw ValidationError("need --files >= 1000 and positive counts")
        }
        guard (1...9).contains(masters), masters == 1 || metadata?.hasPrefix("postgres") == true else {
            throw ValidationError(
                "--masters takes 1 to 9; more than one share a PostgreSQL (--metadata postgres://…)")
        }
        let root = dir ?? (NSTemporaryDirectory() + "blobctl-bench-metadata-\(UUID().uuidString)")
        try FileManager.default.createDirectory(atPath: root + "/master", withIntermediateDirectories: true)
        defer { if dir == nil { try? FileManager.default.removeItem(atPath: root) } }
        let secret = (0..<32).map { _ in UInt8.random(in: 97...122) }
        try Data(secret).write(to: URL(fileURLWithPath: root + "/secret"))
        let signer = try RequestSigner(secret: secret)

        let location: MetadataLocation
        do {
            location =
                try metadata.map { try MetadataLocation.parse($0, passwordFile: metadataPasswordFile) }
                ?? .sqlite(path: root + "/master/master.sqlite")
        } catch let error as BlobError {
            throw ValidationError(error.message)
        }
        let loadStart = ContinuousClock.now
        try await bulkLoad(location)
        let loadSeconds = Self.seconds(ContinuousClock.now - loadStart)
        log("loaded \(files) files and \(chunkRefs) chunk references in \(Int(loadSeconds)) s")

        var masterArguments = ["--metadata", location.description]
        if let metadataPasswordFile { masterArguments += ["--metadata-password-file", metadataPasswordFile] }
        if let metadataReplicas { masterArguments += ["--metadata-replicas", metadataReplicas] }
        var servers: [BenchServer] = []
        for i in 0..<masters {
            try FileManager.default.createDirectory(atPath: root + "/master-\(i)", withIntermediateDirectories: true)
            servers.append(
                try BenchServer(
                    directory: i == 0 ? root + "/master" : root + "/master-\(i)", secretFile: root + "/secret",
                    role: "master", extraArguments: masterArguments))
        }
        let master = servers[0]
        let http = HTTPClient(eventLoopGroupProvider: .singleton)
        do {
            for server in servers { try await server.start() }
            let client = BenchHTTP(http: http, signer: signer, address: master.address)
            let perMaster = servers.map { BenchHTTP(http: http, signer: signer, address: $0.address) }
            // A server for the chunks the commits name, registered like a real one would.
            let registration = ServerRegistration(
                serverID: "bench-cs", address: "127.0.0.1:1", zone: "z", weight: 1, capacityBytes: nil,
                usage: ServerUsage(usedBytes: 0, freeDiskBytes: 0, chunkCount: 0, logicalBytes: 0, inFlightRequests: 0))
            try await client.send("POST", "/v1/cluster/servers", registration, role: .server)
            let (rate, commitP50, commitP99) = try await measureCommits(perMaster)
            log(
                "commits: \(Int(rate))/s, latency p50 \(String(format: "%.2f", commitP50)) ms "
                    + "p99 \(String(format: "%.2f", commitP99)) ms")
            let (plans, fromStandbys) = try await measureReadPlans(perMaster)
            log("read plans: \(Int(plans))/s, \(fromStandbys) of them answered by standbys")
            let stat = try await measure(2000) { _ in
                let path = "load/\(Int.random(in: 0..<files))"
                try await client.send("GET", "/v1/files?path=\(path)", Optional<Int>.none)
            }
            let list = try await measure(300) { _ in
                let after = "load/\(Int.random(in: 0..<files))"
                try await client.send("GET", "/v1/list?prefix=load/&after=\(after)&limit=1000", Optional<Int>.none)
            }
            let rss = master.peakRSSMebibytes()
            for server in servers { server.stop() }
            try await http.shutdown()
            let database = try await databaseMebibytes(location)
            let results = Results(
                files: files, chunkRefs: chunkRefs, loadSeconds: loadSeconds, commitsPerSecond: rate,
                commitP50Milliseconds: commitP50, commitP99Milliseconds: commitP99,
                statP50Milliseconds: stat.0, statP99Milliseconds: stat.1, listP50Milliseconds: list.0,
                listP99Milliseconds: list.1, masterPeakRSSMebibytes: rss, databaseMebibytes: database,
                backend: location.description.hasPrefix("sqlite:") ? "sqlite" : "postgres", masters: masters,
                readPlansPerSecond: plans, readPlansFromStandbys: fromStandbys)
            if json {
                print(String(decoding: try JSONEncoder().encode(results), as: UTF8.self))
            } else {
                let bytesPerFile = Int(
                    database * 1_048_576 / Double(files + commits + max(chunkRefs, 1) / max(chunksPerFile, 1)))
                print(
                    """
                    master on \(results.backend) with \(files) files and \(chunkRefs) chunk references \
                    (database \(Int(database)) MiB, \
                    \(bytesPerFile) bytes per file)
                    masters: \(masters)
                    commits (one-chunk files, \(clients) clients): \(Int(rate)) per second, \
                    latency p50 \(String(format: "%.2f", commitP50)) ms, p99 \(String(format: "%.2f", commitP99)) ms
                    read plans (\(clients) clients): \(Int(plans)) per second, \(fromStandbys) answered by standbys
                    stat: p50 \(String(format: "%.2f", stat.0)) ms, p99 \(String(format: "%.2f", stat.1)) ms
                    list page of 1000: p50 \(String(format: "%.2f", list.0)) ms, \
                    p99 \(String(format: "%.2f", list.1)) ms
                    master peak RSS: \(Int(rss)) MiB
                    """)
            }
        } catch {
            for server in servers { server.stop() }
            try? await http.shutdown()
            throw error
        }
    }

    func log(_ text: String) { FileHandle.standardError.write(Data((text + "\n").utf8)) }

    /// Fills a fresh database through the store's batch commit (one transaction per batch).
    func bulkLoad(_ location: MetadataLocation) async throws {
        try await location.withStore(logger: Logger(label: "blobctl.bench")) { store in try await bulkLoad(store) }
    }

    /// The database's size: the SQLite file, or PostgreSQL's `pg_database_size`.
    func databaseMebibytes(_ location: MetadataLocation) async throws -> Double {
        switch location {
        case .sqlite(let path):
            return Self.fileMebibytes(path)
        case .postgres:
            return try await location.withStore(logger: Logger(label: "blobctl.bench")) { store in
                Double(try await store.database.rows("SELECT pg_database_size(current_database())").first?.int(0) ?? 0)
                    / 1_048_576
            }
        }
    }

    func bulkLoad(_ store: MetadataStore) async throws {
        // Batches of 5,000 files, four transactions at a time: a server engine loads in
        // parallel (one batch is ~30,000 statements, each a round trip); SQLite queues them.
        let batch = 5000
        let batches = (files + batch - 1) / batch
        try await withThrowingTaskGroup(of: Void.self) { group in
            for loader in 0..<4 {
                group.addTask {
                    for b in stride(from: loader, to: batches, by: 4) {
                        let first = b * batch
                        let n = min(batch, files - first)
                        let ids = (0..<n).map { ChunkID(hashing: Array("file-chunk:\(first + $0)".utf8)) }
                        try await store.recordReplicas(
                            ids.map { ReplicaReport(chunkID: $0, plainByteCount: 1000, storedByteCount: 600) },
                            on: "bench-cs")
                        let manifests = try ids.enumerated().map { i, id in
                            ManifestCommit(
                                path: try BlobPath("load/\(first + i)"), size: 1000, contentType: "text/plain",
                                sha256: id.hex, chunks: [ManifestEntry(chunkID: id, offset: 0, length: 1000)])
                        }
                        _ = try await store.commit(batch: manifests)
                    }
                }
            }
            try await group.waitForAll()
        }
        var refs = 0
        var file = 0
        while refs < chunkRefs {
            let n = min(chunksPerFile, chunkRefs - refs)
            let ids = (0..<n).map { ChunkID(hashing: Array("ref-chunk:\(refs + $0)".utf8)) }
            try await store.recordReplicas(
                ids.map { ReplicaReport(chunkID: $0, plainByteCount: 1 << 20, storedByteCount: 1 << 19) },
                on: "bench-cs")
            let entries = ids.enumerated().map { ManifestEntry(chunkID: $1, offset: Int64($0) << 20, length: 1 << 20) }
            _ = try await store.commit(
                ManifestCommit(
                    path: try BlobPath("big/\(file)"), size: Int64(n) << 20,
                    contentType: "video/mp4", sha256: ids[0].hex, chunks: entries))
            refs += n
            file += 1
        }
    }

    /// Commits per second of new one-chunk files, `clients` at once, and the p50 and p99 of one
    /// commit's latency in milliseconds.
    func measureCommits(_ masters: [BenchHTTP]) async throws -> (rate: Double, p50: Double, p99: Double) {
        let client = masters[0]
        // Chunks first, acknowledged in batches, so the timed part is commits alone.
        let ids = (0..<commits).map { ChunkID(hashing: Array("commit-chunk:\($0)".utf8)) }
        for start in stride(from: 0, to: ids.count, by: 5000) {
            let acks = ids[start..<min(ids.count, start + 5000)].map {
                ReplicaAcknowledgement(id: $0, plainByteCount: 4096, storedByteCount: 2048, serverIDs: ["bench-cs"])
            }
            try await client.send("POST", "/v1/replicas", ReplicaAcknowledgements(chunks: acks))
        }
        let start = ContinuousClock.now
        var latencies = try await withThrowingTaskGroup(of: [Double].self) { group in
            for worker in 0..<clients {
                group.addTask {
                    var i = worker
                    var samples: [Double] = []
                    while i < ids.count {
                        let commit = ManifestCommit(
                            path: try BlobPath("commits/\(i)"), size: 4096, contentType: "application/octet-stream",
                            sha256: ids[i].hex, chunks: [ManifestEntry(chunkID: ids[i], offset: 0, length: 4096)])
                        let sent = ContinuousClock.now
                        try await masters[worker % masters.count].send("POST", "/v1/files", commit)
                        samples.append(Self.seconds(ContinuousClock.now - sent) * 1000)
                        i += clients
                    }
                    return samples
                }
            }
            return try await group.reduce(into: [Double]()) { $0 += $1 }
        }
        let rate = Double(commits) / Self.seconds(ContinuousClock.now - start)
        latencies.sort()
        return (
            rate, latencies[latencies.count / 2], latencies[min(latencies.count - 1, latencies.count * 99 / 100)]
        )
    }

    /// With standbys, each plan carries the write position of a last commit (a writer reading
    /// back): returns the rate and how many plans standbys answered.
    func measureReadPlans(_ masters: [BenchHTTP]) async throws -> (Double, Int) {
        let count = max(commits, 2000)
        var position: String?
        if metadataReplicas != nil {
            let marker = BucketCreate(name: "bench-position-\(UInt32.random(in: 0...UInt32.max))")
            position = try await masters[0].send("POST", to: masters[0].address, "/v1/buckets", marker).position
        }
        let start = ContinuousClock.now
        let fromStandbys = try await withThrowingTaskGroup(of: Int.self) { group in
            for worker in 0..<clients {
                group.addTask { [position] in
                    var i = worker
                    var standby = 0
                    while i < count {
                        let master = masters[worker % masters.count]
                        let answer = try await master.send(
                            "GET", to: master.address, "/v1/files/plan?path=commits/\(i % commits)",
                            Optional<Int>.none, position: position)
                        if answer.answeredBy?.hasPrefix("standby") == true { standby += 1 }
                        i += clients
                    }
                    return standby
                }
            }
            return try await group.reduce(0, +)
        }
        return (Double(count) / Self.seconds(ContinuousClock.now - start), fromStandbys)
    }

    /// p50 and p99 in milliseconds of `count` sequential calls.
    func measure(_ count: Int, _ body: (Int) async throws -> Void) async throws -> (Double, Double) {
        var samples: [Double] = []
        for i in 0..<count {
            let start = ContinuousClock.now
            try await body(i)
            samples.append(Self.seconds(ContinuousClock.now - start) * 1000)
        }
        samples.sort()
        return (samples[samples.count / 2], samples[min(samples.count - 1, samples.count * 99 / 100)])
    }

    static func seconds(_ d: Duration) -> Double { d.inSeconds }

    static func fileMebibytes(_ path: String) -> Double {
        let attributes = try? FileManager.default.attributesOfItem(atPath: path)
        return Double((attributes?[.size] as? Int) ?? 0) / 1_048_576
    }
}

/// Signed JSON requests to one address.
struct BenchHTTP: Sendable {
    let http: HTTPClient
    let signer: RequestSigner
    let address: String

    /// A JSON request to the master at ``address``; any status from 300 up is an error.
    func send<T: Encodable>(_ method: String, _ path: String, _ body: T?, role: RequestRole = .client) async throws {
        let status = try await send(
            method, to: address, path, bytes: try body.map { Array(try JSONEncoder().encode($0)) },
            role: role)
        guard status < 300 else { throw ValidationError("\(method) \(path) answered \(status)") }
    }

    /// A JSON request carrying `position` (``MetadataPosition/header``); answers the write position
    /// and who answered the read, as the master's headers say.
    func send<T: Encodable>(
        _ method: String, to address: String, _ path: String, _ body: T?, position: String? = nil
    ) async throws -> (position: String?, answeredBy: String?) {
        var request = HTTPClientRequest(url: "http://\(address)\(path)")
        request.method = .RAW(value: method)
        request.headers.add(
            name: "Authorization",
            value: signer.token(
                role: .client, method: method, pathAndQuery: path, expiry: Int64(Date().timeIntervalSince1970) + 300))
        if let position { request.headers.add(name: MetadataPosition.header, value: position) }
        if let body { request.body = .bytes(ByteBuffer(bytes: Array(try JSONEncoder().encode(body)))) }
        let response = try await http.execute(request, timeout: .seconds(60))
        for try await _ in response.body {}
        guard response.status.code < 300 else {
            throw ValidationError("\(method) \(path) answered \(response.status.code)")
        }
        return (
            response.headers.first(name: MetadataPosition.header),
            response.headers.first(name: MetadataPosition.answeredByHeader)
        )
    }

    /// One signed request with a raw body; reads the whole reply and returns its status.
    func send(
        _ method: String, to address: String, _ path: String, bytes: [UInt8]?,
        role: RequestRole = .client
    ) async throws -> UInt {
        var request = HTTPClientRequest(url: "http://\(address)\(path)")
        request.method = .RAW(value: method)
        request.headers.add(
            name: "Authorization",
            value: signer.token(
                role: role, method: method, pathAndQuery: path, expiry: Int64(Date().timeIntervalSince1970) + 300))
        if let bytes { request.body = .bytes(ByteBuffer(bytes: bytes)) }
        let response = try await http.execute(request, timeout: .seconds(60))
        for try await _ in response.body {}
        return response.status.code
    }
}
