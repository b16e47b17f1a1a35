import BlobCore
import Testing

@Suite("WAL positions")
struct MetadataPositionTests {
    @Test("PostgreSQL's X/Y spelling parses, orders and prints back; anything else is refused")
    func parsing() throws {
        let position = try #require(MetadataPosition("16/B374D848"))
        #expect(position.value == 0x16_B374_D848)
        #expect(position.description == "16/B374D848")
        #expect(MetadataPosition("0/0")?.value == 0)
        #expect(try #require(MetadataPosition("1/0")) > #require(MetadataPosition("0/FFFFFFFF")))
        #expect(MetadataPosition("FFFFFFFF/FFFFFFFF")?.value == UInt64.max)
        for bad in ["", "16", "16/", "/1", "1/2/3", "G/1", "123456789/0", "1/-2", " 1/2"] {
            #expect(MetadataPosition(bad) == nil, "\(bad)")
        }
    }
}
