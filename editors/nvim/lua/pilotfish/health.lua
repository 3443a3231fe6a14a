-- :checkhealth pilotfish — is the binary there, and are the configured models reachable?

local M = {}

local health = vim.health or require("health")
local start = health.start or health.report_start
local ok = health.ok or health.report_ok
local warn = health.warn or health.report_warn
local err = health.error or health.report_error
local info = health.info or health.report_info

local islist = vim.islist or vim.tbl_islist

local function toml_key(k)
  k = tostring(k)
  if k:match("^[A-Za-z0-9_-]+$") then
    return k
  end
  return M.toml_string(k)
end

function M.toml_string(s)
  s = s:gsub('[%c"\\]', function(c)
    local named = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\t"] = "\\t", ["\r"] = "\\r" }
    return named[c] or string.format("\\u%04X", c:byte())
  end)
  return '"' .. s .. '"'
end

local function toml_value(v)
  local t = type(v)
  if t == "string" then
    return M.toml_string(v)
  elseif t == "number" then
    if v == math.floor(v) and math.abs(v) < 2 ^ 53 then
      return string.format("%d", v)
    end
    return tostring(v)
  elseif t == "boolean" then
    return tostring(v)
  elseif t == "table" then
    if islist(v) then
      local parts = {}
      for _, x in ipairs(v) do
        parts[#parts + 1] = toml_value(x)
      end
      return "[" .. table.concat(parts, ", ") .. "]"
    end
    local keys = vim.tbl_keys(v)
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    local parts = {}
    for _, k in ipairs(keys) do
      parts[#parts + 1] = toml_key(k) .. " = " .. toml_value(v[k])
    end
    return "{ " .. table.concat(parts, ", ") .. " }"
  end
  error("cannot write a " .. t .. " as TOML")
end

--- The `settings` table (the shape of .pilotfish.toml) as TOML text: top-level maps become
--- [sections], everything under them inline tables/arrays.
function M.to_toml(settings)
  local keys = vim.tbl_keys(settings)
  table.sort(keys)
  local head, sections = {}, {}
  for _, k in ipairs(keys) do
    local v = settings[k]
    if type(v) == "table" and not islist(v) then
      sections[#sections + 1] = "[" .. toml_key(k) .. "]"
      local sub = vim.tbl_keys(v)
      table.sort(sub, function(a, b) return tostring(a) < tostring(b) end)
      for _, s in ipairs(sub) do
        sections[#sections + 1] = toml_key(s) .. " = " .. toml_value(v[s])
      end
    else
      head[#head + 1] = toml_key(k) .. " = " .. toml_value(v)
    end
  end
  return table.concat(head, "\n") .. (#head > 0 and "\n" or "") .. table.concat(sections, "\n") .. "\n"
end

local function run(cmd, cwd, timeout_ms)
  if vim.system then
    local r = vim.system(cmd, { cwd = cwd, text = true }):wait(timeout_ms)
    return r.code, (r.stdout or "") .. (r.stderr or "")
  end
  local out = vim.fn.system(cmd)
  return vim.v.shell_error, out
end

function M.check()
  local plugin = require("pilotfish")
  local cfg = plugin.config

  start("pilotfish: Neovim")
  local v = vim.version()
  local mode = plugin.completion_mode()
  info(string.format("Neovim %d.%d.%d; completion: %s", v.major, v.minor, v.patch,
    mode == "inline" and "ghost text (vim.lsp.inline_completion)"
    or mode == "menu" and "completion menu (vim.lsp.completion)" or "off"))
  if vim.lsp.config and vim.lsp.enable then
    ok("vim.lsp.config/vim.lsp.enable (0.11+)")
  elseif vim.lsp.start then
    ok("vim.lsp.start on FileType (before 0.11)")
  else
    err("this Neovim has no vim.lsp.start (needs 0.8+)")
  end

  start("pilotfish: binary")
  local exe = cfg.cmd and cfg.cmd[1]
  local path = exe and vim.fn.exepath(exe) or ""
  if path == "" then
    err(string.format("`%s` is not executable or not on PATH", tostring(exe)), {
      "cargo install --path . (in the pilotfish checkout), or",
      'require("pilotfish").setup{ cmd = { "/path/to/pilotfish" } }',
    })
    return
  end
  ok("found: " .. path)

  local clients = (vim.lsp.get_clients or vim.lsp.get_active_clients)({ name = "pilotfish" })
  if #clients == 0 then
    info("no pilotfish client is running (open a file of: " .. table.concat(cfg.filetypes, ", ") .. ")")
  end
  for _, c in ipairs(clients) do
    ok(string.format("client %d running, root %s", c.id, tostring(c.root_dir or c.config.root_dir)))
  end

  start("pilotfish: models (pilotfish check)")
  local root = (clients[1] and (clients[1].root_dir or clients[1].config.root_dir))
    or (vim.fs.root and vim.fs.root(0, cfg.root_markers)) or vim.fn.getcwd()
  local cmd = vim.deepcopy(cfg.cmd)
  local settings = cfg.settings or {}
  if settings.models or settings.routes then
    -- The models come from setup{ settings }: check those (on top of the built-in default).
    local file = vim.fn.tempname() .. ".toml"
    local okw, text = pcall(M.to_toml, settings)
    if not okw then
      err("cannot write settings as TOML: " .. tostring(text))
      return
    end
    vim.fn.writefile(vim.split(text, "\n"), file)
    table.insert(cmd, 2, "--config")
    table.insert(cmd, 3, file)
    info("checking the models of setup{ settings } (written to " .. file .. ")")
  else
    info("checking the config pilotfish finds from " .. root
      .. " (.pilotfish.toml, $PILOTFISH_CONFIG, ~/.config/pilotfish/config.toml, built-in default)")
  end
  table.insert(cmd, "check")
  local code, out = run(cmd, root, 30000)
  local lines = vim.split(vim.trim(out), "\n")
  for _, l in ipairs(lines) do
    if l ~= "" then
      info(l)
    end
  end
  if code == 0 then
    ok("every route has a reachable model")
  elseif code == 1 then
    warn("some route has no reachable model (see above)", {
      "start your model server (Ollama, llama-server, …) or fix [models.*] in .pilotfish.toml",
    })
  else
    err(string.format("`%s` failed (exit %s)", table.concat(cmd, " "), tostring(code)))
  end
end

return M
