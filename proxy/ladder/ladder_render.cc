// The ladder's three faces (proxy/ladder/ladder.h): monospace text for the terminal, drawn
// cell by cell on a grid, and SVG (alone, or inline in an HTML page) for a browser.
// Both read the same rows, arrows and states that BuildLadders laid out.
#include <algorithm>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "proxy/ladder/ladder.h"

namespace wrench::proxy {
namespace {

size_t Idx(LadderLine l) { return static_cast<size_t>(l); }

// Which arrows leave, and which states are written, at each row: renderers go row
// by row, and a long capture must not cost rows times arrows.
struct RowIndex {
  explicit RowIndex(const Ladder& l) : arrows(l.rows.size()), states(l.rows.size()) {
    for (const LadderArrow& a : l.arrows) {
      if (a.row < arrows.size()) arrows[a.row].push_back(&a);
    }
    for (const LadderState& s : l.states) {
      if (s.row < states.size()) states[s.row].push_back(&s);
    }
  }
  std::vector<std::vector<const LadderArrow*>> arrows;
  std::vector<std::vector<const LadderState*>> states;
};
// ---------------------------------------------------------------------------
// Text.

std::u32string Utf32(absl::string_view s) {
  std::u32string out;
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    int n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + static_cast<size_t>(n) > s.size()) {
      out.push_back(U'?');
      ++i;
      continue;
    }
    char32_t cp = n == 1 ? c : c & (0x7f >> n);
    for (int k = 1; k < n; ++k)
      cp = (cp << 6) | (static_cast<unsigned char>(s[i + static_cast<size_t>(k)]) & 0x3f);
    out.push_back(cp);
    i += static_cast<size_t>(n);
  }
  return out;
}

void AppendUtf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xc0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xe0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  } else {
    out.push_back(static_cast<char>(0xf0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3f)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  }
}

// A grid of cells, one per terminal column, so box-drawing characters count as one.
class Canvas {
 public:
  explicit Canvas(int width) : width_(width) {}
  int NewLine() {
    cells_.emplace_back(static_cast<size_t>(width_), U' ');
    return static_cast<int>(cells_.size()) - 1;
  }
  char32_t At(int line, int col) const { return In(col) ? cells_[Sz(line)][Sz(col)] : U' '; }
  void Put(int line, int col, char32_t c) {
    if (In(col)) cells_[Sz(line)][Sz(col)] = c;
  }
  void Text(int line, int col, const std::u32string& s) {
    for (size_t i = 0; i < s.size(); ++i) Put(line, col + static_cast<int>(i), s[i]);
  }
  int lines() const { return static_cast<int>(cells_.size()); }
  void AppendTo(std::string& out) const {
    for (const std::u32string& l : cells_) {
      size_t end = l.find_last_not_of(U' ');
      for (size_t i = 0; end != std::u32string::npos && i <= end; ++i) AppendUtf8(out, l[i]);
      out.push_back('\n');
    }
  }

 private:
  static size_t Sz(int i) { return static_cast<size_t>(i); }
  bool In(int col) const { return col >= 0 && col < width_; }
  int width_;
  std::vector<std::u32string> cells_;
};

// Splits `text` into lines of at most `width` cells, at spaces where it can.
std::vector<std::u32string> Wrap(const std::u32string& text, int width) {
  std::vector<std::u32string> out;
  const size_t w = static_cast<size_t>(std::max(width, 8));
  std::u32string rest = text;
  while (rest.size() > w) {
    size_t cut = rest.rfind(U' ', w);
    if (cut == std::u32string::npos || cut < w / 3) cut = w;
    out.push_back(rest.substr(0, cut));
    rest = rest.substr(cut);
    while (!rest.empty() && rest.front() == U' ') rest.erase(0, 1);
  }
  if (!rest.empty()) out.push_back(rest);
  return out;
}

std::string StateText(const LadderState& s) {
  return s.inferred ? absl::StrCat("~", stack::StateName(s.state))
                    : absl::StrCat("[", stack::StateName(s.state), "]");
}

