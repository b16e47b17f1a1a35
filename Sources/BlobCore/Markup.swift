/// Text made safe inside XML and HTML elements and attribute values: the five markup
/// characters as entities, and the control characters XML 1.0 cannot carry as references.
public enum Markup {
    public static func escape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for c in text.unicodeScalars {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&apos;"
            default:
                // XML 1.0 cannot carry most control characters at all.
                if c.value < 0x20 && c != "\t" && c != "\n" && c != "\r" {
                    out += "&#x\(String(c.value, radix: 16));"
                } else {
                    out.unicodeScalars.append(c)
                }
            }
        }
        return out
    }
}
