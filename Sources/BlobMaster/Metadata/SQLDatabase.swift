public import BlobCore
public import Foundation

/// The seam between the master's metadata rules (``MetadataStore``) and an ACID engine.
///
/// A backend runs SQL that ``MetadataStore`` writes once for every engine: statements in the
/// common dialect of SQLite and PostgreSQL (`?` placeholders, `ON CONFLICT`, `RETURNING`,
/// quoted `"offset"`), plus the few clauses only one engine has, asked of ``SQLDialect``. A
/// backend owns connecting, its schema migrations, transactions and the classification of its
/// errors; it holds no namespace rule.
public protocol SQLDatabase: Sendable {
    /// What differs between engines in the statements the store writes.
    var dialect: SQLDialect { get }

    /// Runs one statement on its own (autocommit): one snapshot, one round trip.
    func query(_ statement: SQLStatement) async throws -> [SQLRow]

    /// Runs `body` in one read-only transaction that sees one snapshot where the engine gives
    /// one across statements (PostgreSQL: REPEATABLE READ READ ONLY; SQLite in WAL mode: each
    /// statement sees the newest commit).
    func read<T: Sendable>(_ body: (any SQLTransaction) async throws -> T) async throws -> T

    /// Runs `body` in one read-write transaction, once: committed when `body` returns, rolled back
    /// when it throws. Isolation is READ COMMITTED or stronger; the store takes the row locks its
    /// rules need (``SQLDialect/forUpdate``). Retrying is the caller's (``MetadataStore``).
    func write<T: Sendable>(_ body: (any SQLTransaction) async throws -> T) async throws -> T

    /// Whether an error is worth running the whole transaction again: a serialization failure,
    /// a deadlock, a busy database.
    func isTransient(_ error: any Error) -> Bool

    /// Whether an error is a unique-key violation (a concurrent insert of the same key won).
    func isUniqueViolation(_ error: any Error) -> Bool

    /// The database's own consistency check; true when it passes.
    func checkIntegrity() async throws -> Bool

    /// The database clock in milliseconds since 1970: the one clock every master compares.
    func now() async throws -> Int64

    /// Where the write-ahead log ends now: every commit that has returned lies before it. Nil
    /// for an engine without replicas (SQLite).
    func writePosition() async throws -> MetadataPosition?
}

extension SQLDatabase {
    public func writePosition() async throws -> MetadataPosition? { nil }
}

/// One database's statements outside any transaction: each is its own snapshot (a read of one
/// statement needs no BEGIN and COMMIT).
struct Autocommit: SQLTransaction {
    let database: any SQLDatabase
    var dialect: SQLDialect { database.dialect }
    func query(_ statement: SQLStatement) async throws -> [SQLRow] { try await database.query(statement) }
    func now() async throws -> Int64 { try await database.now() }
}

/// One open transaction of an ``SQLDatabase``.
public protocol SQLTransaction: Sendable {
    /// The dialect of the transaction's database.
    var dialect: SQLDialect { get }
    func query(_ statement: SQLStatement) async throws -> [SQLRow]
    /// The database clock at this transaction, in milliseconds since 1970 (asked once, kept).
    func now() async throws -> Int64
}

extension SQLTransaction {
    /// Runs a statement for its effect; returns how many rows it returned (use `RETURNING`).
    @discardableResult
    public func execute(_ sql: String, _ arguments: [SQLValue] = []) async throws -> Int {
        try await query(SQLStatement(sql, arguments)).count
    }

    public func rows(_ sql: String, _ arguments: [SQLValue] = []) async throws -> [SQLRow] {
        try await query(SQLStatement(sql, arguments))
    }

    public func row(_ sql: String, _ arguments: [SQLValue] = []) async throws -> SQLRow? {
        try await query(SQLStatement(sql, arguments)).first
    }
}

extension SQLDatabase {
    public func rows(_ sql: String, _ arguments: [SQLValue] = []) async throws -> [SQLRow] {
        try await query(SQLStatement(sql, arguments))
    }

    public func row(_ sql: String, _ arguments: [SQLValue] = []) async throws -> SQLRow? {
        try await query(SQLStatement(sql, arguments)).first
    }
}

