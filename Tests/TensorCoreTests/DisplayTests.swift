import TensorCore
import TestSupport
import Testing

/// Nothing a terminal acts on is left: no C0/C1 control, DEL, bidi or other format character, no separator.
func isInert(_ text: String) -> Bool { !text.unicodeScalars.contains("\n") && rawTerminalControls(text).isEmpty }

/// `displayed(_:)`: untrusted names made safe for a terminal, every class of character.
@Suite struct DisplayTests {
    @Test func plainNamesUnchanged() {
        for name in [
            "model.layers.0.mlp.experts.7.down_proj.weight_packed", "model-00001-of-000064.safetensors",
            "/tmp/some folder/with spaces/config.json", "a'b\"c\\d", "",
        ] {
            #expect(displayed(name) == name)
        }
    }

    @Test func c0AndDEL() {
        #expect(displayed("a\u{1B}[2Jb") == "a\\x1B[2Jb")
        #expect(displayed("x\ny") == "x\\ny")
        #expect(displayed("x\r\ny") == "x\\r\\ny")
        #expect(displayed("tab\there") == "tab\\there")
        #expect(displayed("\u{0}\u{7}\u{8}\u{B}\u{C}\u{1F}") == "\\x00\\x07\\x08\\x0B\\x0C\\x1F")
        #expect(displayed("del\u{7F}") == "del\\x7F")
        // A forged report line can no longer start a line.
        let forged = displayed("w\nOK: no problems found")
        #expect(!forged.contains("\n"))
        #expect(forged == "w\\nOK: no problems found")
    }

    @Test func c1Controls() {
        #expect(displayed("a\u{85}b") == "a\\u{0085}b")  // NEL: a line break on some terminals
        #expect(displayed("\u{9B}2J") == "\\u{009B}2J")  // CSI
        #expect(displayed("\u{80}\u{9F}") == "\\u{0080}\\u{009F}")
    }

    @Test func bidiControls() {
        let bidi: [UInt32] = [0x202A, 0x202B, 0x202C, 0x202D, 0x202E, 0x2066, 0x2067, 0x2068, 0x2069, 0x200E, 0x200F, 0x061C]
        for value in bidi {
            let s = "shard\(Character(Unicode.Scalar(value)!))txt.safetensors"
            let shown = displayed(s)
            #expect(isInert(shown), "U+\(String(value, radix: 16)) left raw")
            #expect(shown == "shard\\u{\(String(value, radix: 16, uppercase: true).leftPadded4)}txt.safetensors")
        }
    }

    @Test func formatCharacters() {
        #expect(displayed("a\u{200B}b") == "a\\u{200B}b")  // zero-width space
        #expect(displayed("\u{FEFF}name") == "\\u{FEFF}name")  // byte-order mark
        #expect(displayed("soft\u{AD}hyphen") == "soft\\u{00AD}hyphen")
        #expect(displayed("x\u{E0041}\u{E0042}") == "x\\u{E0041}\\u{E0042}")  // tag characters (invisible ASCII)
        #expect(displayed("\u{2060}") == "\\u{2060}")  // word joiner
        // Zero-width joiners between ASCII letters hide text: escaped.
        #expect(displayed("a\u{200D}b") == "a\\u{200D}b")
        #expect(displayed("\u{200C}lead") == "\\u{200C}lead")
        #expect(displayed("trail\u{200D}") == "trail\\u{200D}")
    }

    @Test func separators() {
        #expect(displayed("a\u{2028}b") == "a\\u{2028}b")
        #expect(displayed("a\u{2029}b") == "a\\u{2029}b")
    }

    @Test func readableNonASCIIStaysAsIs() {
        for name in [
            "模型.层.0.权重", "モデル", "가중치", "Ünïcödé-naïve", "слой.0", "طبقة", "שכבה", "🦙.weight", "🏳️‍🌈",
            "👩‍👩‍👧‍👦 family", "👍🏽", "می‌خواهم",  // Persian with ZWNJ between letters
            "क्‍ष",  // Devanagari with ZWJ
            "e\u{301}",  // combining accent
        ] {
            #expect(displayed(name) == name, "\(name) was changed")
        }
    }

