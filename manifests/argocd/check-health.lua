-- Runs an Argo CD health check (a resource_customizations/<group>/<Kind>/health.lua) on one object,
-- the way Argo CD runs a health check configured in argocd-cm, and prints the result as JSON:
-- {"status":"...","message":"..."}.
--
--   kubectl get fr mint-weekend -o json |
--     lua5.1 manifests/argocd/check-health.lua \
--       manifests/argocd/resource_customizations/rollups.flashlayer.dev/FlashRollup/health.lua
--
-- Argo CD runs the script with gopher-lua (Lua 5.1) and, for argocd-cm scripts, opens only the
-- base, table, package and a "safe" os library: no string, math, io or debug library, and no
-- string methods ("s:find()"). The script sees the object as the global `obj` and returns
-- {status = ..., message = ...}. This harness reproduces that sandbox, so a script that works
-- here works there; the JSON decoder below is the harness's own, never part of a health check.

local health_path, object_path = arg[1], arg[2]
if health_path == nil then
  io.stderr:write("usage: lua5.1 check-health.lua <health.lua> [<object.json> | -]\n")
  os.exit(2)
end

-- ---- JSON (RFC 8259) to Lua values, as Argo CD converts an object: objects and arrays are
-- tables (arrays from index 1), null is nil, numbers are Lua numbers. ----------------------------

local function decode_error(text, pos, what)
  error(string.format("invalid JSON at byte %d: %s (near %q)", pos, what, text:sub(pos, pos + 20)), 0)
end

