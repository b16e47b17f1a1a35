import BlobCore
#if canImport(Glibc)
    import Glibc
#endif

/// Writes a get's bytes: to standard output as they come, or to a temporary file beside the
/// destination that is renamed into place only when the whole get succeeded (fsynced first,
/// with its directory after, when `durable`).
final class LocalWriter {
    private let fd: Int32
    private let destination: String?
    private let directory: String?
    private let temporary: String?
    private let durable: Bool
    private var finished = false

    init(_ target: GetDestination, durable: Bool) throws {
        self.durable = durable
        switch target {
        case .standardOutput:
            fd = 1
            destination = nil
            directory = nil
            temporary = nil
        case .file(let path):
            let slash = path.lastIndex(of: "/")
            let directory = slash.map { String(path[..<$0]) } ?? "."
            let name = slash.map { String(path[path.index(after: $0)...]) } ?? path
            guard !name.isEmpty else {
                throw BlobError(
                    .invalidArgument, reason: "local.path", "\(path) names a directory; give a file name to write")
            }
            let temporary =
                (directory.isEmpty ? "" : directory + "/")
                + ".\(name).blobctl-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).part"
            let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
            guard fd >= 0 else {
                let reason = String(cString: strerror(errno))
                throw BlobError(
                    .io, reason: "local.create",
                    "cannot create a file in \(directory.isEmpty ? "/" : directory): \(reason); "
                        + "check that the directory exists and is writable")
            }
            self.fd = fd
            destination = path
            self.directory = directory.isEmpty ? "/" : directory
            self.temporary = temporary
        }
    }

    deinit {
        if temporary != nil && !finished { abort() }
    }

    func write(_ bytes: UnsafeRawBufferPointer) throws {
        var done = 0
        while done < bytes.count {
            let n = Glibc.write(fd, bytes.baseAddress! + done, bytes.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                let reason = String(cString: strerror(errno))
                throw BlobError(
                    .io, reason: "local.write", "cannot write \(destination ?? "standard output"): \(reason)")
            }
            done += n
        }
    }

    /// Makes the file durable and puts it in place (over any older file of that name).
    func commit() throws {
        guard let destination, let temporary else { return }
        finished = true
        let synced = !durable || fsync(fd) == 0
        let closed = close(fd) == 0
        guard synced, closed, rename(temporary, destination) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw BlobError(.io, reason: "local.commit", "cannot finish \(destination): \(reason)")
        }
        guard durable, let directory else { return }
        let dirFD = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dirFD >= 0 {
            _ = fsync(dirFD)
            _ = close(dirFD)
        }
    }

    /// Drops the temporary file; the destination is untouched.
    func abort() {
        guard let temporary, !finished else { return }
        finished = true
        _ = close(fd)
        unlink(temporary)
    }
}

/// Content types from file extensions, for puts that do not name one.
public enum ContentTypes {
    static let byExtension: [String: String] = [
        "mp4": "video/mp4", "m4v": "video/mp4", "mov": "video/quicktime", "mkv": "video/x-matroska",
        "webm": "video/webm", "avi": "video/x-msvideo", "ts": "video/mp2t", "m3u8": "application/vnd.apple.mpegurl",
        "mp3": "audio/mpeg", "m4a": "audio/mp4", "aac": "audio/aac", "flac": "audio/flac", "wav": "audio/wav",
        "ogg": "audio/ogg", "opus": "audio/opus",
        "jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png", "gif": "image/gif", "webp": "image/webp",
        "svg": "image/svg+xml", "avif": "image/avif",
        "txt": "text/plain; charset=utf-8", "log": "text/plain; charset=utf-8", "csv": "text/csv",
        "md": "text/markdown", "html": "text/html", "htm": "text/html", "css": "text/css",
        "js": "text/javascript", "json": "application/json", "xml": "application/xml", "yaml": "application/yaml",
        "yml": "application/yaml", "pdf": "application/pdf", "zip": "application/zip", "gz": "application/gzip",
        "tgz": "application/gzip", "tar": "application/x-tar", "zst": "application/zstd", "xz": "application/x-xz",
        "bz2": "application/x-bzip2", "7z": "application/x-7z-compressed", "parquet": "application/vnd.apache.parquet",
        "wasm": "application/wasm",
    ]

    /// The content type for a path's extension, or `application/octet-stream`.
    public static func forPath(_ path: String) -> String {
        let name = path.split(separator: "/").last.map(String.init) ?? path
        guard let dot = name.lastIndex(of: "."), dot != name.startIndex else { return "application/octet-stream" }
        return byExtension[name[name.index(after: dot)...].lowercased()] ?? "application/octet-stream"
    }
}
