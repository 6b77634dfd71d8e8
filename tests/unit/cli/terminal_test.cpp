// Text reaching a terminal: nothing a server or a name holds may drive it.
#include <gtest/gtest.h>

#include "common.hpp"

namespace healer::cli {
namespace {

TEST(TerminalSafe, EscapesControlCharacters) {
  EXPECT_EQ(terminal_safe("web1"), "web1");
  EXPECT_EQ(terminal_safe("a\033[2Jb"), "a\\x1b[2Jb");
  EXPECT_EQ(terminal_safe("bell\a"), "bell\\x07");
  EXPECT_EQ(terminal_safe("over\rwrite"), "over\\x0dwrite");
  EXPECT_EQ(terminal_safe("del\x7f"), "del\\x7f");
  EXPECT_EQ(terminal_safe("two\nlines"), "two\\x0alines");
  EXPECT_EQ(terminal_safe("two\nlines\tok", true), "two\nlines\tok");
}

TEST(TerminalSafe, KeepsUtf8ButNotC1ControlsOrBrokenSequences) {
  EXPECT_EQ(terminal_safe("caf\xc3\xa9 \xe2\x9c\x93"), "caf\xc3\xa9 \xe2\x9c\x93");
  EXPECT_EQ(terminal_safe("\xc2\x9b"
                          "31m"),
            "\\xc2\\x9b31m");  // C1 CSI
  EXPECT_EQ(terminal_safe("\xff\xfe"), "\\xff\\xfe");
  EXPECT_EQ(terminal_safe("cut \xe2\x9c"), "cut \\xe2\\x9c");
  // OSC 52 (set the clipboard) and a window title: only printable text is left.
  EXPECT_EQ(terminal_safe("\033]0;owned\a"), "\\x1b]0;owned\\x07");
}

}  // namespace
}  // namespace healer::cli
