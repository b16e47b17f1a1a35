import BlobClient
import BlobCore
import Foundation
import Synchronization
#if canImport(Glibc)
    import Glibc
#endif

// `blobctl put --recursive DIR PREFIX`: many files through one process and one client.

extension PutCommand {
    struct TreeOutput: Encodable {
        var prefix: String
        var files: [Output]
        var fileCount: Int
        var size: Int64
        var storedBytes: Int64
        var newChunks: Int
        /// Files that could not be put, with why; the others are stored.
        var failed: [TreeFailure]
        /// Symbolic links and special files left out.
        var skipped: Int
        var seconds: Double
    }

    struct TreeFailure: Encodable, Error {
        var local: String
        var path: String
        var error: String
    }

    /// `put --recursive DIR PREFIX`: every regular file under DIR, `parallel` at once over one
    /// client. Each file's window is a share of `--in-flight` (at least one chunk), so a file in
    /// progress holds its chunker buffer (4.25 MiB), one chunk waiting and one in flight (up to
    /// 4 MiB each). Measured: 16 files of 64 MiB at `--parallel 16` peaked at 242 MiB RSS, the
    /// whole process, under the 256 MiB a put may use.
    func runRecursive(json: Bool) async throws {
        let prefix = path.hasSuffix("/") ? String(path.dropLast()) : path
        let tree: LocalTree
        let baseOptions: PutOptions
        do {
            guard source != "-" else { throw CLIError(.usage, "--recursive reads a directory, not standard input") }
            _ = try BlobPath(prefix)
            guard (1...16).contains(parallel) else { throw CLIError(.usage, "--parallel must be 1...16") }
            guard (1...64).contains(inFlight) else { throw CLIError(.usage, "--in-flight must be 1...64") }
            tree = try LocalTree(directory: source, prefix: prefix)
            let share = max(1, inFlight / parallel)
            baseOptions = try putOptions(contentType: "", inFlight: share, placementBatch: share)
        } catch {
            throw CLIError.exit(error, json: json)
        }
        let bar = ProgressBar(label: "put", total: tree.files.reduce(0) { $0 + $1.size }, enabled: !json)
        let sent = ByteTally()
        let start = ContinuousClock.now
        let contentType = self.contentType
        if !json {
            for failure in tree.unreadable {
                FileHandle.standardError.write(Data("blobctl: error: \(failure.local): \(failure.error)\n".utf8))
            }
        }
        let outcomes = try await cluster.withClient { client in
            try await withThrowingTaskGroup(of: Result<Output, TreeFailure>.self) { group in
                var outcomes: [Result<Output, TreeFailure>] = tree.unreadable.map { .failure($0) }
                var next = tree.files.makeIterator()
                func startNext() -> Bool {
                    guard let file = next.next() else { return false }
                    let remote = prefix + "/" + file.relativePath
                    var options = baseOptions
                    options.contentType = contentType ?? ContentTypes.forPath(file.relativePath)
                    let fileOptions = options
                    group.addTask {
                        let fileStart = ContinuousClock.now
                        let counted = ByteTally()
                        do {
                            let result = try await client.put(
                                .file(file.localPath), to: try BlobPath(remote), options: fileOptions
                            ) { done in
                                bar.update(sent.add(done - counted.set(done)))
                            }
                            return .success(Output(result, seconds: (ContinuousClock.now - fileStart).inSeconds))
                        } catch {
                            return .failure(
                                TreeFailure(local: file.localPath, path: remote, error: CLIError(error).message))
                        }
                    }
                    return true
                }
                for _ in 0..<parallel where !startNext() { break }
                while let outcome = try await group.next() {
                    if !json {
                        bar.finish()
                        switch outcome {
                        case .success(let output):
                            print(
                                "put \(output.path) (version \(output.version)): "
                                    + "\(HumanSize.format(output.size)), \(output.newChunks) new chunks"
                            )
                        case .failure(let failure):
                            FileHandle.standardError.write(
                                Data("blobctl: error: \(failure.local): \(failure.error)\n".utf8))
                        }
                    }
                    outcomes.append(outcome)
                    _ = startNext()
                }
                return outcomes
            }
        }
        bar.finish()
        let seconds = (ContinuousClock.now - start).inSeconds
        let stored = outcomes.compactMap { try? $0.get() }.sorted { $0.path < $1.path }
        let failed = outcomes.compactMap { outcome -> TreeFailure? in
            if case .failure(let failure) = outcome { return failure } else { return nil }
        }
        let size: Int64 = stored.reduce(0) { $0 + $1.size }
        let storedBytes: Int64 = stored.reduce(0) { $0 + $1.storedBytes }
        let newChunks: Int = stored.reduce(0) { $0 + $1.newChunks }
        let output = TreeOutput(
            prefix: prefix, files: stored, fileCount: stored.count, size: size, storedBytes: storedBytes,
            newChunks: newChunks, failed: failed.sorted { $0.local < $1.local }, skipped: tree.skipped,
            seconds: seconds)
        if json {
            try printJSON(output)
        } else {
            print(
                """
                put \(output.fileCount) files under \(prefix)/: \
                \(HumanSize.format(output.size)), \(output.newChunks) new chunks, \
                \(HumanSize.format(output.storedBytes)) written to disks, \
                \(HumanSize.fixed(Double(output.fileCount) / max(seconds, 0.001), digits: 0)) files/s\
                \(output.skipped > 0 ? "; \(output.skipped) symbolic links or special files skipped" : "")
                """)
        }
        if !failed.isEmpty {
            throw CLIError.exit(
                CLIError(
                    .failure,
                    "\(failed.count) of \(tree.files.count + tree.unreadable.count) files could not be put "
                        + "(listed above); run the same command again to put them "
                        + "(files already stored are not sent again)"),
                json: false)
        }
    }
}