class TextLadder {
 public:
  TextLadder(const Ladder& l, int width, int time_width)
      : l_(l),
        at_(l),
        width_(width),
        canvas_(width),
        lines_(l.server_leg ? 4 : 2),
        time_width_(time_width) {
    // time | client | gap | client leg | 3 | server leg | gap | server: the two gaps
    // share what the width leaves, within reason.
    x_[0] = time_width + 3;
    const int fixed = x_[0] + (lines_ == 4 ? 1 + 1 + 3 + 1 + 1 : 1 + 1);
    const int gap = std::clamp((width - fixed - 1) / (lines_ == 4 ? 2 : 1), 24, 44);
    x_[1] = x_[0] + gap + 1;
    x_[2] = x_[1] + 4;
    x_[3] = x_[2] + gap + 1;
  }

  std::string Render() {
    std::string out;
    Title(out);
    Header();
    for (size_t r = 0; r < l_.rows.size(); ++r) Row(r);
    for (const LadderArrow& a : l_.arrows) {
      if (a.fate == LadderArrow::Fate::kHeld) Arrival(a);
    }
    Lifelines(header_lines_);
    canvas_.AppendTo(out);
    return out;
  }

 private:
  int X(LadderLine line) const { return x_[Idx(line)]; }

  void Title(std::string& out) const {
    absl::StrAppend(&out, "connection ", l_.conn, "\n");
    auto leg = [&](const char* name, const std::string& a, const std::string& b) {
      if (a.empty() && b.empty()) return;
      absl::StrAppend(&out, "  ", name, "  ", a.empty() ? "?" : a, " -> ", b.empty() ? "?" : b,
                      "\n");
    };
    leg("client leg", l_.client_addr, l_.front_addr);
    if (l_.server_leg) {
      leg("server leg", l_.upstream_local_addr, l_.server_addr);
    } else {
      absl::StrAppend(&out, "  server leg  a kernel socket (not in the log)\n");
    }
  }

  void Centered(int line, int center, const std::string& s) {
    const std::u32string u = Utf32(s);
    canvas_.Text(line, center - static_cast<int>(u.size()) / 2, u);
  }

  void Header() {
    const int names = canvas_.NewLine();
    Centered(names, x_[0], "client");
    if (lines_ == 4) {
      Centered(names, (x_[1] + x_[2]) / 2, "proxy");
      Centered(names, x_[3], "server");
      const int legs = canvas_.NewLine();
      const std::u32string cl = Utf32("client leg");
      canvas_.Text(legs, x_[1] - 1 - static_cast<int>(cl.size()), cl);
      canvas_.Text(legs, x_[2] + 2, Utf32("server leg"));
    } else {
      Centered(names, x_[1], "proxy");
    }
    header_lines_ = canvas_.lines();
  }

  void Time(int line, double t) {
    const std::u32string s = Utf32(absl::StrFormat("%.6f", t));
    canvas_.Text(line, time_width_ - static_cast<int>(s.size()), s);
  }

  void Row(size_t r) {
    const LadderRow& row = l_.rows[r];
    const int line = canvas_.NewLine();
    line_of_row_.push_back(line);
    switch (row.kind) {
      case LadderRow::Kind::kStates:
        for (const LadderState* s : at_.states[r]) State(line, *s);
        break;
      case LadderRow::Kind::kArrival: Time(line, row.t); break;
      case LadderRow::Kind::kNote: {
        Time(line, row.t);
        std::vector<std::u32string> parts = Wrap(Utf32("note: " + row.note), width_ - x_[0] - 3);
        for (size_t i = 0; i < parts.size(); ++i) {
          canvas_.Text(i == 0 ? line : canvas_.NewLine(), x_[0] + 2, parts[i]);
        }
        break;
      }
      case LadderRow::Kind::kArrow:
        Time(line, row.t);
        for (const LadderArrow* a : at_.arrows[r]) Arrow(line, *a);
        break;
    }
  }

  // Proxy states sit inside the relay (client leg to the left of its line, server
  // leg to the right); kernel ones beside their line, in the gap it faces.
  void State(int line, const LadderState& s) {
    const std::u32string u = Utf32(StateText(s));
    const int n = static_cast<int>(u.size());
    switch (s.line) {
      case LadderLine::kClient: canvas_.Text(line, x_[0] + 2, u); break;
      case LadderLine::kClientLeg: canvas_.Text(line, x_[1] - 1 - n, u); break;
      case LadderLine::kServerLeg: canvas_.Text(line, x_[2] + 2, u); break;
      case LadderLine::kServer: canvas_.Text(line, x_[3] - 1 - n, u); break;
    }
  }