    @Test func invalidUTF8() {
        #expect(displayed(utf8: [0x61, 0xFF, 0x62]) == "a\\xFFb")
        #expect(displayed(utf8: [0xC0, 0xAF]) == "\\xC0\\xAF")  // overlong "/"
        #expect(displayed(utf8: [0xED, 0xA0, 0x80]) == "\\xED\\xA0\\x80")  // a lone surrogate, U+D800
        #expect(displayed(utf8: [0xE2, 0x82]) == "\\xE2\\x82")  // truncated sequence
        #expect(displayed(utf8: [0xF4, 0x90, 0x80, 0x80]) == "\\xF4\\x90\\x80\\x80")  // above U+10FFFF
        #expect(displayed(utf8: Array("ok é 模 🦙".utf8)) == "ok é 模 🦙")
        #expect(displayed(utf8: [0x1B, 0x5B, 0x32, 0x4A, 0x0A]) == "\\x1B[2J\\n")
        #expect(displayed(utf8: Array("a\u{202E}b".utf8)) == "a\\u{202E}b")
    }

    @Test func longNamesKeepHeadAndTail() {
        let name = "model.layers.0." + String(repeating: "x", count: 10_000) + ".weight_scale"
        let shown = displayed(name)
        #expect(shown.unicodeScalars.count <= displayLimit)
        #expect(shown.hasPrefix("model.layers.0.xxx"))
        #expect(shown.hasSuffix("xxx.weight_scale"))
        // head + tail + the count said to be left out = the whole name
        let parts = shown.components(separatedBy: "…")
        #expect(parts.count == 3)
        let dropped = Int(parts[1].dropFirst().prefix { $0.isNumber })
        #expect(parts[1].hasSuffix(" characters left out]"))
        #expect(parts[0].count + parts[2].count + (dropped ?? 0) == name.count)
        // Unshortened on request; short names untouched; the shortened text is stable.
        #expect(displayed(name, limit: nil) == name)
        #expect(displayed(shown) == shown)
        #expect(displayed(String(repeating: "a", count: displayLimit)) == String(repeating: "a", count: displayLimit))
        #expect(displayed(String(repeating: "a", count: displayLimit + 1)) != String(repeating: "a", count: displayLimit + 1))
    }

    @Test func longEscapedNamesAreShortenedWholeEscapesOnly() {
        let name = String(repeating: "\u{1B}", count: 1_000)
        let shown = displayed(name, limit: 60)
        #expect(shown.unicodeScalars.count <= 60)
        #expect(isInert(shown))
        let body = shown.components(separatedBy: "…")
        #expect(body.count == 3)
        #expect(body[0].count % 4 == 0 && body[2].count % 4 == 0)  // whole "\x1B" escapes on each side
        #expect(body[0].allSatisfy { "\\x1B".contains($0) })
    }

    @Test func idempotent() {
        for name in ["a\u{1B}[2J\nOK", "x\u{202E}y", String(repeating: "é\u{200B}", count: 500), "🦙\u{85}"] {
            let once = displayed(name)
            #expect(displayed(once) == once)
            #expect(isInert(once))
        }
    }
}

extension String {
    fileprivate var leftPadded4: String { String(repeating: "0", count: max(0, 4 - count)) + self }
}

@Suite struct DisplayLargeInputTests {
    /// A hostile header can hold a name of megabytes: it is shortened in two passes, without a copy into pieces.
    @Test func megabyteNames() {
        let name = String(repeating: "\u{1B}x", count: 1 << 18)
        let shown = displayed(name)
        #expect(shown.unicodeScalars.count <= displayLimit)
        #expect(shown.hasPrefix("\\x1Bx\\x1Bx"))
        #expect(shown.hasSuffix("\\x1Bx"))
        #expect(isInert(shown))
        let bytes = [UInt8](repeating: 0xFF, count: 1 << 18)
        let shownBytes = displayed(utf8: bytes)
        #expect(shownBytes.unicodeScalars.count <= displayLimit)
        #expect(shownBytes.hasPrefix("\\xFF\\xFF"))
    }
}
