import BlobCore

/// Commits from concurrent requests, grouped: while one group's transaction runs, the commits
/// that arrive wait and then go together as the next group (``MetadataStore/commitGroup``).
/// A lone commit goes at once, as a group of one, so an idle master adds no delay.
///
/// A group holds each path at most once, in order of arrival: a second commit of the same path
/// waits for the next group, so the later of two commits is the current one. A commit with a
/// precondition, or of a multipart part, goes alone (``MetadataStore/isGroupable(_:)``). When a
/// group's transaction fails as a whole (not one manifest), each of its commits is tried alone,
/// so one commit's trouble never becomes another's error.
actor CommitQueue {
    private struct Waiting {
        var manifest: ManifestCommit
        var replicas: [String: [ReplicaReport]]
        var continuation: CheckedContinuation<FileVersion, any Error>
    }

    let store: MetadataStore
    /// Most commits in one transaction: a group of 64 one-chunk commits is ~15 statements.
    static let maxGroup = 64
    private var waiting: [Waiting] = []
    private var draining = false

    init(store: MetadataStore) {
        self.store = store
    }

    func commit(_ manifest: ManifestCommit, recording replicas: [String: [ReplicaReport]]) async throws -> FileVersion {
        guard MetadataStore.isGroupable(manifest) else { return try await store.commit(manifest, recording: replicas) }
        return try await withCheckedThrowingContinuation { continuation in
            waiting.append(Waiting(manifest: manifest, replicas: replicas, continuation: continuation))
            if !draining {
                draining = true
                Task { await self.drain() }
            }
        }
    }

    /// Runs groups until no commit waits.
    private func drain() async {
        while !waiting.isEmpty {
            var group: [Waiting] = []
            var rest: [Waiting] = []
            var paths: Set<BlobPath> = []
            for commit in waiting {
                if group.count < Self.maxGroup, paths.insert(commit.manifest.path).inserted {
                    group.append(commit)
                } else {
                    rest.append(commit)
                }
            }
            waiting = rest
            await run(group)
        }
        draining = false
    }

    private func run(_ group: [Waiting]) async {
        if group.count == 1 {
            let only = group[0]
            do {
                only.continuation.resume(returning: try await store.commit(only.manifest, recording: only.replicas))
            } catch {
                only.continuation.resume(throwing: error)
            }
            return
        }
        var replicas: [String: [ReplicaReport]] = [:]
        for commit in group {
            for (server, reports) in commit.replicas { replicas[server, default: []] += reports }
        }
        do {
            let outcomes = try await store.commitGroup(group.map(\.manifest), recording: replicas)
            for (commit, outcome) in zip(group, outcomes) {
                switch outcome {
                case .success(let file): commit.continuation.resume(returning: file)
                case .failure(let error): commit.continuation.resume(throwing: error)
                }
            }
        } catch {
            for commit in group {
                do {
                    commit.continuation.resume(
                        returning: try await store.commit(commit.manifest, recording: commit.replicas))
                } catch {
                    commit.continuation.resume(throwing: error)
                }
            }
        }
    }
}