  void Arrow(int line, const LadderArrow& a) {
    const bool right = X(a.from) < X(a.to);
    const int lo = std::min(X(a.from), X(a.to)) + 1, hi = std::max(X(a.from), X(a.to)) - 1;
    const int inner = hi - lo + 1;
    const char32_t body = a.fate == LadderArrow::Fate::kCopy ? U'╌' : a.mutated ? U'═' : U'─';
    // A label too long for the gap goes on as the first note line.
    std::u32string label = Utf32(a.label);
    std::vector<std::u32string> notes;
    const size_t fit = static_cast<size_t>(std::max(inner - 8, 8));
    if (label.size() > fit) {
      size_t cut = label.rfind(U' ', fit);
      if (cut == std::u32string::npos) cut = fit;
      notes.push_back(U"  " + label.substr(cut + (label[cut] == U' ' ? 1 : 0)));
      label = label.substr(0, cut);
    }
    label = U" " + label + U" ";
    const int n = static_cast<int>(label.size());
    // How far the arrow goes: all the way, to a cross past the label, or to the
    // column where a held one turns down.
    int reach = inner;
    if (a.fate == LadderArrow::Fate::kDropped)
      reach = std::clamp(std::max(n + 6, inner * 11 / 20), 4, inner - 3);
    if (a.fate == LadderArrow::Fate::kHeld) reach = std::clamp(n + 5, 4, inner - 3);
    int turn = 0;
    for (int k = 0; k < reach; ++k) {
      const int col = right ? lo + k : hi - k;
      char32_t c = body;
      if (k == reach - 1) {
        switch (a.fate) {
          case LadderArrow::Fate::kDropped: c = U'X'; break;
          case LadderArrow::Fate::kHeld: c = right ? U'╮' : U'╭'; turn = col; break;
          default: c = right ? U'▶' : U'◀'; break;
        }
      }
      canvas_.Put(line, col, c);
    }
    canvas_.Text(line, right ? lo + 2 : hi - 1 - n, label);
    if (a.fate == LadderArrow::Fate::kHeld) turns_[&a] = {turn, line};
    for (const std::string& note : a.notes) {
      for (const std::u32string& part : Wrap(Utf32(note), inner - 4)) notes.push_back(U"  " + part);
    }
    for (const std::u32string& note : notes) canvas_.Text(canvas_.NewLine(), lo, note);
  }

  // The held arrow's way down (blank cells only) and its arrival.
  void Arrival(const LadderArrow& a) {
    auto found = turns_.find(&a);
    if (found == turns_.end() || a.end_row >= line_of_row_.size()) return;
    const Turn* t = &found->second;
    const int end = line_of_row_[a.end_row];
    const bool right = X(a.from) < X(a.to);
    for (int line = t->line + 1; line < end; ++line) {
      const char32_t c = canvas_.At(line, t->col);
      if (c == U' ') canvas_.Put(line, t->col, U'│');
      if (c == U'─' || c == U'═' || c == U'╌') canvas_.Put(line, t->col, U'┼');
    }
    canvas_.Put(end, t->col, right ? U'╰' : U'╯');
    const int stop = right ? X(a.to) - 1 : X(a.to) + 1;
    for (int col = t->col + (right ? 1 : -1); col != stop; col += right ? 1 : -1)
      canvas_.Put(end, col, U'─');
    canvas_.Put(end, stop, right ? U'▶' : U'◀');
  }

  void Lifelines(int from_line) {
    for (int line = from_line - 1; line < canvas_.lines(); ++line) {
      for (int k = 0; k < lines_; ++k) {
        if (canvas_.At(line, x_[k]) == U' ') canvas_.Put(line, x_[k], U'│');
      }
    }
  }

  // Where a held arrow turns down: its column and its first line.
  struct Turn {
    int col, line;
  };
  const Ladder& l_;
  RowIndex at_;
  int width_;
  Canvas canvas_;
  int lines_, time_width_;
  int x_[4] = {};
  int header_lines_ = 0;
  std::vector<int> line_of_row_;
  std::map<const LadderArrow*, Turn> turns_;
};

constexpr const char* kTextLegend =
    "[STATE] the proxy's endpoint (from the log)   ~STATE a kernel peer (inferred from its "
    "segments)\n"
    "──▶ segment   ──X dropped   ──╮ ... ╰──▶ held (delay, reorder)   "
    "╌╌▶ duplicate   ══▶ changed\n";

