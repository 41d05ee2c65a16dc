// The ladder's SVG and HTML in a real browser: headless Chromium (Debian's
// `chromium`) must load them without a parse error and paint a picture. Skipped,
// with the reason, where Chromium is not installed (scripts/install-deps.sh installs it).
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proxy/ladder/ladder.h"

namespace wrench::proxy {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr const char* kLog = WRENCH_SOURCE_DIR "/tests/ladder/handwritten.jsonl";

std::string Chromium() {
  for (const char* p : {"/usr/bin/chromium", "/usr/bin/chromium-browser"}) {
    if (::access(p, X_OK) == 0) return p;
  }
  return "";
}

class LadderRenderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (Chromium().empty())
      GTEST_SKIP() << "chromium is not installed (scripts/install-deps.sh installs it)";
    char dir[] = "/tmp/wrench-render-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    dir_ = dir;
  }
  void TearDown() override {
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  // Runs headless Chromium with a profile of its own (nothing of the user's, no
  // network, no updates) on `file`; stdout in *out, stderr in *err; the exit status.
  int Run(const std::string& args, const std::string& file, std::string* out, std::string* err) {
    const std::string err_path = dir_ + "/stderr";
    const std::string cmd =
        absl::StrCat("timeout 120 ", Chromium(),
                     " --headless --no-sandbox --disable-gpu --disable-background-networking "
                     "--disable-component-update"
                     " --disable-sync --no-first-run --hide-scrollbars --enable-logging=stderr "
                     "--v=0 --user-data-dir=",
                     dir_, "/profile ", args, " 'file://", file, "' 2>", err_path);
    FILE* p = ::popen(cmd.c_str(), "r");
    if (p == nullptr) return -1;
    char buf[4096];
    size_t n;
    out->clear();
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out->append(buf, n);
    const int status = ::pclose(p);
    std::ifstream in(err_path);
    err->assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

  std::string Write(const std::string& name, LadderFormat format) {
    auto drawing = DrawLadder(kLog, format);
    EXPECT_TRUE(drawing.ok()) << drawing.status();
    const std::string path = dir_ + "/" + name;
    std::ofstream(path, std::ios::binary) << (drawing.ok() ? *drawing : "");
    return path;
  }

  std::string dir_;
};

// Console errors and uncaught exceptions, as Chromium logs them to stderr.
void ExpectNoPageErrors(const std::string& err) {
  for (const char* bad : {"Uncaught", "CONSOLE(", "Failed to load"})
    EXPECT_THAT(err, Not(HasSubstr(bad))) << err;
}

TEST_F(LadderRenderTest, SvgLoadsWithoutErrorsAndPaintsTheLadder) {
  const std::string svg = Write("ladder.svg", LadderFormat::kSvg);
  std::string dom, err;
  ASSERT_EQ(Run("--dump-dom", svg, &dom, &err), 0) << err;
  // An XML error makes Chromium show a <parsererror> page instead of the drawing.
  EXPECT_THAT(dom, Not(HasSubstr("parsererror")));
  EXPECT_THAT(dom, HasSubstr("<svg"));
  EXPECT_THAT(dom, HasSubstr("FIN+ACK seq=101 ack=1001"));
  ExpectNoPageErrors(err);

  // The picture, at the SVG's own size.
  std::ifstream in(svg);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t w = text.find("width=\""), h = text.find("height=\"");
  ASSERT_NE(w, std::string::npos);
  int width = 0, height = 0;
  ASSERT_TRUE(absl::SimpleAtoi(text.substr(w + 7, text.find('"', w + 7) - w - 7), &width));
  ASSERT_TRUE(absl::SimpleAtoi(text.substr(h + 8, text.find('"', h + 8) - h - 8), &height));
  const std::string png = dir_ + "/ladder.png";
  std::string out;
  ASSERT_EQ(Run(absl::StrCat("--screenshot=", png, " --window-size=", width, ",", height), svg,
                &out, &err),
            0)
      << err;
  std::ifstream pin(png, std::ios::binary);
  ASSERT_TRUE(pin) << "no screenshot was written: " << err;
  std::string bytes((std::istreambuf_iterator<char>(pin)), std::istreambuf_iterator<char>());
  ASSERT_GT(bytes.size(), 24u);
  EXPECT_EQ(bytes.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  // IHDR: width and height, big-endian, at bytes 16 and 20.
  auto be32 = [&](size_t at) {
    return (uint32_t(uint8_t(bytes[at])) << 24) | (uint32_t(uint8_t(bytes[at + 1])) << 16) |
           (uint32_t(uint8_t(bytes[at + 2])) << 8) | uint32_t(uint8_t(bytes[at + 3]));
  };
  EXPECT_EQ(be32(16), static_cast<uint32_t>(width));
  EXPECT_EQ(be32(20), static_cast<uint32_t>(height));
  // A blank page this size compresses to about 8 KB; lines and labels take far more.
  EXPECT_GT(bytes.size(), 40000u) << "the screenshot looks empty";
}

TEST_F(LadderRenderTest, HtmlPageLoadsWithoutErrors) {
  const std::string html = Write("ladder.html", LadderFormat::kHtml);
  std::string dom, err;
  ASSERT_EQ(Run("--dump-dom", html, &dom, &err), 0) << err;
  EXPECT_THAT(dom, HasSubstr("<h1>wrench ladder: "));
  EXPECT_THAT(dom, HasSubstr("<svg"));
  EXPECT_THAT(dom, HasSubstr("~TIME-WAIT"));
  ExpectNoPageErrors(err);
}

}  // namespace
}  // namespace wrench::proxy
