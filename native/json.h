// A small strict JSON parser for safetensors headers (RFC 8259): UTF-8 validated (no overlongs, no
// surrogates), bounded nesting and value count, duplicate keys refused (in linear time), integers kept
// exact. Throws JsonError with the byte offset of the problem. Written here so the addon has no
// dependency beyond node-addon-api.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

namespace mlxrerank {
namespace json {

class JsonError : public std::runtime_error {
 public:
  JsonError(const std::string& what, size_t offset)
      : std::runtime_error(what + " at byte " + std::to_string(offset)) {}
};

struct Value {
  enum class Kind { Null, Bool, Number, String, Array, Object } kind = Kind::Null;
  bool boolean = false;
  bool isInteger = false;  // a number written without fraction or exponent that fits int64
  int64_t integer = 0;
  double number = 0;
  std::string string;
  std::vector<Value> array;
  std::vector<std::pair<std::string, Value>> object;

  const Value* find(const std::string& key) const {
    for (const auto& kv : object)
      if (kv.first == key) return &kv.second;
    return nullptr;
  }
};

class Parser {
 public:
  Parser(const char* data, size_t size) : p_(data), n_(size) {}

  Value parseDocument() {
    skipWs();
    Value v = parseValue(0);
    skipWs();
    if (i_ != n_) fail("unexpected data after the JSON value");
    return v;
  }

 private:
  static constexpr int kMaxDepth = 64;
  // Bounds the memory a parse may build (~150 bytes a value) before anything is checked: a BERT
  // header holds a few thousand values, a 1024-layer one ~130k.
  static constexpr size_t kMaxValues = size_t(1) << 20;
  const char* p_;
  size_t n_;
  size_t i_ = 0;
  size_t values_ = 0;

  [[noreturn]] void fail(const std::string& what) const { throw JsonError(what, i_); }
  bool eof() const { return i_ >= n_; }
  unsigned char peek() const { return static_cast<unsigned char>(p_[i_]); }

  void skipWs() {
    while (!eof() && (peek() == ' ' || peek() == '\t' || peek() == '\n' || peek() == '\r')) ++i_;
  }

  void expect(char c) {
    if (eof() || p_[i_] != c) fail(std::string("expected '") + c + "'");
    ++i_;
  }

  Value parseValue(int depth) {
    if (depth > kMaxDepth) fail("nesting deeper than 64 levels");
    if (++values_ > kMaxValues) fail("more than 1048576 values, this parser's limit");
    if (eof()) fail("unexpected end of JSON");
    Value v;
    switch (peek()) {
      case '{':
        parseObject(v, depth);
        break;
      case '[':
        parseArray(v, depth);
        break;
      case '"':
        v.kind = Value::Kind::String;
        v.string = parseString();
        break;
      case 't':
        literal("true");
        v.kind = Value::Kind::Bool;
        v.boolean = true;
        break;
      case 'f':
        literal("false");
        v.kind = Value::Kind::Bool;
        break;
      case 'n':
        literal("null");
        break;
      default:
        parseNumber(v);
    }
    return v;
  }

  void literal(const char* word) {
    for (const char* w = word; *w; ++w) {
      if (eof() || p_[i_] != *w) fail("invalid literal");
      ++i_;
    }
  }

  void parseObject(Value& v, int depth) {
    v.kind = Value::Kind::Object;
    expect('{');
    skipWs();
    if (!eof() && peek() == '}') {
      ++i_;
      return;
    }
    std::unordered_set<std::string> keys;  // find() per key would make the check quadratic
    for (;;) {
      skipWs();
      if (eof() || peek() != '"') fail("expected a string key");
      std::string key = parseString();
      if (!keys.insert(key).second) fail("duplicate key \"" + key + "\"");
      skipWs();
      expect(':');
      skipWs();
      v.object.emplace_back(std::move(key), parseValue(depth + 1));
      skipWs();
      if (eof()) fail("unterminated object");
      if (peek() == ',') {
        ++i_;
        continue;
      }
      expect('}');
      return;
    }
  }

  void parseArray(Value& v, int depth) {
    v.kind = Value::Kind::Array;
    expect('[');
    skipWs();
    if (!eof() && peek() == ']') {
      ++i_;
      return;
    }
    for (;;) {
      skipWs();
      v.array.push_back(parseValue(depth + 1));
      skipWs();
      if (eof()) fail("unterminated array");
      if (peek() == ',') {
        ++i_;
        continue;
      }
      expect(']');
      return;
    }
  }