// ---------------------------------------------------------------------------
// SVG.

std::string Esc(absl::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default:
        // Control characters are not allowed in XML 1.0.
        if (static_cast<unsigned char>(c) < 0x20 && c != '\t') {
          out += ' ';
        } else {
          out += c;
        }
    }
  }
  return out;
}

// Geometry, in px. Text is monospace, so a note's width is its length times kSmallChar.
constexpr double kSmallChar = 6.7;   // 11px DejaVu Sans Mono
constexpr double kTimeRight = 96;    // times end here
constexpr double kFirstLine = 170;   // the client's line
constexpr double kGap = 400;         // between a kernel and a proxy line
constexpr double kLegGap = 70;       // between the proxy's two lines
constexpr double kRightMargin = 130;

struct Style {
  const char* color;
  const char* cls;
};
Style StyleOf(const LadderArrow& a) {
  switch (a.fate) {
    case LadderArrow::Fate::kDropped: return {"#c62828", "drop"};
    case LadderArrow::Fate::kHeld: return {"#e65100", "held"};
    case LadderArrow::Fate::kCopy: return {"#00796b", "copy"};
    case LadderArrow::Fate::kDelivered: break;
  }
  return a.mutated ? Style{"#6a1b9a", "mut"} : Style{"#212121", "seg"};
}

constexpr const char* kSvgStyle =
    "text{font-family:'DejaVu Sans Mono',Menlo,Consolas,monospace;font-size:12px;fill:#212121}"
    ".t{font-size:11px;fill:#757575;text-anchor:end}"
    ".n{font-size:11px}"
    ".h{font-family:'DejaVu Sans',Helvetica,Arial,sans-serif;font-size:14px;font-weight:bold}"
    ".a{font-family:'DejaVu Sans',Helvetica,Arial,sans-serif;font-size:11px;fill:#616161}"
    ".halo{paint-order:stroke;stroke:#fff;stroke-width:4px;stroke-linejoin:round}"
    ".st{font-size:11px;text-anchor:middle;fill:#0d47a1}"
    ".sti{font-size:11px;text-anchor:middle;fill:#757575;font-style:italic}"
    ".life{stroke:#9e9e9e;stroke-width:1.5}"
    ".plife{stroke:#1565c0;stroke-width:1.5}";

std::string Markers() {
  std::string out = "<defs>";
  for (const char* c : {"#212121", "#c62828", "#e65100", "#00796b", "#6a1b9a"}) {
    absl::StrAppend(&out, "<marker id=\"h", c + 1,
                    "\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" ",
                    "markerWidth=\"8\" markerHeight=\"8\" orient=\"auto-start-reverse\">",
                    "<path d=\"M0,0 L10,5 L0,10 z\" fill=\"", c, "\"/></marker>");
  }
  out += "</defs>";
  return out;
}

std::vector<std::string> WrapChars(const std::string& text, size_t width) {
  std::vector<std::string> out;
  std::string rest = text;
  while (rest.size() > width) {
    size_t cut = rest.rfind(' ', width);
    if (cut == std::string::npos || cut < width / 3) cut = width;
    out.push_back(rest.substr(0, cut));
    rest = std::string(absl::StripLeadingAsciiWhitespace(rest.substr(cut)));
  }
  if (!rest.empty()) out.push_back(rest);
  return out;
}

class SvgLadder {
 public:
  explicit SvgLadder(const Ladder& l) : l_(l), at_(l) {
    x_[0] = kFirstLine;
    x_[1] = x_[0] + kGap;
    x_[2] = x_[1] + kLegGap;
    x_[3] = x_[2] + kGap;
  }
  double width() const { return (l_.server_leg ? x_[3] : x_[1]) + kRightMargin; }

  // Draws at vertical offset `top`; returns the height used.
  double Render(std::string& out, double top) {
    double y = top + 22;
    absl::StrAppend(&out, "<text class=\"h\" x=\"16\" y=\"", y, "\">connection ", l_.conn,
                    "</text>");
    y = Header(out, y + 14);
    const double life_top = y;
    RowPositions(y);
    const double bottom = row_y_.empty() ? y + 10 : row_bottom_.back() + 12;
    const int lines = l_.server_leg ? 4 : 2;
    for (int k = 0; k < lines; ++k) {
      absl::StrAppend(&out, "<line class=\"", k == 1 || k == 2 ? "plife" : "life", "\" x1=\"",
                      x_[k], "\" y1=\"", life_top, "\" x2=\"", x_[k], "\" y2=\"", bottom, "\"/>");
    }
    for (size_t r = 0; r < l_.rows.size(); ++r) Row(out, r);
    for (const LadderArrow& a : l_.arrows) Arrow(out, a);
    for (const LadderState& s : l_.states) State(out, s);
    return bottom - top + 10;
  }