/// The clauses one engine has and the other does not.
public struct SQLDialect: Sendable, Hashable {
    /// Appended to a SELECT that must lock its rows against writers until the transaction ends
    /// (PostgreSQL `FOR UPDATE`); empty where the engine has one writer at a time (SQLite).
    public var forUpdate: String
    /// The same for a shared lock (`FOR SHARE`): concurrent readers pass, a `FOR UPDATE` waits.
    public var forShare: String
    public var name: String

    public static let sqlite = SQLDialect(forUpdate: "", forShare: "", name: "sqlite")
    public static let postgres = SQLDialect(forUpdate: " FOR UPDATE", forShare: " FOR SHARE", name: "postgres")
}

/// A value bound to or read from a statement: the types both engines store alike.
public enum SQLValue: Sendable, Hashable {
    case null
    case integer(Int64)
    case real(Double)
    case text(String)
    case blob([UInt8])
}

extension SQLValue {
    public static func int(_ value: Int) -> SQLValue { .integer(Int64(value)) }
    public static func optional(_ value: Int64?) -> SQLValue { value.map { .integer($0) } ?? .null }
    public static func blob(_ id: ChunkID) -> SQLValue { .blob(id.digestBytes) }
    public static func blob(_ path: BlobPath) -> SQLValue { .blob(Array(path.value.utf8)) }
    public static func blob(_ data: Data) -> SQLValue { .blob([UInt8](data)) }
}

/// A statement and its arguments, in order of their `?`.
public struct SQLStatement: Sendable {
    public var sql: String
    public var arguments: [SQLValue]

    public init(_ sql: String, _ arguments: [SQLValue] = []) {
        self.sql = sql
        self.arguments = arguments
    }

    /// `(?, ?, …)` with `count` placeholders, for `IN` lists (a batch in one round trip).
    public static func placeholders(_ count: Int) -> String {
        precondition(count > 0, "an IN list needs at least one value")
        return "(" + Array(repeating: "?", count: count).joined(separator: ", ") + ")"
    }
}

/// One result row, by column position.
public struct SQLRow: Sendable {
    public var values: [SQLValue]

    public init(_ values: [SQLValue]) { self.values = values }

    public subscript(_ i: Int) -> SQLValue { values[i] }

    public func int(_ i: Int) throws -> Int64 {
        switch values[i] {
        case .integer(let v): return v
        case .real(let v) where v == v.rounded(): return Int64(v)
        default: throw Self.typeError(i, values[i], "an integer")
        }
    }

    public func optionalInt(_ i: Int) throws -> Int64? {
        if case .null = values[i] { return nil }
        return try int(i)
    }

    public func double(_ i: Int) throws -> Double {
        switch values[i] {
        case .real(let v): return v
        case .integer(let v): return Double(v)
        default: throw Self.typeError(i, values[i], "a number")
        }
    }

    public func text(_ i: Int) throws -> String {
        guard case .text(let v) = values[i] else { throw Self.typeError(i, values[i], "text") }
        return v
    }

    public func optionalText(_ i: Int) throws -> String? {
        if case .null = values[i] { return nil }
        return try text(i)
    }

    public func blob(_ i: Int) throws -> [UInt8] {
        guard case .blob(let v) = values[i] else { throw Self.typeError(i, values[i], "bytes") }
        return v
    }

    public func optionalBlob(_ i: Int) throws -> [UInt8]? {
        if case .null = values[i] { return nil }
        return try blob(i)
    }

    public func chunkID(_ i: Int) throws -> ChunkID { try ChunkID(digestBytes: try blob(i)) }

    /// A path stored as its UTF-8 bytes (validated when it was stored).
    public func path(_ i: Int) throws -> BlobPath { BlobPath(validated: String(decoding: try blob(i), as: UTF8.self)) }

    static func typeError(_ i: Int, _ value: SQLValue, _ expected: String) -> BlobError {
        BlobError(.internal, reason: "metadata.columnType", "metadata column \(i) holds \(value), not \(expected)")
    }
}
