import BlobCore
import BlobServerSupport
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// The chunk server's HTTP routes (docs/api.md).
struct ChunkRoutes: Sendable {
    let storage: ChunkStorage
    let forwarder: ReplicationForwarder
    let signer: RequestSigner
    let serverID: String
    let addressBox: AddressBox
    /// Refuses copies and deletes from a replaced leader.
    let terms: LeaderTermGuard
    var address: String { addressBox.current }

    func register(on routes: AuthenticatedRoutes) {
        let anyone: Set<RequestRole> = [.client, .server, .master]
        routes.put("/v1/chunks/:id", roles: anyone) { request, context in try await write(request, context) }
        routes.get("/v1/chunks/:id", roles: anyone) { request, context in try await read(request, context) }
        routes.head("/v1/chunks/:id", roles: anyone) { request, context in try await head(request, context) }
        routes.delete("/v1/chunks/:id", roles: [.master]) { request, context in try await delete(request, context) }
        routes.post("/v1/chunks/:id/copy", roles: [.master]) { request, context in try await copy(request, context) }
        routes.get("/v1/chunks", roles: anyone) { request, context in try await inventory(request, context) }
        routes.get("/v1/quarantine", roles: anyone) { request, context in try await quarantine(request, context) }
        routes.get("/v1/status", roles: anyone) { request, context in try await status(request, context) }
    }

    // MARK: Helpers

    func chunkID(_ context: ClusterRequestContext) throws -> ChunkID {
        try ChunkID(hex: context.parameters.get("id") ?? "")
    }

    // MARK: Routes

    func write(_ request: Request, _ context: ClusterRequestContext) async throws -> Response {
        let role = context.role
        let id = try chunkID(context)
        let targets = try ReplicationForwarder.parseTargets(request.uri.queryParameters.get("replicas"))
        guard role != .server || targets.isEmpty else {
            throw BlobError(
                .invalidArgument, reason: "replicas.chained", "a forwarded write may not name further replicas")
        }
        let quorum = request.uri.queryParameters.get("quorum").flatMap { Int($0) } ?? (targets.count + 1)
        guard (1...(targets.count + 1)).contains(quorum) else {
            throw BlobError(
                .invalidArgument, reason: "quorum.outOfRange",
                "quorum \(quorum) must be between 1 and \(targets.count + 1) (this server plus its targets)")
        }
        let maxFrame = FrameHeader.byteCount + Limits.maxStoredByteCount
        if let declared = request.headers[.contentLength].flatMap({ Int($0) }), declared > maxFrame {
            throw BlobError(
                .tooLarge, reason: "body.tooLarge",
                "a chunk frame is at most \(maxFrame) bytes; this body declares \(declared)")
        }
        let body = try await request.body.collect(upTo: maxFrame)
        let frame = Array(buffer: body)
        if let declared = request.headers[.contentLength].flatMap({ Int($0) }), declared != frame.count {
            throw BlobError(
                .invalidArgument, reason: "body.lengthMismatch",
                "body is \(frame.count) bytes but Content-Length says \(declared)")
        }
        let header = try storage.verifyIncoming(frame, id: id, forwarded: role == .server)
        try await storage.checkRoom(for: frame.count)

        // Local write and forwarding run at the same time; the answer waits for all of them.
        // Each outcome is tagged by index (-1: this server); errors become plain values so
        // nothing but Sendable data crosses back.
        // The received buffer goes to every target as it is (shared, not copied per target).
        async let forwarded = forwardToAll(body, id: id, targets: targets)
        let local: ReplicaOutcome
        do {
            let present = try await storage.write(frame, header: header, id: id)
            local = ReplicaOutcome(index: -1, serverID: serverID, alreadyPresent: present, error: nil)
        } catch {
            local = ReplicaOutcome(index: -1, serverID: nil, alreadyPresent: false, error: BlobError.wrapping(error))
        }
        let outcomes = [local] + (await forwarded)
        var stored: [(address: String, id: String)] = []
        var failed: [ReplicaFailure] = []
        var alreadyPresent = false
        var localError: BlobError?
        for outcome in outcomes.sorted(by: { $0.index < $1.index }) {
            let target = outcome.index < 0 ? address : targets[outcome.index]
            if let error = outcome.error {
                if outcome.index < 0 { localError = error }
                failed.append(ReplicaFailure(target: target, code: error.code.rawValue, message: error.message))
            } else {
                if outcome.index < 0 { alreadyPresent = outcome.alreadyPresent }
                stored.append((target, outcome.serverID ?? target))
            }
        }
        if let localError, targets.isEmpty { throw localError }
        let result = ChunkWriteResult(
            id: id.hex, stored: stored.map(\.address), storedServerIDs: stored.map(\.id),
            failed: failed.sorted { $0.target < $1.target }, quorumMet: stored.count >= quorum,
            alreadyPresent: alreadyPresent)
        if !result.quorumMet {
            storage.count("writesBelowQuorum")
            return try jsonResponse(result, status: .serviceUnavailable)
        }
        return try jsonResponse(result, status: alreadyPresent ? .ok : .created)
    }