/// A byte count shared by concurrent transfers.
final class ByteTally: Sendable {
    private let value = Mutex<Int64>(0)

    /// Adds `delta`; returns the new total.
    func add(_ delta: Int64) -> Int64 {
        value.withLock {
            $0 += delta
            return $0
        }
    }

    /// Sets the count; returns the previous one.
    func set(_ new: Int64) -> Int64 {
        value.withLock { old in
            defer { old = new }
            return old
        }
    }
}

/// The regular files under a local directory, for `put --recursive`, in byte order of their
/// path below it. Symbolic links and special files are counted, not followed.
struct LocalTree {
    struct File {
        var localPath: String
        /// '/'-separated, below the directory.
        var relativePath: String
        var size: Int64
    }

    var files: [File] = []
    /// Symbolic links and special files, left out on purpose.
    var skipped = 0
    /// Entries that could not be examined, and directories that could not be listed.
    var unreadable: [PutCommand.TreeFailure] = []

    init(directory: String, prefix: String) throws {
        var info = Glibc.stat()
        guard stat(directory, &info) == 0 else {
            throw CLIError(
                errno == ENOENT ? .notFound : .failure,
                "cannot read \(directory): \(String(cString: strerror(errno))); check the local path")
        }
        guard (info.st_mode & S_IFMT) == S_IFDIR else {
            throw CLIError(
                .usage,
                "\(directory) is not a directory; "
                    + "--recursive puts the files under a directory (drop it to put one file)"
            )
        }
        let root = directory.hasSuffix("/") && directory.count > 1 ? String(directory.dropLast()) : directory
        self.prefix = prefix
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: root) else {
            throw CLIError(
                .failure, "cannot list \(directory): \(String(cString: strerror(errno))); check its permissions")
        }
        walk(root, relative: "", names: names)
        files.sort { $0.relativePath.utf8.lexicographicallyPrecedes($1.relativePath.utf8) }
    }

    /// Where the files go in the cluster, for failures' `path`.
    private let prefix: String

    private mutating func walk(_ directory: String, relative: String, names: [String]) {
        for name in names {
            let local = directory + "/" + name
            let below = relative.isEmpty ? name : relative + "/" + name
            var info = Glibc.stat()
            guard lstat(local, &info) == 0 else {
                unreadable.append(
                    .init(
                        local: local, path: prefix + "/" + below,
                        error: "cannot examine it: \(String(cString: strerror(errno)))"))
                continue
            }
            switch info.st_mode & S_IFMT {
            case S_IFREG:
                files.append(File(localPath: local, relativePath: below, size: Int64(info.st_size)))
            case S_IFDIR:
                guard let inner = try? FileManager.default.contentsOfDirectory(atPath: local) else {
                    unreadable.append(
                        .init(
                            local: local, path: prefix + "/" + below,
                            error:
                                "cannot list this directory: \(String(cString: strerror(errno))); check its permissions"
                        ))
                    continue
                }
                walk(local, relative: below, names: inner)
            default:
                skipped += 1
            }
        }
    }
}