local function skip_space(text, pos)
  return text:find("[^ \t\r\n]", pos) or (#text + 1)
end

local function utf8_char(code)
  if code < 0x80 then
    return string.char(code)
  elseif code < 0x800 then
    return string.char(0xC0 + math.floor(code / 0x40), 0x80 + code % 0x40)
  elseif code < 0x10000 then
    return string.char(0xE0 + math.floor(code / 0x1000), 0x80 + math.floor(code / 0x40) % 0x40, 0x80 + code % 0x40)
  end
  return string.char(
    0xF0 + math.floor(code / 0x40000),
    0x80 + math.floor(code / 0x1000) % 0x40,
    0x80 + math.floor(code / 0x40) % 0x40,
    0x80 + code % 0x40
  )
end

local escapes = { ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n", r = "\r", t = "\t" }

local function decode_string(text, pos)
  -- pos is at the opening quote
  local parts, i = {}, pos + 1
  while true do
    local c = text:sub(i, i)
    if c == "" then
      decode_error(text, pos, "unterminated string")
    elseif c == '"' then
      return table.concat(parts), i + 1
    elseif c == "\\" then
      local e = text:sub(i + 1, i + 1)
      if escapes[e] then
        parts[#parts + 1] = escapes[e]
        i = i + 2
      elseif e == "u" then
        local hex = text:sub(i + 2, i + 5)
        if not hex:find("^%x%x%x%x$") then
          decode_error(text, i, "bad \\u escape")
        end
        local code = tonumber(hex, 16)
        i = i + 6
        if code >= 0xD800 and code <= 0xDBFF then
          local low = text:match("^\\u(%x%x%x%x)", i)
          if low == nil then
            decode_error(text, i, "lone high surrogate")
          end
          code = 0x10000 + (code - 0xD800) * 0x400 + (tonumber(low, 16) - 0xDC00)
          i = i + 6
        end
        parts[#parts + 1] = utf8_char(code)
      else
        decode_error(text, i, "bad escape")
      end
    elseif c:byte() < 0x20 then
      decode_error(text, i, "control character in string")
    else
      local j = text:find('["\\%c]', i) or (#text + 1)
      parts[#parts + 1] = text:sub(i, j - 1)
      i = j
    end
  end
end

local decode_value

local function decode_array(text, pos)
  local out, n = {}, 0
  pos = skip_space(text, pos + 1)
  if text:sub(pos, pos) == "]" then
    return out, pos + 1
  end
  while true do
    local v
    v, pos = decode_value(text, pos)
    n = n + 1
    out[n] = v
    pos = skip_space(text, pos)
    local c = text:sub(pos, pos)
    if c == "]" then
      return out, pos + 1
    elseif c ~= "," then
      decode_error(text, pos, "expected , or ]")
    end
    pos = skip_space(text, pos + 1)
  end
end

local function decode_object(text, pos)
  local out = {}
  pos = skip_space(text, pos + 1)
  if text:sub(pos, pos) == "}" then
    return out, pos + 1
  end
  while true do
    if text:sub(pos, pos) ~= '"' then
      decode_error(text, pos, "expected a key")
    end
    local key
    key, pos = decode_string(text, pos)
    pos = skip_space(text, pos)
    if text:sub(pos, pos) ~= ":" then
      decode_error(text, pos, "expected :")
    end
    local v
    v, pos = decode_value(text, skip_space(text, pos + 1))
    out[key] = v
    pos = skip_space(text, pos)
    local c = text:sub(pos, pos)
    if c == "}" then
      return out, pos + 1
    elseif c ~= "," then
      decode_error(text, pos, "expected , or }")
    end
    pos = skip_space(text, pos + 1)
  end
end

decode_value = function(text, pos)
  pos = skip_space(text, pos)
  local c = text:sub(pos, pos)
  if c == "{" then
    return decode_object(text, pos)
  elseif c == "[" then
    return decode_array(text, pos)
  elseif c == '"' then
    return decode_string(text, pos)
  elseif text:find("^true", pos) then
    return true, pos + 4
  elseif text:find("^false", pos) then
    return false, pos + 5
  elseif text:find("^null", pos) then
    return nil, pos + 4
  end
  local number = text:match("^-?%d+%.?%d*[eE]?[-+]?%d*", pos)
  if number == nil or number == "" or tonumber(number) == nil then
    decode_error(text, pos, "unexpected character")
  end
  return tonumber(number), pos + #number
end

local function decode(text)
  local value, pos = decode_value(text, 1)
  pos = skip_space(text, pos)
  if pos <= #text then
    decode_error(text, pos, "trailing characters")
  end
  return value
end

-- ---- Output: a JSON string. ---------------------------------------------------------------------

local function encode_string(s)
  return '"'
    .. s:gsub('[%c"\\]', function(c)
      local named = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }
      return named[c] or string.format("\\u%04x", c:byte())
    end)
    .. '"'
end

local function emit(status, message)
  io.write('{"status":', encode_string(status), ',"message":', encode_string(message), "}\n")
end

-- ---- Run the check in Argo CD's sandbox. --------------------------------------------------------

local input
if object_path == nil or object_path == "-" then
  input = io.read("*a")
else
  local f = assert(io.open(object_path, "rb"))
  input = f:read("*a")
  f:close()
end
local ok, object = pcall(decode, input)
if not ok then
  io.stderr:write("check-health: ", tostring(object), "\n")
  os.exit(2)
end

local script, load_error = loadfile(health_path)
if script == nil then
  io.stderr:write("check-health: ", load_error, "\n")
  os.exit(2)
end

-- What gopher-lua gives a script from argocd-cm: the base library (without the file loaders),
-- table, and os with only its side-effect-free functions; nothing else.
local sandbox = {
  obj = object,
  _VERSION = _VERSION,
  assert = assert,
  error = error,
  getmetatable = getmetatable,
  ipairs = ipairs,
  next = next,
  pairs = pairs,
  pcall = pcall,
  print = print,
  rawequal = rawequal,
  rawget = rawget,
  rawset = rawset,
  select = select,
  setmetatable = setmetatable,
  tonumber = tonumber,
  tostring = tostring,
  type = type,
  unpack = unpack,
  xpcall = xpcall,
  table = { concat = table.concat, insert = table.insert, remove = table.remove, sort = table.sort, maxn = table.maxn },
  os = { time = os.time, date = os.date, clock = os.clock },
}
sandbox._G = sandbox
setfenv(script, sandbox)

-- Without the string library there are no string methods either: hide them while the check runs.
local string_meta = getmetatable("")
local string_index = string_meta.__index
string_meta.__index = nil
local ran, result = pcall(script)
string_meta.__index = string_index

if not ran then
  io.stderr:write("check-health: the health check failed: ", tostring(result), "\n")
  os.exit(1)
end
if type(result) ~= "table" then
  io.stderr:write("check-health: expect table output from Lua script, not ", type(result), "\n")
  os.exit(1)
end

-- Argo CD turns an unknown status into Unknown with this message.
local valid = { Healthy = true, Progressing = true, Degraded = true, Suspended = true, Missing = true, Unknown = true }
local message = result.message
if message ~= nil and type(message) ~= "string" then
  io.stderr:write("check-health: message must be a string, not ", type(message), "\n")
  os.exit(1)
end
if not valid[result.status] then
  emit("Unknown", "Lua returned an invalid health status")
else
  emit(result.status, message or "")
end
