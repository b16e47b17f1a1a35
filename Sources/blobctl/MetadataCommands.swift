import ArgumentParser
import BlobCore
import BlobMaster
import Foundation
import Logging

/// `blobctl metadata`: the master's metadata database.
struct MetadataCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "metadata", abstract: "The master's metadata database.",
        subcommands: [MetadataMigrateCommand.self])
}

/// `blobctl metadata migrate --from sqlite:PATH --to postgres://…`: the offline move of a cluster's
/// metadata to PostgreSQL.
struct MetadataMigrateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate",
        abstract: "Copy all metadata into a new, empty database (SQLite to PostgreSQL), then verify it.",
        discussion: """
            Stop the master first: the copy is offline. The destination must be empty (a database \
            that holds any row is refused); its schema is created first. Every table is copied in \
            key order and then compared: the destination must hold the same number of rows and the \
            same checksum of their values. Then start the master with --metadata set to the \
            destination. See docs/operations.md.
            """)

    @Option(help: "The database to copy: sqlite:PATH (a master's DIR/master.sqlite).")
    var from: String

    @Option(help: "The empty database to fill: postgres://USER@HOST:PORT/DATABASE (or sqlite:PATH).")
    var to: String

    @Option(help: "File holding the PostgreSQL password (else env BLOBCTL_METADATA_PASSWORD).")
    var metadataPasswordFile: String?

    @Flag(help: "Print the report as JSON.")
    var json = false

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "warning"

    func run() async throws {
        let source: MetadataLocation
        let destination: MetadataLocation
        do {
            source = try MetadataLocation.parse(from, passwordFile: metadataPasswordFile)
            destination = try MetadataLocation.parse(to, passwordFile: metadataPasswordFile)
        } catch let error as BlobError {
            throw ValidationError(error.message)
        }
        if case .sqlite(let path) = source, !FileManager.default.fileExists(atPath: path) {
            throw ValidationError(
                "--from \(from): no such file; name a master's master.sqlite (it is in the master's --data directory)")
        }
        bootstrapLogging(level: logLevel)
        let logger = Logger(label: "blobctl.metadata")
        let started = ContinuousClock.now
        let reports = try await source.withStore(logger: logger) { from in
            try await destination.withStore(logger: logger) { to in
                try await MetadataMigration.copy(from: from.database, to: to.database) { table, rows in
                    if !json { FileHandle.standardError.write(Data("copied \(table): \(rows) rows\n".utf8)) }
                }
            }
        }
        let elapsed = ContinuousClock.now - started
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        if json { return try printJSON(reports) }
        print(
            columns(
                [["TABLE", "ROWS", "CHECKSUM", "VERIFIED"]]
                    + reports.map {
                        [$0.table, "\($0.sourceRows)", String($0.sourceChecksum.prefix(16)), $0.matches ? "yes" : "NO"]
                    }))
        let total = reports.reduce(0) { $0 + $1.sourceRows }
        print(
            "migrated \(total) rows from \(source) to \(destination) in \(Int(seconds.rounded())) s; "
                + "every table verified. Start the master with --metadata \(destination).")
    }
}