 private:
  double X(LadderLine line) const { return x_[Idx(line)]; }

  double Header(std::string& out, double y) {
    auto box = [&](double cx, double w, const std::string& name, const std::string& sub,
                   bool proxy) {
      absl::StrAppend(&out, "<rect x=\"", cx - w / 2, "\" y=\"", y, "\" width=\"", w,
                      "\" height=\"40\" rx=\"6\" fill=\"", proxy ? "#e3f2fd" : "#f5f5f5",
                      "\" stroke=\"", proxy ? "#1565c0" : "#9e9e9e", "\"/>");
      absl::StrAppend(&out, "<text class=\"h\" x=\"", cx, "\" y=\"", y + 17,
                      "\" text-anchor=\"middle\">", Esc(name), "</text>");
      absl::StrAppend(&out, "<text class=\"a\" x=\"", cx, "\" y=\"", y + 32,
                      "\" text-anchor=\"middle\">", Esc(sub), "</text>");
    };
    box(x_[0], 220, "client", l_.client_addr, false);
    if (l_.server_leg) {
      box((x_[1] + x_[2]) / 2, kLegGap + 250, "proxy (wrench)", "", true);
      // Each leg's name and address under its own line.
      auto leg = [&](double x, const char* anchor, const char* name, const std::string& addr) {
        absl::StrAppend(&out, "<text class=\"a\" x=\"", x, "\" y=\"", y + 32, "\" text-anchor=\"",
                        anchor, "\">", name, "</text><text class=\"a\" x=\"", x, "\" y=\"", y + 54,
                        "\" text-anchor=\"", anchor, "\">", Esc(addr), "</text>");
      };
      leg(x_[1] - 6, "end", "client leg", l_.front_addr);
      leg(x_[2] + 6, "start", "server leg", l_.upstream_local_addr);
      box(x_[3], 220, "server", l_.server_addr, false);
    } else {
      box(x_[1], 240, "proxy (wrench)", "upstream: kernel socket, not logged", true);
      absl::StrAppend(&out, "<text class=\"a\" x=\"", x_[1], "\" y=\"", y + 54,
                      "\" text-anchor=\"middle\">", Esc(l_.front_addr), "</text>");
    }
    return y + 62;
  }

  int NoteLines(const LadderArrow& a) const {
    int n = 0;
    for (const std::string& note : a.notes)
      n += static_cast<int>(WrapChars(note, NoteWidth()).size());
    return n;
  }
  size_t NoteWidth() const { return static_cast<size_t>((kGap - 30) / kSmallChar); }

  void RowPositions(double y) {
    double prev_t = l_.rows.empty() ? 0 : l_.rows.front().t;
    for (size_t r = 0; r < l_.rows.size(); ++r) {
      const LadderRow& row = l_.rows[r];
      // A pause in the capture gets a little room, so bursts read as bursts.
      if (row.t - prev_t >= 0.2) y += 10;
      prev_t = std::max(prev_t, row.t);
      double h = 22;
      double at = y + 13;
      if (row.kind == LadderRow::Kind::kArrow) {
        // A held arrow's notes go above its label, clear of the slanted line.
        int above = 0, below = 0;
        for (const LadderArrow* a : at_.arrows[r]) {
          (a->fate == LadderArrow::Fate::kHeld ? above : below) = NoteLines(*a);
        }
        h = 30 + 14.0 * (above + below);
        at = y + 20 + 14.0 * above;
      }
      row_y_.push_back(at);
      y += h;
      row_bottom_.push_back(y);
    }
  }