  void parseNumber(Value& v) {
    v.kind = Value::Kind::Number;
    const size_t start = i_;
    bool negative = false;
    if (!eof() && peek() == '-') {
      negative = true;
      ++i_;
    }
    if (eof() || peek() < '0' || peek() > '9') fail("invalid number");
    bool integral = true;
    bool overflow = false;
    uint64_t mag = 0;
    if (peek() == '0') {
      ++i_;
    } else {
      while (!eof() && peek() >= '0' && peek() <= '9') {
        const uint64_t d = peek() - '0';
        if (mag > (UINT64_MAX - d) / 10) overflow = true;
        if (!overflow) mag = mag * 10 + d;
        ++i_;
      }
    }
    if (!eof() && peek() == '.') {
      integral = false;
      ++i_;
      if (eof() || peek() < '0' || peek() > '9') fail("invalid number");
      while (!eof() && peek() >= '0' && peek() <= '9') ++i_;
    }
    if (!eof() && (peek() == 'e' || peek() == 'E')) {
      integral = false;
      ++i_;
      if (!eof() && (peek() == '+' || peek() == '-')) ++i_;
      if (eof() || peek() < '0' || peek() > '9') fail("invalid number");
      while (!eof() && peek() >= '0' && peek() <= '9') ++i_;
    }
    v.number = std::strtod(std::string(p_ + start, i_ - start).c_str(), nullptr);
    const uint64_t limit = negative ? uint64_t(INT64_MAX) + 1 : uint64_t(INT64_MAX);
    if (integral && !overflow && mag <= limit) {
      v.isInteger = true;
      v.integer = negative ? static_cast<int64_t>(0 - mag) : static_cast<int64_t>(mag);
    }
  }

  unsigned hex4() {
    unsigned u = 0;
    for (int k = 0; k < 4; ++k) {
      if (eof()) fail("truncated \\u escape");
      const unsigned char c = peek();
      u <<= 4;
      if (c >= '0' && c <= '9')
        u |= c - '0';
      else if (c >= 'a' && c <= 'f')
        u |= c - 'a' + 10;
      else if (c >= 'A' && c <= 'F')
        u |= c - 'A' + 10;
      else
        fail("invalid \\u escape");
      ++i_;
    }
    return u;
  }

  static void appendUtf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  // One UTF-8 sequence starting at i_, validated strictly (RFC 3629).
  void copyUtf8(std::string& out) {
    const unsigned char c = peek();
    int len;
    uint32_t cp, min;
    if (c < 0x80) {
      out += static_cast<char>(c);
      ++i_;
      return;
    } else if ((c & 0xE0) == 0xC0) {
      len = 2, cp = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3, cp = c & 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4, cp = c & 0x07, min = 0x10000;
    } else {
      fail("invalid UTF-8 lead byte");
    }
    if (n_ - i_ < static_cast<size_t>(len)) fail("truncated UTF-8 sequence");
    for (int k = 1; k < len; ++k) {
      const unsigned char cc = static_cast<unsigned char>(p_[i_ + k]);
      if ((cc & 0xC0) != 0x80) fail("invalid UTF-8 continuation byte");
      cp = (cp << 6) | (cc & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) fail("invalid UTF-8 code point");
    out.append(p_ + i_, len);
    i_ += len;
  }

  std::string parseString() {
    expect('"');
    std::string out;
    for (;;) {
      if (eof()) fail("unterminated string");
      const unsigned char c = peek();
      if (c == '"') {
        ++i_;
        return out;
      }
      if (c < 0x20) fail("control character in string");
      if (c != '\\') {
        copyUtf8(out);
        continue;
      }
      ++i_;
      if (eof()) fail("unterminated escape");
      const char e = p_[i_++];
      switch (e) {
        case '"':
          out += '"';
          break;
        case '\\':
          out += '\\';
          break;
        case '/':
          out += '/';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        case 'u': {
          uint32_t cp = hex4();
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (n_ - i_ < 2 || p_[i_] != '\\' || p_[i_ + 1] != 'u') fail("unpaired surrogate");
            i_ += 2;
            const uint32_t lo = hex4();
            if (lo < 0xDC00 || lo > 0xDFFF) fail("unpaired surrogate");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            fail("unpaired surrogate");
          }
          appendUtf8(out, cp);
          break;
        }
        default:
          fail("invalid escape");
      }
    }
  }
};

inline Value parse(const char* data, size_t size) { return Parser(data, size).parseDocument(); }

}  // namespace json
}  // namespace mlxrerank