    func read(_ request: Request, _ context: ClusterRequestContext) async throws -> Response {
        let id = try chunkID(context)
        var headers = HTTPFields()
        if let span = try plainSpan(request) {
            // Part of the plain bytes, for a reader that checks them block by block against
            // the digests the master gave it. A raw chunk's part is read alone: checking the
            // whole frame here would cost what reading a part spares, and a reader whose
            // blocks do not match reads the whole chunk, which is checked (and quarantined)
            // as every whole read is. A compressed chunk is read and checked whole.
            let part: ArraySlice<UInt8>
            if let raw = try await storage.readRawSpan(id, span) {
                part = raw[...]
            } else {
                part = try plainPart(of: try await storage.read(id), id: id, span: span)
            }
            storage.count("partialReads")
            storage.count("partialBytesSent", Int64(part.count))
            headers[.contentType] = "application/octet-stream"
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: part)))
        }
        let frame = try await storage.read(id)
        if request.uri.queryParameters.get("format") == "plain" {
            let plain: [UInt8]
            do throws(FrameError) {
                plain = try ChunkFrame.decode(frame, expectedID: id)
            } catch {
                storage.count("checksumFailures")
                try await storage.quarantine(id, storedByteCount: frame.count, because: error.message)
                throw BlobError(
                    .corruptChunk, reason: "chunk.quarantined",
                    "chunk \(id.shortHex)… failed its check on this server (\(error.reason)); "
                        + "moved to quarantine; read another replica")
            }
            headers[.contentType] = "application/octet-stream"
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: plain)))
        }
        headers[.contentType] = "application/x-blob-frame"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: frame)))
    }

    /// `offset` and `length` of a partial read (`format=plain` only), or nil for a whole chunk.
    func plainSpan(_ request: Request) throws -> Range<Int>? {
        let query = request.uri.queryParameters
        guard query.get("offset") != nil || query.get("length") != nil else { return nil }
        guard query.get("format") == "plain",
            let offset = query.get("offset").flatMap({ Int($0) }),
            let length = query.get("length").flatMap({ Int($0) }),
            offset >= 0, length > 0, offset <= Limits.maxChunkByteCount, length <= Limits.maxChunkByteCount
        else {
            throw BlobError(
                .invalidArgument, reason: "chunk.span",
                "a partial read needs format=plain and a non-negative offset and a positive length, in bytes")
        }
        return offset..<(offset + length)
    }

    /// Bytes `span` of the chunk's plain bytes.
    func plainPart(of frame: [UInt8], id: ChunkID, span: Range<Int>) throws -> ArraySlice<UInt8> {
        let header: FrameHeader
        do throws(FrameError) { header = try FrameHeader(parsing: frame) } catch {
            throw BlobError(.corruptChunk, reason: error.reason, "chunk \(id.shortHex)…: \(error.message)")
        }
        guard span.upperBound <= header.plainByteCount else {
            throw BlobError(
                .invalidArgument, reason: "chunk.span",
                "bytes \(span.lowerBound)..<\(span.upperBound) are outside chunk \(id.shortHex)… "
                    + "of \(header.plainByteCount) bytes"
            )
        }
        switch header.codec {
        case .raw:
            let start = FrameHeader.byteCount + span.lowerBound
            return frame[start..<(start + span.count)]
        case .zstd:
            do throws(FrameError) {
                let plain = try ChunkFrame.decode(frame)
                return plain[span]
            } catch {
                throw BlobError(.corruptChunk, reason: error.reason, "chunk \(id.shortHex)…: \(error.message)")
            }
        }
    }

    func head(_ request: Request, _ context: ClusterRequestContext) async throws -> Response {
        let id = try chunkID(context)
        guard let header = try await storage.diskHeader(id) else {
            throw BlobError(.notFound, reason: "chunk.notFound", "chunk \(id.shortHex)… is not stored on this server")
        }
        var headers = HTTPFields()
        headers[.contentType] = "application/x-blob-frame"
        headers[.contentLength] = String(header.frameByteCount)
        headers[HTTPField.Name("X-Blob-Plain-Length")!] = String(header.plainByteCount)
        headers[HTTPField.Name("X-Blob-Codec")!] = header.codec.description
        return Response(status: .ok, headers: headers)
    }

    func delete(_ request: Request, _ context: ClusterRequestContext) async throws -> Response {
        let id = try chunkID(context)
        try terms.admit(request.headers[HTTPField.Name(LeaderTermGuard.header)!])
        let unlessWrittenAfter = try request.uri.queryParameters.get("unless-written-after").map { text in
            guard let value = Int64(text) else {
                throw BlobError(
                    .invalidArgument, reason: "query.unlessWrittenAfter",
                    "unless-written-after must be milliseconds since 1970, got \(text)")
            }
            return value
        }
        guard try await storage.remove(id, unlessWrittenAfter: unlessWrittenAfter) else {
            throw BlobError(.notFound, reason: "chunk.notFound", "chunk \(id.shortHex)… is not stored on this server")
        }
        return Response(status: .noContent)
    }

    /// Sends a stored chunk to other servers (repair and rebalance): the bytes go server to
    /// server, never through the master. The frame is checked before it leaves; a corrupt one
    /// is quarantined and the copy refused, so a bad replica never spreads.
    func copy(_ request: Request, _ context: ClusterRequestContext) async throws -> Response {
        let id = try chunkID(context)
        try terms.admit(request.headers[HTTPField.Name(LeaderTermGuard.header)!])
        let body = try await decodeJSONBody(ChunkCopyRequest.self, from: request, maxByteCount: 1 << 16)
        let targets = try ReplicationForwarder.parseTargets(body.targets.joined(separator: ","))
        guard !targets.isEmpty, !targets.contains(address) else {
            throw BlobError(.invalidArgument, reason: "copy.targets", "name one or more other servers to copy to")
        }
        let frame = try await storage.read(id)
        do throws(FrameError) {
            _ = try ChunkFrame.decode(frame, expectedID: id)
        } catch {
            storage.count("checksumFailures")
            try await storage.quarantine(id, storedByteCount: frame.count, because: error.message)
            throw BlobError(
                .corruptChunk, reason: "chunk.quarantined",
                "chunk \(id.shortHex)… failed its check on this server (\(error.reason)); copy from another replica")
        }
        let outcomes = await forwardToAll(ByteBuffer(bytes: frame), id: id, targets: targets)
        let stored = outcomes.filter { $0.error == nil }
        storage.count("copiesSent", Int64(stored.count))
        storage.count("bytesCopied", Int64(frame.count * stored.count))
        let result = ChunkWriteResult(
            id: id.hex, stored: stored.map { targets[$0.index] },
            storedServerIDs: stored.map { $0.serverID ?? targets[$0.index] },
            failed: outcomes.compactMap { o in
                o.error.map { ReplicaFailure(target: targets[o.index], code: $0.code.rawValue, message: $0.message) }
            },
            quorumMet: stored.count == targets.count, alreadyPresent: false)
        return try jsonResponse(result, status: result.quorumMet ? .ok : .serviceUnavailable)
    }

    /// Writes the frame to every target at once; one outcome per target, in target order.
    func forwardToAll(_ frame: ByteBuffer, id: ChunkID, targets: [String]) async -> [ReplicaOutcome] {
        await withTaskGroup(of: ReplicaOutcome.self) { group in
            for (index, target) in targets.enumerated() {
                group.addTask {
                    do {
                        let server = try await forwarder.forward(frame, id: id, to: target)
                        return ReplicaOutcome(index: index, serverID: server, alreadyPresent: false, error: nil)
                    } catch {
                        storage.count("forwardFailures")
                        return ReplicaOutcome(
                            index: index, serverID: nil, alreadyPresent: false, error: BlobError.wrapping(error))
                    }
                }
            }
            var collected: [ReplicaOutcome] = []
            for await outcome in group { collected.append(outcome) }
            return collected.sorted { $0.index < $1.index }
        }
    }

    func quarantine(_ request: Request, _ context: ClusterRequestContext) async throws -> Response {
        let ids = try await storage.quarantined(limit: 100_000)
        return try jsonResponse(QuarantineList(chunks: ids.map(\.hex)))
    }

    func inventory(_ request: Request, _ context: ClusterRequestContext) async throws -> Response {
        let after = try request.uri.queryParameters.get("after").map { try ChunkID(hex: $0) }
        let limit = request.uri.queryParameters.get("limit").flatMap { Int($0) } ?? 1000
        guard (1...10_000).contains(limit) else {
            throw BlobError(
                .invalidArgument, reason: "inventory.limit", "limit must be between 1 and 10000, got \(limit)")
        }
        let page = try await storage.inventory(after: after, limit: limit)
        return try jsonResponse(
            InventoryPage(
                chunks: page.map { InventoryEntry(id: $0.0.hex, storedBytes: $0.1) },
                next: page.count == limit ? page.last?.0.hex : nil))
    }

    func status(_ request: Request, _ context: ClusterRequestContext) async throws -> Response {
        let stats = storage.snapshot
        let (free, reserve) = try await storage.space()
        let configuration = storage.configuration
        return try jsonResponse(
            ChunkServerStatus(
                serverID: serverID, address: address, zone: configuration.zone, weight: configuration.weight,
                capacityBytes: configuration.capacityBytes, reserveBytes: reserve, usedBytes: stats.storedBytes,
                freeDiskBytes: free, chunkCount: stats.chunkCount, logicalBytes: stats.logicalBytes,
                storedBytes: stats.storedBytes, counters: stats.counters))
    }
}

/// What one replica of a write came to.
struct ReplicaOutcome: Sendable {
    let index: Int
    let serverID: String?
    let alreadyPresent: Bool
    let error: BlobError?
}

extension BlobError {
    /// Any error as a ``BlobError``, keeping code, reason and message of coded errors.
    static func wrapping(_ error: any Error) -> BlobError {
        if let blob = error as? BlobError { return blob }
        if let coded = error as? any CodedError {
            return BlobError(coded.code, reason: coded.reason, coded.message)
        }
        return BlobError(.unavailable, reason: "peer.unreachable", "\(error)")
    }
}