  void Row(std::string& out, size_t r) {
    const LadderRow& row = l_.rows[r];
    if (row.kind == LadderRow::Kind::kStates) return;
    absl::StrAppend(&out, "<text class=\"t\" x=\"", kTimeRight, "\" y=\"", row_y_[r] + 4, "\">",
                    absl::StrFormat("%.6f", row.t), "</text>");
    if (row.kind == LadderRow::Kind::kNote) {
      absl::StrAppend(&out, "<text class=\"n halo\" x=\"", x_[0] + 10, "\" y=\"", row_y_[r] + 4,
                      "\">note: ", Esc(row.note), "</text>");
    }
  }

  void Arrow(std::string& out, const LadderArrow& a) {
    const Style st = StyleOf(a);
    const double x1 = X(a.from), x2 = X(a.to), y1 = row_y_[a.row];
    const double y2 = a.end_row < row_y_.size() ? row_y_[a.end_row] : y1;
    const bool right = x2 > x1;
    const double dir = right ? 1 : -1;
    std::string dash = a.fate == LadderArrow::Fate::kCopy ? " stroke-dasharray=\"6,3\"" : "";
    if (a.fate == LadderArrow::Fate::kDropped) {
      const double xe = x1 + (x2 - x1) * 0.6;
      absl::StrAppend(&out, "<line x1=\"", x1, "\" y1=\"", y1, "\" x2=\"", xe, "\" y2=\"", y1,
                      "\" stroke=\"", st.color, "\" stroke-width=\"1.5\"/>");
      absl::StrAppend(&out, "<path d=\"M", xe - 6, ",", y1 - 6, " L", xe + 6, ",", y1 + 6, " M",
                      xe - 6, ",", y1 + 6, " L", xe + 6, ",", y1 - 6, "\" stroke=\"", st.color,
                      "\" stroke-width=\"2.5\"/>");
    } else {
      // Stop the head at the line, not across it.
      absl::StrAppend(&out, "<line class=\"", st.cls, "\" x1=\"", x1, "\" y1=\"", y1, "\" x2=\"",
                      x2 - dir, "\" y2=\"", y2, "\" stroke=\"", st.color, "\" stroke-width=\"",
                      a.mutated ? 2.5 : 1.5, "\"", dash, " marker-end=\"url(#h", st.color + 1,
                      ")\"/>");
    }
    const double lx = x1 + dir * 10;
    const char* anchor = right ? "start" : "end";
    absl::StrAppend(&out, "<text class=\"halo\" x=\"", lx, "\" y=\"", y1 - 5, "\" text-anchor=\"",
                    anchor, "\" fill=\"", st.color, "\" style=\"fill:", st.color, "\">",
                    Esc(a.label), "</text>");
    std::vector<std::string> parts;
    for (const std::string& note : a.notes) {
      for (std::string& part : WrapChars(note, NoteWidth())) parts.push_back(std::move(part));
    }
    double ny = a.fate == LadderArrow::Fate::kHeld
                    ? y1 - 5 - 14.0 * static_cast<double>(parts.size())
                    : y1 + 15;
    for (const std::string& part : parts) {
      absl::StrAppend(&out, "<text class=\"n halo\" x=\"", lx, "\" y=\"", ny, "\" text-anchor=\"",
                      anchor, "\" style=\"fill:", st.color, "\">", Esc(part), "</text>");
      ny += 14;
    }
  }

  void State(std::string& out, const LadderState& s) {
    const std::string text = s.inferred ? absl::StrCat("~", stack::StateName(s.state))
                                        : std::string(stack::StateName(s.state));
    const double w = static_cast<double>(text.size()) * kSmallChar + 12, x = X(s.line),
                 y = row_y_[s.row];
    absl::StrAppend(&out, "<rect x=\"", x - w / 2, "\" y=\"", y - 9, "\" width=\"", w,
                    "\" height=\"17\" rx=\"8\" fill=\"", s.inferred ? "#ffffff" : "#e3f2fd",
                    "\" stroke=\"", s.inferred ? "#9e9e9e" : "#1565c0", "\"",
                    s.inferred ? " stroke-dasharray=\"3,2\"" : "", "/>");
    absl::StrAppend(&out, "<text class=\"", s.inferred ? "sti" : "st", "\" x=\"", x, "\" y=\"",
                    y + 4, "\">", Esc(text), "</text>");
  }

  const Ladder& l_;
  RowIndex at_;
  double x_[4] = {};
  std::vector<double> row_y_, row_bottom_;
};

// The key to colours and marks, at `top`; returns its height.
double SvgLegend(std::string& out, double top) {
  double x = 16;
  const double y = top + 16;
  auto arrow = [&](const char* color, const char* text, const char* extra) {
    absl::StrAppend(&out, "<line x1=\"", x, "\" y1=\"", y - 4, "\" x2=\"", x + 34, "\" y2=\"",
                    y - 4, "\" stroke=\"", color, "\" stroke-width=\"1.5\"", extra,
                    " marker-end=\"url(#h", color + 1, ")\"/>");
    absl::StrAppend(&out, "<text class=\"a\" x=\"", x + 40, "\" y=\"", y, "\">", text, "</text>");
    x += 52 + static_cast<double>(std::string_view(text).size()) * 6.2;
  };
  arrow("#212121", "segment", "");
  arrow("#c62828", "dropped (ends in a cross)", "");
  arrow("#e65100", "held: delay or reorder (slanted)", "");
  arrow("#00796b", "duplicate copy", " stroke-dasharray=\"6,3\"");
  arrow("#6a1b9a", "changed by a rule", "");
  const double y2 = y + 22;
  absl::StrAppend(&out, "<rect x=\"16\" y=\"", y2 - 12,
                  "\" width=\"90\" height=\"17\" rx=\"8\" fill=\"#e3f2fd\" ",
                  "stroke=\"#1565c0\"/><text class=\"st\" x=\"61\" y=\"", y2, "\">STATE</text>",
                  "<text class=\"a\" x=\"114\" y=\"", y2,
                  "\">the proxy's endpoint, from the log</text>");
  absl::StrAppend(&out, "<rect x=\"360\" y=\"", y2 - 12,
                  "\" width=\"90\" height=\"17\" rx=\"8\" fill=\"#fff\" ",
                  "stroke=\"#9e9e9e\" stroke-dasharray=\"3,2\"/><text class=\"sti\" x=\"405\" y=\"",
                  y2, "\">~STATE</text><text class=\"a\" x=\"458\" y=\"", y2,
                  "\">a kernel peer, inferred from the segments it sent and received</text>");
  return 46;
}

std::string Svg(absl::Span<const Ladder> ladders, bool standalone) {
  double width = 700;
  for (const Ladder& l : ladders) width = std::max(width, SvgLadder(l).width());
  std::string body;
  double y = 0;
  for (const Ladder& l : ladders) {
    SvgLadder s(l);
    y += s.Render(body, y) + 16;
  }
  y += SvgLegend(body, y);
  std::string out;
  if (standalone) out = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
  absl::StrAppend(&out, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"", width, "\" height=\"",
                  y + 8, "\" viewBox=\"0 0 ", width, " ", y + 8,
                  "\">\n<title>wrench ladder</title>\n<style>", kSvgStyle, "</style>\n", Markers(),
                  "\n<rect width=\"100%\" height=\"100%\" fill=\"#fff\"/>\n", body, "\n</svg>\n");
  return out;
}

}  // namespace

std::string RenderLadderText(absl::Span<const Ladder> ladders, int width) {
  width = std::max(width, 72);
  int time_width = 8;
  for (const Ladder& l : ladders) {
    for (const LadderRow& r : l.rows) {
      time_width = std::max(time_width, static_cast<int>(absl::StrFormat("%.6f", r.t).size()));
    }
  }
  std::string out;
  for (const Ladder& l : ladders) {
    if (!out.empty()) out += "\n";
    out += TextLadder(l, width, time_width).Render();
  }
  absl::StrAppend(&out, "\n", kTextLegend);
  return out;
}

std::string RenderLadderSvg(absl::Span<const Ladder> ladders) { return Svg(ladders, true); }

std::string RenderLadderHtml(absl::Span<const Ladder> ladders, const std::string& title) {
  std::string out = absl::StrCat(
      "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>", Esc(title),
      "</title>\n<style>body{font-family:'DejaVu "
      "Sans',Helvetica,Arial,sans-serif;margin:24px;color:#212121}"
      "h1{font-size:20px}svg{display:block;margin:12px "
      "0;max-width:100%;height:auto}</style>\n</head>\n<body>\n<h1>",
      Esc(title), "</h1>\n<p>", ladders.size(),
      ladders.size() == 1 ? " connection" : " connections",
      "; time flows down, in seconds since the log started.</p>\n");
  out += Svg(ladders, false);
  out += "</body>\n</html>\n";
  return out;
}

}  // namespace wrench::proxy
